//! Tables of timings: HTML in a notebook, aligned plain text everywhere else.
//!
//! | Python habit | conclab |
//! | --- | --- |
//! | `print(f"Pool Size: {size} \| Time Taken: {t:.5f} seconds")` in a loop | a [`Table`] with one row per pool size |
//! | a pandas `DataFrame` shown by IPython | [`Table::evcxr_display`] (HTML) |
//! | `str(df)` | [`Table`]'s `Display` (aligned text) |
//!
//! Nothing in std, parking_lot or crossbeam formats tables; this is a small formatter of
//! our own. Numbers are right-aligned and a column of floats shares one number of
//! decimals, so that digits line up; durations are printed with [`format_duration`],
//! which picks ns, µs, ms or s so that about three significant digits show.
//!
//! ```
//! use conclab::table::Table;
//! use std::time::Duration;
//!
//! let table = Table::new(["pool size", "time", "speed-up"])
//!     .title("Squares of 1..=10")
//!     .row((2, Duration::from_micros(24_100), 1.0))
//!     .row((4, Duration::from_micros(17_000), 1.42))
//!     .row((8, Duration::from_micros(22_000), 1.1));
//! assert_eq!(
//!     table.to_string(),
//!     "Squares of 1..=10\n\
//!      pool size     time  speed-up\n\
//!      ---------  -------  --------\n\
//!      \x20       2  24.1 ms      1.00\n\
//!      \x20       4  17.0 ms      1.42\n\
//!      \x20       8  22.0 ms      1.10\n"
//! );
//! ```

use std::fmt;
use std::time::Duration;

use crate::display;

/// Formats a duration with a unit chosen so that about three significant digits show:
/// `850 ns`, `12.3 µs`, `188 µs`, `24.1 ms`, `2.00 s`, `75.3 s`, `2 min 05 s`.
///
/// ```
/// use conclab::table::format_duration;
/// use std::time::Duration;
///
/// assert_eq!(format_duration(Duration::from_nanos(850)), "850 ns");
/// assert_eq!(format_duration(Duration::from_nanos(12_340)), "12.3 µs");
/// assert_eq!(format_duration(Duration::from_micros(24_130)), "24.1 ms");
/// assert_eq!(format_duration(Duration::from_millis(2_004)), "2.00 s");
/// assert_eq!(format_duration(Duration::from_secs(125)), "2 min 05 s");
/// ```
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        return format!("{ns} ns");
    }
    if d.as_secs() >= 120 {
        let s = d.as_secs();
        return format!("{} min {:02} s", s / 60, s % 60);
    }
    let (value, unit) = if ns < 1_000_000 {
        (ns as f64 / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        (ns as f64 / 1e6, "ms")
    } else {
        (d.as_secs_f64(), "s")
    };
    // Rounding can carry into the next power of ten (999.96 µs -> "1000 µs"); that is
    // still correct and three digits wide, so it is left as is.
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// One cell of a [`Table`]. Made with `From` from text, any primitive number, a
/// [`Duration`], or an `Option` of these (`None` is an empty cell).
///
/// ```
/// use conclab::table::Cell;
/// use std::time::Duration;
///
/// assert_eq!(Cell::from("threads"), Cell::Text("threads".into()));
/// assert_eq!(Cell::from(8usize), Cell::Int(8));
/// assert_eq!(Cell::from(None::<f64>), Cell::Empty);
/// assert!(Cell::from(Duration::from_millis(5)).is_number());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text, left-aligned.
    Text(String),
    /// A whole number, right-aligned.
    Int(i128),
    /// A float, right-aligned with the column's common number of decimals.
    Float(f64),
    /// A duration, right-aligned, formatted by [`format_duration`].
    Duration(Duration),
    /// Nothing.
    Empty,
}

