//! Tables: aligned text and well-formed HTML.

use std::time::Duration;

use conclab::table::{format_duration, Cell, Table};

fn timings() -> Table {
    Table::new(["how", "workers", "time", "speed-up"])
        .title("Three downloads")
        .row(("sequential", 1, Duration::from_millis(6010), 1.0))
        .row(("threads", 3, Duration::from_micros(2_003_400), 3.0))
        .row(("processes", 3, Duration::from_micros(987), 6089.1))
}

/// The column spans, read from the rule of dashes under the header.
fn columns(rule: &str) -> Vec<(usize, usize)> {
    let chars: Vec<char> = rule.chars().collect();
    let mut spans = Vec::new();
    let mut start = None;
    for (i, &c) in chars.iter().chain([' '].iter()).enumerate() {
        match (c, start) {
            ('-', None) => start = Some(i),
            (' ', Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    spans
}

#[test]
fn text_columns_line_up_with_numbers_right_aligned() {
    let text = timings().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Three downloads");
    let spans = columns(lines[2]);
    assert_eq!(spans.len(), 4, "{text}");
    for line in &lines[1..] {
        let chars: Vec<char> = line.chars().collect();
        for (c, &(start, end)) in spans.iter().enumerate() {
            // Nothing spills into the two spaces between columns.
            if start >= 2 {
                assert_eq!(&chars[start - 2..start], [' ', ' '], "{text}");
            }
            let cell: String = chars[start..end.min(chars.len())].iter().collect();
            if c == 0 {
                assert!(!cell.starts_with(' '), "text is left-aligned:\n{text}");
            } else {
                assert!(
                    !cell.ends_with(' ') && chars.len() >= end,
                    "numbers are right-aligned:\n{text}"
                );
            }
        }
    }
    assert!(text.contains("6.01 s") && text.contains("987 µs") && text.contains("2.00 s"));
    // One column of floats shares its decimals.
    assert!(
        text.contains("   1.00\n") && text.contains("6089.10\n"),
        "{text}"
    );
}

#[test]
fn every_line_ends_with_a_newline_and_none_has_trailing_spaces() {
    let text = Table::new(["name", "note"])
        .row(("a", "x"))
        .row(("longer name", ""))
        .to_string();
    assert!(text.ends_with('\n'));
    assert!(text.lines().all(|l| !l.ends_with(' ')), "{text:?}");
}

#[test]
fn html_is_well_formed_and_aligns_numbers_right() {
    let html = timings().html();
    let doc = roxmltree::Document::parse(&html).expect("the table must be well-formed");
    let table = doc.root_element();
    assert_eq!(table.tag_name().name(), "table");
    let caption = table
        .children()
        .find(|n| n.has_tag_name("caption"))
        .unwrap();
    assert_eq!(caption.text(), Some("Three downloads"));
    let rows: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("tr")).collect();
    assert_eq!(rows.len(), 4);
    let body_row = rows[1];
    let styles: Vec<&str> = body_row
        .children()
        .filter(|n| n.has_tag_name("td"))
        .map(|n| n.attribute("style").unwrap())
        .collect();
    assert!(styles[0].contains("text-align:left"));
    assert!(styles[1..].iter().all(|s| s.contains("text-align:right")));
    let headers: Vec<&str> = rows[0]
        .children()
        .filter(|n| n.has_tag_name("th"))
        .map(|n| n.text().unwrap())
        .collect();
    assert_eq!(headers, ["how", "workers", "time", "speed-up"]);
}

#[test]
fn html_escapes_what_students_type() {
    let html = Table::new(["<b>"]).row(["a & b"]).html();
    assert!(html.contains("&lt;b&gt;") && html.contains("a &amp; b"));
    roxmltree::Document::parse(&html).unwrap();
}

#[test]
fn durations_read_naturally_at_every_scale() {
    let cases = [
        (Duration::from_nanos(75), "75 ns"),
        (Duration::from_micros(58), "58.0 µs"),
        (Duration::from_micros(199), "199 µs"),
        (Duration::from_micros(2_725), "2.73 ms"),
        (Duration::from_millis(24), "24.0 ms"),
        (Duration::from_millis(188), "188 ms"),
        (Duration::from_secs(6), "6.00 s"),
        (Duration::from_secs(600), "10 min 00 s"),
    ];
    for (d, want) in cases {
        assert_eq!(format_duration(d), want);
    }
}

#[test]
fn options_and_mixed_rows_become_cells() {
    let table = Table::new(["a", "b", "c"]).row(vec![
        Cell::from("x"),
        Cell::from(None::<u32>),
        Cell::from(2.5f32),
    ]);
    assert_eq!(table.cell(0, 1), Some(&Cell::Empty));
    assert_eq!(table.cell(0, 2), Some(&Cell::Float(2.5)));
}
