//! Bar and line charts read back with an XML parser.

use std::time::Duration;

use conclab::chart::{BarChart, ChartError, LineChart};

/// Tableau 10's first three colours, as plotters writes them.
const BLUE: &str = "#4E79A7";
const ORANGE: &str = "#F28E2B";
const RED: &str = "#E15759";

struct Rect {
    x: f64,
    height: f64,
    fill: String,
}

fn parse(svg: &str) -> roxmltree::Document<'_> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG must be well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc
}

fn rects(svg: &str) -> Vec<Rect> {
    let doc = parse(svg);
    doc.descendants()
        .filter(|n| n.has_tag_name("rect"))
        .map(|n| {
            let num = |a: &str| n.attribute(a).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            Rect {
                x: num("x"),
                height: num("height"),
                fill: n.attribute("fill").unwrap_or("").to_owned(),
            }
        })
        .collect()
}

fn texts(svg: &str) -> Vec<(String, f64)> {
    let doc = parse(svg);
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            let x = n.attribute("x").and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (n.text().unwrap_or("").trim().to_owned(), x)
        })
        .collect()
}

fn x_of(texts: &[(String, f64)], wanted: &str) -> f64 {
    let found: Vec<_> = texts.iter().filter(|(t, _)| t == wanted).collect();
    assert_eq!(found.len(), 1, "{wanted} must be written once: {texts:?}");
    found[0].1
}

fn pool_chart() -> BarChart {
    BarChart::new("Squares of 1..=10")
        .x_label("pool size")
        .y_label("milliseconds")
        .bar(2, "sequential", 0.9)
        .bar(2, "threads", 3.1)
        .bar(2, "processes", 24.0)
        .bar(4, "sequential", 0.9)
        .bar(4, "threads", 2.2)
        .bar(4, "processes", 17.0)
        .bar(8, "sequential", 0.9)
        .bar(8, "threads", 2.4)
        .bar(8, "processes", 22.0)
}

#[test]
fn grouped_bars_one_per_value_with_heights_in_proportion() {
    let svg = pool_chart().svg();
    let rects = rects(&svg);
    // Each series colour: one legend swatch (12 px high) and one bar per pool size.
    for colour in [BLUE, ORANGE, RED] {
        let n = rects.iter().filter(|r| r.fill == colour).count();
        assert_eq!(n, 4, "{colour}: 3 bars and a legend swatch");
    }
    let mut processes: Vec<&Rect> = rects
        .iter()
        .filter(|r| r.fill == RED && r.height != 12.0)
        .collect();
    processes.sort_by(|a, b| a.x.total_cmp(&b.x));
    let h: Vec<f64> = processes.iter().map(|r| r.height).collect();
    // 24 > 22 > 17, and the ratio survives the drawing (to the pixel).
    assert!(h[0] > h[2] && h[2] > h[1], "{h:?}");
    assert!((h[0] / h[1] - 24.0 / 17.0).abs() < 0.03, "{h:?}");
}

#[test]
fn bar_chart_has_title_axes_legend_and_categories_in_order() {
    let svg = pool_chart().svg();
    let texts = texts(&svg);
    for wanted in [
        "Squares of 1..=10",
        "pool size",
        "milliseconds",
        "sequential",
        "threads",
        "processes",
    ] {
        x_of(&texts, wanted);
    }
    assert!(x_of(&texts, "2") < x_of(&texts, "4") && x_of(&texts, "4") < x_of(&texts, "8"));
    // Bars of one group are in series order, left to right.
    let rects = rects(&svg);
    let first_bar = |colour: &str| {
        rects
            .iter()
            .filter(|r| r.fill == colour && r.height != 12.0)
            .map(|r| r.x)
            .fold(f64::INFINITY, f64::min)
    };
    assert!(first_bar(BLUE) < first_bar(ORANGE) && first_bar(ORANGE) < first_bar(RED));
}

#[test]
fn a_single_series_needs_no_legend_and_accepts_durations() {
    let chart = BarChart::new("Three downloads")
        .y_label("seconds")
        .bar("sequential", "wall", Duration::from_millis(6010))
        .bar("threads", "wall", Duration::from_millis(2003));
    let svg = chart.svg();
    let texts = texts(&svg);
    assert!(
        texts.iter().all(|(t, _)| t != "wall"),
        "no legend for one series"
    );
    assert!(
        texts.iter().any(|(t, _)| t == "6.01"),
        "value labels in seconds"
    );
    assert_eq!(rects(&svg).iter().filter(|r| r.fill == BLUE).count(), 2);
}

#[test]
fn a_repeated_bar_replaces_the_old_value_and_nan_has_no_bar() {
    let chart = BarChart::new("t")
        .bar("a", "s", 1.0)
        .bar("a", "s", 2.0)
        .bar("b", "s", f64::NAN);
    assert_eq!(chart.len(), 2);
    let svg = chart.svg();
    assert_eq!(rects(&svg).iter().filter(|r| r.fill == BLUE).count(), 1);
    assert!(texts(&svg).iter().any(|(t, _)| t == "n/a"));
}

#[test]
fn line_chart_draws_one_line_per_series_and_a_dot_per_point() {
    let chart = LineChart::new("Time against pool size")
        .x_label("pool size")
        .y_label("ms")
        .series("Pool::map", [(2, 24.0), (4, 17.0), (8, 22.0)])
        .series("threads", [(2, 3.1), (4, 2.2), (8, 2.4)]);
    let svg = chart.svg();
    let doc = parse(&svg);
    let lines = |colour: &str| {
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(colour))
            .count()
    };
    assert_eq!((lines(BLUE), lines(ORANGE)), (1, 1));
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count(),
        6
    );
    let texts = texts(&svg);
    for wanted in [
        "Time against pool size",
        "pool size",
        "ms",
        "Pool::map",
        "threads",
    ] {
        x_of(&texts, wanted);
    }
    // Whole-number ticks print without decimals.
    assert!(texts.iter().any(|(t, _)| t == "4"));
    assert!(texts.iter().all(|(t, _)| t != "4.0"));
}

#[test]
fn empty_charts_still_draw_and_say_what_to_do() {
    let bars = BarChart::new("empty").svg();
    assert!(texts(&bars)
        .iter()
        .any(|(t, _)| t.starts_with("no bars yet")));
    let lines = LineChart::new("empty").svg();
    assert!(texts(&lines)
        .iter()
        .any(|(t, _)| t.starts_with("no points yet")));
}

#[test]
fn save_svg_writes_the_same_picture_and_reports_bad_paths() {
    let dir = std::env::temp_dir().join(format!("conclab-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pool.svg");
    let chart = pool_chart();
    chart.save_svg(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), chart.svg());
    std::fs::remove_dir_all(&dir).unwrap();

    let error = chart.save_svg(dir.join("missing/pool.svg")).unwrap_err();
    assert!(matches!(error, ChartError::Io { .. }));
}
