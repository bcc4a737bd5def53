//! Drawing a timeline: rows, colours, the SVG Gantt chart and the text summary.

use std::collections::HashMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Span;
use crate::chart::{
    draw_legend, draw_title, fit_text, fit_text_middle, fmt_number, ink_on, legend_height,
    render_svg, text_style, text_width, LegendEntry, INK, MUTED, PALETTE,
};
use crate::table::format_duration;

/// At most this many distinct labels get a colour each; beyond it, label groups do.
const MAX_KEYS: usize = PALETTE.len();

/// Where every span goes: its row and its colour key.
pub(crate) struct Layout {
    /// Row names, top to bottom.
    pub(crate) row_names: Vec<String>,
    /// The row of each span (parallel to the spans given).
    pub(crate) span_rows: Vec<usize>,
    /// Colour keys, in legend order.
    pub(crate) keys: Vec<String>,
    /// The colour key of each span.
    pub(crate) span_keys: Vec<usize>,
}

/// A label without its trailing number: `download 17` -> `download`.
fn label_group(label: &str) -> String {
    let trimmed = label.trim_end_matches(|c: char| {
        c.is_ascii_digit() || c.is_whitespace() || "-_#.:()[]".contains(c)
    });
    if trimmed.is_empty() {
        "(numbered)".to_owned()
    } else {
        trimmed.to_owned()
    }
}

impl Layout {
    /// `spans` must be sorted by start time (as `Timeline::spans` returns them): rows are
    /// ordered by the first span they started.
    pub(crate) fn new(spans: &[Span]) -> Layout {
        // A row is its name plus, for rows found from the thread, the thread: two threads
        // that share a name must not share a row, or their bars would overlap.
        type RowKey<'a> = (&'a str, Option<(u32, u32)>);
        let mut row_index: HashMap<RowKey, usize> = HashMap::new();
        let mut row_keys: Vec<RowKey> = Vec::new();
        let mut span_rows = Vec::with_capacity(spans.len());
        for span in spans {
            let thread = (!span.named_row).then_some((span.pid, span.tid));
            let key = (span.row.as_str(), thread);
            let next = row_keys.len();
            let index = *row_index.entry(key).or_insert(next);
            if index == next {
                row_keys.push(key);
            }
            span_rows.push(index);
        }
        let mut name_count: HashMap<&str, usize> = HashMap::new();
        for (name, _) in &row_keys {
            *name_count.entry(name).or_default() += 1;
        }
        let row_names = row_keys
            .iter()
            .map(|(name, thread)| match thread {
                Some((_, tid)) if name_count[name] > 1 => format!("{name} (tid {tid})"),
                _ => (*name).to_owned(),
            })
            .collect();

        let mut distinct: Vec<&str> = Vec::new();
        for span in spans {
            if !distinct.contains(&span.label.as_str()) {
                distinct.push(&span.label);
                if distinct.len() > MAX_KEYS {
                    break;
                }
            }
        }
        let by_label = distinct.len() <= MAX_KEYS;
        let mut key_index: HashMap<String, usize> = HashMap::new();
        let mut keys = Vec::new();
        let mut span_keys = Vec::with_capacity(spans.len());
        for span in spans {
            let key = if by_label {
                span.label.clone()
            } else {
                label_group(&span.label)
            };
            let next = keys.len();
            let index = *key_index.entry(key.clone()).or_insert(next);
            if index == next {
                keys.push(key);
            }
            span_keys.push(index);
        }
        Layout {
            row_names,
            span_rows,
            keys,
            span_keys,
        }
    }
}

fn color(key: usize) -> RGBColor {
    PALETTE[key % PALETTE.len()]
}

const WIDTH: u32 = 960;
const ROW_PX: f64 = 13.0;
const BAR_PX: f64 = 12.0;

/// Row height: roomy for a few rows, compact enough that 32 rows stay on one screen.
fn row_height(rows: usize) -> u32 {
    match rows {
        0..=4 => 44,
        5..=8 => 36,
        9..=16 => 28,
        _ => 22,
    }
}

fn legend_entries(layout: &Layout) -> Vec<LegendEntry> {
    let mut entries: Vec<LegendEntry> = layout
        .keys
        .iter()
        .enumerate()
        .take(MAX_KEYS)
        .map(|(i, key)| LegendEntry {
            label: fit_text(key, 200.0, 13.0),
            color: color(i),
        })
        .collect();
    if layout.keys.len() > MAX_KEYS {
        // Colours repeat past ten keys, so the legend says so instead of listing them.
        entries.truncate(MAX_KEYS - 1);
        entries.push(LegendEntry {
            label: format!(
                "… {} more (colours repeat)",
                layout.keys.len() - (MAX_KEYS - 1)
            ),
            color: RGBColor(0xDD, 0xDD, 0xDD),
        });
    }
    entries
}