impl Cell {
    /// Whether the cell holds a number (and so is right-aligned).
    ///
    /// ```
    /// use conclab::table::Cell;
    /// assert!(Cell::from(1.5).is_number());
    /// assert!(!Cell::from("1.5").is_number());
    /// ```
    pub fn is_number(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Float(_) | Cell::Duration(_))
    }

    fn render(&self, decimals: usize) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) if !f.is_finite() => f.to_string(),
            Cell::Float(f) => format!("{f:.decimals$}"),
            Cell::Duration(d) => format_duration(*d),
            Cell::Empty => String::new(),
        }
    }
}

/// Decimals that show about three significant digits of `v` (0 to 6).
fn decimals_for(v: f64) -> usize {
    let a = v.abs();
    if !a.is_finite() || a == 0.0 || a >= 100.0 {
        0
    } else {
        (2.0 - a.log10().floor()).clamp(0.0, 6.0) as usize
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<&String> for Cell {
    fn from(s: &String) -> Cell {
        Cell::Text(s.clone())
    }
}

impl From<Duration> for Cell {
    fn from(d: Duration) -> Cell {
        Cell::Duration(d)
    }
}

impl From<f64> for Cell {
    fn from(f: f64) -> Cell {
        Cell::Float(f)
    }
}

impl From<f32> for Cell {
    fn from(f: f32) -> Cell {
        Cell::Float(f64::from(f))
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(value: Option<T>) -> Cell {
        value.map_or(Cell::Empty, Into::into)
    }
}

macro_rules! cell_from_int {
    ($($t:ty),*) => {
        $(impl From<$t> for Cell {
            fn from(i: $t) -> Cell {
                Cell::Int(i as i128)
            }
        })*
    };
}
cell_from_int!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

/// What [`Table::row`] accepts: a tuple of up to 8 cells of mixed types, or an array,
/// `Vec` or slice of one type that converts [`Into`] a [`Cell`].
///
/// ```
/// use conclab::table::{Cell, IntoRow};
/// use std::time::Duration;
///
/// assert_eq!(("a", 1).into_cells(), vec![Cell::from("a"), Cell::from(1)]);
/// assert_eq!([1.5, 2.5].into_cells().len(), 2);
/// assert_eq!(vec![Duration::ZERO].into_cells().len(), 1);
/// ```
pub trait IntoRow {
    /// The row's cells, left to right.
    fn into_cells(self) -> Vec<Cell>;
}

impl<T: Into<Cell>, const N: usize> IntoRow for [T; N] {
    fn into_cells(self) -> Vec<Cell> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Into<Cell>> IntoRow for Vec<T> {
    fn into_cells(self) -> Vec<Cell> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Into<Cell> + Clone> IntoRow for &[T] {
    fn into_cells(self) -> Vec<Cell> {
        self.iter().cloned().map(Into::into).collect()
    }
}

macro_rules! tuple_rows {
    ($(($($t:ident),+)),+) => {
        $(impl<$($t: Into<Cell>),+> IntoRow for ($($t,)+) {
            #[allow(non_snake_case)]
            fn into_cells(self) -> Vec<Cell> {
                let ($($t,)+) = self;
                vec![$($t.into()),+]
            }
        })+
    };
}
tuple_rows!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
    (A, B, C, D, E, F, G),
    (A, B, C, D, E, F, G, H)
);

/// A table with a header row, an optional title and rows of [`Cell`]s.
///
/// A row shorter than the header is padded with empty cells; a longer one widens the
/// table (its extra columns get an empty header), so no row is ever lost.
///
/// ```
/// use conclab::table::Table;
///
/// let mut table = Table::new(["how", "seconds"]);
/// for (how, secs) in [("sequential", 6.01), ("threads", 2.003)] {
///     table.add_row((how, secs));
/// }
/// assert_eq!(table.len(), 2);
/// assert!(table.html().contains("<td style=\"text-align:right"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    title: Option<String>,
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

struct Laid {
    headers: Vec<String>,
    cells: Vec<Vec<String>>,
    right: Vec<bool>,
    numeric: Vec<Vec<bool>>,
}

impl Table {
    /// A table with these column headers and no rows.
    ///
    /// ```
    /// let table = conclab::table::Table::new(["a", "b"]);
    /// assert!(table.is_empty());
    /// ```
    pub fn new<I, S>(headers: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        Table {
            title: None,
            headers: headers.into_iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Gives the table a title (an HTML caption, a first line of text).
    ///
    /// ```
    /// let table = conclab::table::Table::new(["a"]).title("Timings");
    /// assert!(table.to_string().starts_with("Timings\n"));
    /// ```
    pub fn title(mut self, title: impl Into<String>) -> Table {
        self.title = Some(title.into());
        self
    }

    /// Adds a row, for chaining.
    ///
    /// ```
    /// let table = conclab::table::Table::new(["n", "n²"]).row((3, 9)).row((4, 16));
    /// assert_eq!(table.len(), 2);
    /// ```
    pub fn row(mut self, row: impl IntoRow) -> Table {
        self.add_row(row);
        self
    }

    /// Adds a row, for loops.
    ///
    /// ```
    /// let mut table = conclab::table::Table::new(["n", "n²"]);
    /// for n in 1..=3 {
    ///     table.add_row((n, n * n));
    /// }
    /// assert_eq!(table.len(), 3);
    /// ```
    pub fn add_row(&mut self, row: impl IntoRow) -> &mut Table {
        self.rows.push(row.into_cells());
        self
    }

    /// How many rows the table has (the header not counted).
    ///
    /// ```
    /// assert_eq!(conclab::table::Table::new(["a"]).row(["x"]).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no row.
    ///
    /// ```
    /// assert!(conclab::table::Table::new(["a"]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The cell at `row`, `column` (both from 0), if there is one.
    ///
    /// ```
    /// use conclab::table::{Cell, Table};
    /// let table = Table::new(["a", "b"]).row(("x", 2));
    /// assert_eq!(table.cell(0, 1), Some(&Cell::Int(2)));
    /// assert_eq!(table.cell(1, 0), None);
    /// ```
    pub fn cell(&self, row: usize, column: usize) -> Option<&Cell> {
        self.rows.get(row)?.get(column)
    }

    fn layout(&self) -> Laid {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut decimals = vec![0usize; columns];
        let mut right = vec![true; columns];
        let mut any = vec![false; columns];
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate() {
                if let Cell::Float(f) = cell {
                    decimals[c] = decimals[c].max(decimals_for(*f));
                }
                if !matches!(cell, Cell::Empty) {
                    any[c] = true;
                    right[c] &= cell.is_number();
                }
            }
        }
        for (r, a) in right.iter_mut().zip(&any) {
            *r &= *a;
        }
        let headers = (0..columns)
            .map(|c| self.headers.get(c).cloned().unwrap_or_default())
            .collect();
        let mut cells = Vec::with_capacity(self.rows.len());
        let mut numeric = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let mut texts = Vec::with_capacity(columns);
            let mut nums = Vec::with_capacity(columns);
            for (c, &dec) in decimals.iter().enumerate() {
                let cell = row.get(c).unwrap_or(&Cell::Empty);
                texts.push(cell.render(dec));
                nums.push(cell.is_number());
            }
            cells.push(texts);
            numeric.push(nums);
        }
        Laid {
            headers,
            cells,
            right,
            numeric,
        }
    }

    /// The table as an HTML `<table>` (what [`Table::evcxr_display`] shows).
    ///
    /// ```
    /// let html = conclab::table::Table::new(["a<b"]).row([1]).html();
    /// assert!(html.starts_with("<table") && html.contains("a&lt;b"));
    /// ```
    pub fn html(&self) -> String {
        let laid = self.layout();
        let mut out = String::from(
            "<table style=\"border-collapse:collapse;font-variant-numeric:tabular-nums\">\n",
        );
        if let Some(title) = &self.title {
            out.push_str("<caption style=\"font-weight:bold;text-align:left;padding:4px 0\">");
            out.push_str(&display::escape(title));
            out.push_str("</caption>\n");
        }
        out.push_str("<thead><tr>");
        for (h, &right) in laid.headers.iter().zip(&laid.right) {
            out.push_str(&format!(
                "<th style=\"text-align:{};padding:3px 10px;border-bottom:1px solid #888\">{}</th>",
                if right { "right" } else { "left" },
                display::escape(h)
            ));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for (row, nums) in laid.cells.iter().zip(&laid.numeric) {
            out.push_str("<tr>");
            for (text, &num) in row.iter().zip(nums) {
                out.push_str(&format!(
                    "<td style=\"text-align:{};padding:3px 10px\">{}</td>",
                    if num { "right" } else { "left" },
                    display::escape(text)
                ));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }

    /// Shows the table in a notebook cell (evcxr calls this for a cell's last value): as
    /// HTML, with the aligned text of [`Display`](std::fmt::Display) as the `text/plain`
    /// fallback that a terminal client, a diff or a grader reads.
    ///
    /// ```
    /// conclab::table::Table::new(["a"]).row([1]).evcxr_display();
    /// ```
    pub fn evcxr_display(&self) {
        display::print_blocks(&[
            (display::TEXT_MIME, &self.to_string()),
            (display::HTML_MIME, &self.html()),
        ]);
    }
}

fn width(text: &str) -> usize {
    text.chars().count()
}

fn pad(out: &mut String, text: &str, width_to: usize, right: bool) {
    let fill = width_to.saturating_sub(width(text));
    if right {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(text);
    } else {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', fill));
    }
}

/// Aligned plain text: the title, the header, a rule, the rows; columns two spaces apart,
/// numbers right-aligned, no trailing spaces, every line ending in a newline.
impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let laid = self.layout();
        let columns = laid.headers.len();
        let mut widths: Vec<usize> = laid.headers.iter().map(|h| width(h)).collect();
        for row in &laid.cells {
            for (w, text) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(text));
            }
        }
        let mut out = String::new();
        if let Some(title) = &self.title {
            out.push_str(title);
            out.push('\n');
        }
        let mut line = |cells: &mut dyn Iterator<Item = (String, bool)>| {
            let mut text = String::new();
            for (c, (cell, right)) in cells.enumerate() {
                if c > 0 {
                    text.push_str("  ");
                }
                pad(&mut text, &cell, widths[c], right);
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        if columns > 0 {
            line(&mut laid.headers.iter().cloned().zip(laid.right.iter().copied()));
            line(&mut widths.iter().map(|&w| ("-".repeat(w), false)));
            for (row, nums) in laid.cells.iter().zip(&laid.numeric) {
                line(&mut row.iter().cloned().zip(nums.iter().copied()));
            }
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_their_unit() {
        let d = |ns| format_duration(Duration::from_nanos(ns));
        assert_eq!(d(0), "0 ns");
        assert_eq!(d(1_000), "1.00 µs");
        assert_eq!(d(188_000), "188 µs");
        assert_eq!(d(2_725_000), "2.73 ms");
        assert_eq!(d(75_300_000_000), "75.3 s");
    }

    #[test]
    fn float_columns_share_decimals() {
        let t = Table::new(["x"]).row([0.5]).row([12.25]);
        let text = t.to_string();
        assert!(
            text.contains(" 0.500\n") && text.contains("12.250\n"),
            "{text}"
        );
    }

    #[test]
    fn ragged_rows_widen_or_pad() {
        let t = Table::new(["a"]).row(("x", 1)).row(["y"]);
        let text = t.to_string();
        assert_eq!(text.lines().count(), 4);
        assert_eq!(t.cell(1, 1), None);
    }
}