/// The SVG Gantt chart; `x_desc` names the time axis (milliseconds, or steps of a
/// schedule for `explore`, which draws its steps one unit long each).
pub(crate) fn svg(
    title: &str,
    spans: &[Span],
    dropped: u64,
    capacity: usize,
    x_desc: &str,
) -> Result<String, String> {
    let layout = Layout::new(spans);
    let rows = layout.row_names.len();
    let entries = legend_entries(&layout);
    let label_w = layout
        .row_names
        .iter()
        .map(|n| text_width(n, ROW_PX))
        .fold(60.0_f64, f64::max)
        .min(260.0)
        .ceil() as u32
        + 20;
    let legend_h = legend_height(&entries, WIDTH - label_w - 20);
    let row_h = row_height(rows);
    let note_h = if dropped > 0 { 22 } else { 0 };
    let plot_h = row_h * rows.max(2) as u32;
    let height = 42 + legend_h + 8 + plot_h + 58 + note_h + 8;

    render_svg((WIDTH, height), |root| {
        let body = draw_title(root, title)?;
        let (legend_area, rest) = body.split_vertically(legend_h + 8);
        draw_legend(&legend_area.margin(0, 0, label_w as i32 + 10, 10), &entries)?;
        let (rest, note_area) = rest.split_vertically(plot_h + 58);

        let end_ms = spans
            .iter()
            .map(|s| s.end.as_secs_f64() * 1e3)
            .fold(0.0_f64, f64::max);
        let t0 = spans
            .iter()
            .map(|s| s.start.as_secs_f64() * 1e3)
            .fold(f64::INFINITY, f64::min);
        let t0 = if t0.is_finite() { t0 } else { 0.0 };
        // With no span there is no time to show: a plain 0..1 axis beats 0.0001 ticks.
        let x_max = if spans.is_empty() {
            1.0
        } else {
            ((end_ms - t0) * 1.02).max(0.001)
        };
        let y_max = rows.max(1) as f64;

        let mut chart = ChartBuilder::on(&rest)
            .margin_right(24)
            .margin_bottom(6)
            .x_label_area_size(52)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let x_fmt = |v: &f64| fmt_number(*v);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(12)
            .x_label_formatter(&x_fmt)
            .max_light_lines(0)
            .bold_line_style(RGBColor(0xE4, 0xE4, 0xE4))
            .axis_style(MUTED)
            .label_style(text_style(13.0, &INK, Pos::new(HPos::Center, VPos::Top)))
            .axis_desc_style(text_style(14.0, &INK, Pos::new(HPos::Center, VPos::Top)))
            .x_desc(x_desc)
            .draw()
            .map_err(|e| e.to_string())?;

        let plot = chart.plotting_area();
        let (plot_w, _) = plot.dim_in_pixel();
        let ms_per_px = x_max / f64::from(plot_w.max(1));
        // Row i (from the top) spans y in [top - 1, top]; the bar fills its middle.
        let band = |row: usize| {
            let top = y_max - row as f64;
            (top - 0.82, top - 0.18)
        };
        for row in (1..rows).step_by(2) {
            let top = y_max - row as f64;
            plot.draw(&Rectangle::new(
                [(0.0, top - 1.0), (x_max, top)],
                RGBColor(0xF3, 0xF4, 0xF6).filled(),
            ))
            .map_err(|e| e.to_string())?;
        }

        let bar_label = text_style(BAR_PX, &INK, Pos::new(HPos::Center, VPos::Center));
        let label_white = text_style(BAR_PX, &WHITE, Pos::new(HPos::Center, VPos::Center));
        for (i, span) in spans.iter().enumerate() {
            let (lo, hi) = band(layout.span_rows[i]);
            let x0 = span.start.as_secs_f64() * 1e3 - t0;
            let x1 = span.end.as_secs_f64() * 1e3 - t0;
            let width_px = (x1 - x0) / ms_per_px;
            // A one-pixel gap at each end keeps back-to-back spans on one row apart; a
            // span too short to see still gets one pixel.
            let (a, b) = if width_px >= 4.0 {
                (x0 + ms_per_px * 0.5, x1 - ms_per_px * 0.5)
            } else {
                (x0, x0 + ms_per_px.max(x1 - x0))
            };
            let fill = color(layout.span_keys[i]);
            plot.draw(&Rectangle::new([(a, lo), (b, hi)], fill.filled()))
                .map_err(|e| e.to_string())?;
            if text_width(&span.label, BAR_PX) + 8.0 <= width_px {
                let style = if ink_on(&fill) == WHITE {
                    &label_white
                } else {
                    &bar_label
                };
                let (px, py) = chart.backend_coord(&((x0 + x1) / 2.0, (lo + hi) / 2.0));
                root.draw_text(&span.label, style, (px, py))
                    .map_err(|e| e.to_string())?;
            }
        }

        let row_style = text_style(ROW_PX, &INK, Pos::new(HPos::Right, VPos::Center));
        for (row, name) in layout.row_names.iter().enumerate() {
            let (lo, hi) = band(row);
            let (px, py) = chart.backend_coord(&(0.0, (lo + hi) / 2.0));
            let name = fit_text_middle(name, f64::from(label_w) - 20.0, ROW_PX);
            root.draw_text(&name, &row_style, (px - 8, py))
                .map_err(|e| e.to_string())?;
        }
        if spans.is_empty() {
            let (px, py) = chart.backend_coord(&(x_max / 2.0, y_max / 2.0));
            root.draw_text(
                "no spans yet: record some with timeline.span(label, || work)",
                &text_style(14.0, &MUTED, Pos::new(HPos::Center, VPos::Center)),
                (px, py),
            )
            .map_err(|e| e.to_string())?;
        }
        if dropped > 0 {
            note_area
                .draw_text(
                    &format!(
                        "{dropped} more spans were not recorded: the timeline holds {capacity} \
                         (make it with Timeline::with_capacity for more)"
                    ),
                    &text_style(
                        13.0,
                        &RGBColor(0xB0, 0x00, 0x20),
                        Pos::new(HPos::Left, VPos::Top),
                    ),
                    (10, 4),
                )
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

const TEXT_BAR: usize = 40;
const TEXT_LIST: usize = 40;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The text summary behind `Display`.
pub(crate) fn text(title: &str, spans: &[Span], dropped: u64, capacity: usize) -> String {
    let layout = Layout::new(spans);
    let mut out = String::new();
    let t0 = spans.iter().map(|s| s.start).min().unwrap_or_default();
    let t1 = spans.iter().map(|s| s.end).max().unwrap_or_default();
    let total = t1.saturating_sub(t0);
    let _ = writeln!(
        out,
        "{title}: {} on {}, over {}",
        plural(spans.len(), "span", "spans"),
        plural(layout.row_names.len(), "row", "rows"),
        format_duration(total)
    );
    if dropped > 0 {
        let _ = writeln!(
            out,
            "({dropped} more spans were not recorded: the timeline holds {capacity})"
        );
    }
    let name_w = layout
        .row_names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0);
    let scale = TEXT_BAR as f64 / total.as_secs_f64().max(1e-12);
    for (row, name) in layout.row_names.iter().enumerate() {
        let mut cells = [false; TEXT_BAR];
        let mut busy = std::time::Duration::ZERO;
        let mut count = 0;
        for (i, span) in spans.iter().enumerate() {
            if layout.span_rows[i] != row {
                continue;
            }
            count += 1;
            busy += span.duration();
            let a = ((span.start - t0).as_secs_f64() * scale).floor() as usize;
            let b = ((span.end - t0).as_secs_f64() * scale).ceil() as usize;
            for cell in cells.iter_mut().take(b.max(a + 1).min(TEXT_BAR)).skip(a) {
                *cell = true;
            }
        }
        let bar: String = cells.iter().map(|&c| if c { '█' } else { '·' }).collect();
        let pad = name_w - name.chars().count();
        let _ = writeln!(
            out,
            "  {name}{:pad$} |{bar}| {}, busy {}",
            "",
            plural(count, "span", "spans"),
            format_duration(busy)
        );
    }
    if !spans.is_empty() && spans.len() <= TEXT_LIST {
        let _ = writeln!(
            out,
            "  {:>10}  {:>10}  {:<name_w$}  label",
            "start ms", "end ms", "row"
        );
        for (i, span) in spans.iter().enumerate() {
            let ms = |d: std::time::Duration| d.saturating_sub(t0).as_secs_f64() * 1e3;
            let _ = writeln!(
                out,
                "  {:>10.3}  {:>10.3}  {:<name_w$}  {}",
                ms(span.start),
                ms(span.end),
                layout.row_names[layout.span_rows[i]],
                span.label
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn span(row: &str, tid: u32, label: &str, start_ms: u64, end_ms: u64) -> Span {
        Span {
            label: label.to_owned(),
            row: row.to_owned(),
            pid: 10,
            tid,
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
            named_row: false,
        }
    }

    #[test]
    fn groups_drop_the_trailing_number() {
        assert_eq!(label_group("download 17"), "download");
        assert_eq!(label_group("task-3"), "task");
        assert_eq!(label_group("42"), "(numbered)");
    }

    #[test]
    fn same_name_different_threads_get_two_rows() {
        let spans = [span("worker", 1, "a", 0, 1), span("worker", 2, "b", 0, 1)];
        let layout = Layout::new(&spans);
        assert_eq!(layout.row_names, ["worker (tid 1)", "worker (tid 2)"]);
    }

    #[test]
    fn many_labels_are_coloured_by_group() {
        let spans: Vec<Span> = (0..30)
            .map(|i| span("main", 1, &format!("job {i}"), i, i + 1))
            .collect();
        let layout = Layout::new(&spans);
        assert_eq!(layout.keys, ["job"]);
    }

    #[test]
    fn text_summary_marks_busy_time() {
        let spans = [span("main", 1, "a", 0, 50), span("other", 2, "b", 50, 100)];
        let text = text("T", &spans, 0, 10);
        let main = text.lines().nth(1).unwrap();
        let bar: String = main.chars().skip_while(|&c| c != '|').collect();
        assert!(bar.starts_with("|████"), "{text}");
        assert!(bar.contains("·|"), "{text}");
    }
}
