//! Bar and line charts of timing experiments, drawn as SVG with `plotters`.
//!
//! | Python habit | conclab |
//! | --- | --- |
//! | `plt.bar(sizes, seconds)` (matplotlib) | [`BarChart`] |
//! | `plt.plot(x, y, label=...)`, `plt.legend()` | [`LineChart`] |
//! | `plt.savefig("f.svg")` | [`BarChart::save_svg`], [`LineChart::save_svg`] |
//! | a figure shown inline by IPython | `evcxr_display`, called by evcxr for a cell's last value |
//!
//! Neither std, parking_lot nor crossbeam draws anything; the pictures are drawn by the
//! `plotters` crate's SVG backend, built without its font and bitmap stack (the viewer
//! draws the text, so no font files are read and nothing is rasterised here).
//!
//! A chart is a plain value: build it, then let the cell end with it, and evcxr shows it.
//!
//! ```
//! use conclab::chart::BarChart;
//!
//! // Seed Q8: seconds per pool size, one bar per way of running the work.
//! let chart = BarChart::new("Squares of 1..=10 with a pool")
//!     .x_label("pool size")
//!     .y_label("seconds")
//!     .bar(2, "processes", 0.024)
//!     .bar(4, "processes", 0.017)
//!     .bar(8, "processes", 0.022);
//! assert!(chart.svg().contains("pool size"));
//! ```
//!
//! The layout helpers here (palette, legend, text-width estimate) are shared with
//! [`crate::timeline`], so that every picture of the course looks alike.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::display;

/// What can go wrong when drawing or saving a chart: the error of every picture.
///
/// ```
/// use conclab::chart::ChartError;
/// assert!(ChartError::Draw("no room".into()).to_string().contains("no room"));
/// ```
pub type ChartError = display::PictureError;

/// A number a chart can plot: every primitive number, and a [`Duration`] (as seconds).
///
/// ```
/// use conclab::chart::ChartValue;
/// use std::time::Duration;
///
/// assert_eq!(8usize.to_f64(), 8.0);
/// assert_eq!(Duration::from_millis(250).to_f64(), 0.25);
/// ```
pub trait ChartValue {
    /// The value as an `f64` (a [`Duration`] in seconds).
    fn to_f64(self) -> f64;
}

macro_rules! chart_value_as {
    ($($t:ty),*) => {
        $(impl ChartValue for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        })*
    };
}
chart_value_as!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64);

impl ChartValue for Duration {
    fn to_f64(self) -> f64 {
        self.as_secs_f64()
    }
}

// ---------------------------------------------------------------------------------------
// Shared look: used by the charts and by the timeline.
// ---------------------------------------------------------------------------------------

/// Tableau 10: ten colours that stay apart for colour-blind readers and in grey print.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xBA, 0xB0, 0xAC),
];

pub(crate) const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub(crate) const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
pub(crate) const FAMILY: &str = "sans-serif";

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A text style whose SVG `font-size` is `px` (plotters writes its size divided by 1.24).
pub(crate) fn text_style<'a>(px: f64, color: &'a RGBColor, pos: Pos) -> TextStyle<'a> {
    TextStyle::from((FAMILY, px * 1.24).into_font())
        .color(color)
        .pos(pos)
}

/// A generous estimate of the rendered width of `text` at `px`: the viewer picks the font,
/// so layout keeps a margin rather than trusting an exact metric.
pub(crate) fn text_width(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * 0.6
}

/// `text`, cut with an ellipsis so that it fits in `max_width` pixels at `px`.
pub(crate) fn fit_text(text: &str, max_width: f64, px: f64) -> String {
    if text_width(text, px) <= max_width {
        return text.to_owned();
    }
    let keep = ((max_width / (px * 0.6)).floor() as usize).saturating_sub(1);
    let mut cut: String = text.chars().take(keep).collect();
    cut.push('…');
    cut
}

/// `text`, cut in the middle so that it fits in `max_width` pixels at `px`: row names
/// such as `worker-with-a-long-name-17` differ at their end, which must stay visible.
pub(crate) fn fit_text_middle(text: &str, max_width: f64, px: f64) -> String {
    if text_width(text, px) <= max_width {
        return text.to_owned();
    }
    let keep = ((max_width / (px * 0.6)).floor() as usize).saturating_sub(1);
    let tail = keep * 2 / 5;
    let head = keep - tail;
    let chars: Vec<char> = text.chars().collect();
    let mut cut: String = chars[..head].iter().collect();
    cut.push('…');
    cut.extend(&chars[chars.len() - tail..]);
    cut
}

/// Black or white, whichever reads better on `background`.
pub(crate) fn ink_on(background: &RGBColor) -> RGBColor {
    let RGBColor(r, g, b) = *background;
    let luma = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
    if luma > 150.0 {
        INK
    } else {
        WHITE
    }
}

/// A number for an axis tick: no trailing zeros, at most 3 significant decimals for small
/// values.
pub(crate) fn fmt_number(v: f64) -> String {
    let text = fmt_value(v);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A value over a bar: three significant digits, zeros kept, so that bars side by side
/// show the same precision (`2.00` next to `2.05`, not `2`).
pub(crate) fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let decimals = (2.0 - a.log10().floor()).clamp(2.0, 9.0) as usize;
        format!("{v:.decimals$}")
    }
}

pub(crate) struct LegendEntry {
    pub(crate) label: String,
    pub(crate) color: RGBColor,
}

const LEGEND_PX: f64 = 13.0;
const LEGEND_ROW: u32 = 22;
const SWATCH: i32 = 12;

/// Lays the entries out left to right, wrapping at `width`; returns each entry's
/// position and the height the legend needs.
fn legend_layout(entries: &[LegendEntry], width: u32) -> (Vec<(i32, i32)>, u32) {
    let mut places = Vec::with_capacity(entries.len());
    let (mut x, mut y) = (0.0_f64, 0_u32);
    let max = f64::from(width);
    for entry in entries {
        let w = f64::from(SWATCH as u32) + 6.0 + text_width(&entry.label, LEGEND_PX) + 18.0;
        if x > 0.0 && x + w > max {
            x = 0.0;
            y += LEGEND_ROW;
        }
        places.push((x as i32, y as i32));
        x += w;
    }
    let height = if entries.is_empty() {
        0
    } else {
        y + LEGEND_ROW
    };
    (places, height)
}

/// The height `draw_legend` will use for these entries at this width.
pub(crate) fn legend_height(entries: &[LegendEntry], width: u32) -> u32 {
    legend_layout(entries, width).1
}

/// Draws a wrapped, left-aligned legend of colour swatches at the top of `area`.
pub(crate) fn draw_legend(area: &Area, entries: &[LegendEntry]) -> Result<(), String> {
    let (width, _) = area.dim_in_pixel();
    let (places, _) = legend_layout(entries, width);
    let style = text_style(LEGEND_PX, &INK, Pos::new(HPos::Left, VPos::Center));
    for (entry, (x, y)) in entries.iter().zip(places) {
        let mid = y + LEGEND_ROW as i32 / 2;
        area.draw(&Rectangle::new(
            [(x, mid - SWATCH / 2), (x + SWATCH, mid + SWATCH / 2)],
            entry.color.filled(),
        ))
        .map_err(|e| e.to_string())?;
        area.draw_text(&entry.label, &style, (x + SWATCH + 6, mid))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Draws the title centred at the top and returns the area under it.
pub(crate) fn draw_title<'a>(area: &Area<'a>, title: &str) -> Result<Area<'a>, String> {
    let (width, _) = area.dim_in_pixel();
    let title = fit_text(title, f64::from(width) - 20.0, 20.0);
    let style = text_style(20.0, &INK, Pos::new(HPos::Center, VPos::Top));
    area.draw_text(&title, &style, (width as i32 / 2, 10))
        .map_err(|e| e.to_string())?;
    Ok(area.split_vertically(42).1)
}

/// Renders with `draw` into an SVG string of `size` pixels.
pub(crate) fn render_svg<F>(size: (u32, u32), draw: F) -> Result<String, String>
where
    F: FnOnce(&Area) -> Result<(), String>,
{
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Index of `name` in `names`, appending it when it is new: keeps first-seen order.
fn index_of(names: &mut Vec<String>, name: String) -> usize {
    match names.iter().position(|n| *n == name) {
        Some(i) => i,
        None => {
            names.push(name);
            names.len() - 1
        }
    }
}

/// The y range for values that should be read from zero: timings are compared by their
/// heights, so the axis starts at 0 unless a value is negative.
fn y_range(values: impl Iterator<Item = f64>, headroom: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0_f64, 0.0_f64);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let span = hi - lo;
    (
        if lo < 0.0 { lo - span * 0.05 } else { lo },
        hi + span * headroom,
    )
}

// ---------------------------------------------------------------------------------------
// Bar chart
// ---------------------------------------------------------------------------------------

/// A bar chart, grouped when it has several series: one group of bars per category (a pool
/// size, say), one bar per series (sequential, threads, processes) in each group.
///
/// Categories and series appear in the order they were first given. Giving the same
/// category and series twice replaces the value. A value that is not finite (NaN, ∞) has
/// no bar and is labelled `n/a`.
///
/// ```
/// use conclab::chart::BarChart;
/// use std::time::Duration;
///
/// let mut chart = BarChart::new("Three downloads of 20 ms each")
///     .x_label("how")
///     .y_label("seconds");
/// for (how, took) in [("sequential", 60), ("threads", 21), ("processes", 23)] {
///     chart.add_bar(how, "wall time", Duration::from_millis(took));
/// }
/// let svg = chart.svg();
/// assert!(svg.contains("sequential") && svg.contains("processes"));
/// ```
#[derive(Debug, Clone)]
pub struct BarChart {
    title: String,
    x_label: String,
    y_label: String,
    categories: Vec<String>,
    series: Vec<String>,
    values: Vec<(usize, usize, f64)>,
    size: (u32, u32),
    value_labels: bool,
}

impl BarChart {
    /// An empty bar chart with a title (800 × 480 pixels).
    ///
    /// ```
    /// let chart = conclab::chart::BarChart::new("Pool sizes");
    /// assert!(chart.svg().contains("Pool sizes"));
    /// ```
    pub fn new(title: impl Into<String>) -> BarChart {
        BarChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            categories: Vec::new(),
            series: Vec::new(),
            values: Vec::new(),
            size: (800, 480),
            value_labels: true,
        }
    }

    /// Names the x axis (the categories).
    ///
    /// ```
    /// let chart = conclab::chart::BarChart::new("t").x_label("pool size");
    /// assert!(chart.svg().contains("pool size"));
    /// ```
    pub fn x_label(mut self, label: impl Into<String>) -> BarChart {
        self.x_label = label.into();
        self
    }

    /// Names the y axis (the values, with their unit).
    ///
    /// ```
    /// let chart = conclab::chart::BarChart::new("t").y_label("seconds");
    /// assert!(chart.svg().contains("seconds"));
    /// ```
    pub fn y_label(mut self, label: impl Into<String>) -> BarChart {
        self.y_label = label.into();
        self
    }

    /// Sets the picture's size in pixels (at least 320 × 240).
    ///
    /// ```
    /// let chart = conclab::chart::BarChart::new("t").size(400, 300);
    /// assert!(chart.svg().contains("width=\"400\""));
    /// ```
    pub fn size(mut self, width: u32, height: u32) -> BarChart {
        self.size = (width.max(320), height.max(240));
        self
    }

    /// Turns the value printed above each bar on or off (on by default; labels that do
    /// not fit over their bar are left out anyway).
    ///
    /// ```
    /// let chart = conclab::chart::BarChart::new("t").bar("a", "s", 1.5).value_labels(false);
    /// assert!(!chart.svg().contains(">1.5"));
    /// ```
    pub fn value_labels(mut self, on: bool) -> BarChart {
        self.value_labels = on;
        self
    }

    /// Adds (or replaces) the bar of `series` in `category`, for chaining.
    ///
    /// ```
    /// use conclab::chart::BarChart;
    /// let chart = BarChart::new("GIL or no GIL")
    ///     .bar("1 thread", "with a GIL", 1.0)
    ///     .bar("1 thread", "without", 1.0)
    ///     .bar("4 threads", "with a GIL", 1.05)
    ///     .bar("4 threads", "without", 0.27);
    /// assert_eq!(chart.len(), 4);
    /// ```
    pub fn bar(
        mut self,
        category: impl ToString,
        series: impl ToString,
        value: impl ChartValue,
    ) -> BarChart {
        self.add_bar(category, series, value);
        self
    }

    /// Adds (or replaces) the bar of `series` in `category`, for loops.
    ///
    /// ```
    /// let mut chart = conclab::chart::BarChart::new("Pool sizes");
    /// for n in [2, 4, 8] {
    ///     chart.add_bar(n, "Pool::map", 1.0 / n as f64);
    /// }
    /// assert_eq!(chart.len(), 3);
    /// ```
    pub fn add_bar(
        &mut self,
        category: impl ToString,
        series: impl ToString,
        value: impl ChartValue,
    ) -> &mut BarChart {
        let c = index_of(&mut self.categories, category.to_string());
        let s = index_of(&mut self.series, series.to_string());
        let value = value.to_f64();
        match self
            .values
            .iter_mut()
            .find(|(vc, vs, _)| *vc == c && *vs == s)
        {
            Some(slot) => slot.2 = value,
            None => self.values.push((c, s, value)),
        }
        self
    }

    /// How many bars the chart has.
    ///
    /// ```
    /// assert_eq!(conclab::chart::BarChart::new("t").bar(1, "a", 2).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the chart has no bar yet.
    ///
    /// ```
    /// assert!(conclab::chart::BarChart::new("t").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The chart as an SVG document.
    ///
    /// Drawing into memory does not fail in practice; if plotters ever refuses, the SVG
    /// shows its reason as text (and [`BarChart::save_svg`] returns it as an error).
    ///
    /// ```
    /// let svg = conclab::chart::BarChart::new("t").bar("a", "s", 1).svg();
    /// assert!(svg.starts_with("<svg"));
    /// ```
    pub fn svg(&self) -> String {
        display::svg(self)
    }

    /// Writes the SVG to `path`.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("bars-{}.svg", std::process::id()));
    /// conclab::chart::BarChart::new("t").bar("a", "s", 1).save_svg(&path).unwrap();
    /// assert!(std::fs::read_to_string(&path).unwrap().contains("<svg"));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<(), ChartError> {
        display::save_svg(self, path.as_ref())
    }

    /// Shows the chart in a notebook cell (evcxr calls this for a cell's last value), with
    /// a text summary as its `text/plain`.
    ///
    /// ```
    /// conclab::chart::BarChart::new("t").bar("a", "s", 1).evcxr_display();
    /// ```
    pub fn evcxr_display(&self) {
        display::show(self);
    }

    fn color(&self, series: usize) -> RGBColor {
        PALETTE[series % PALETTE.len()]
    }

    fn draw(&self, root: &Area) -> Result<(), String> {
        let (width, _) = root.dim_in_pixel();
        let body = draw_title(root, &self.title)?;
        // A single unnamed-looking series needs no legend: the title says what it is.
        let entries: Vec<LegendEntry> = if self.series.len() > 1 {
            self.series
                .iter()
                .enumerate()
                .map(|(i, s)| LegendEntry {
                    label: s.clone(),
                    color: self.color(i),
                })
                .collect()
        } else {
            Vec::new()
        };
        let legend_h = legend_height(&entries, width - 80);
        let (legend_area, plot_area) = body.split_vertically(legend_h + 6);
        draw_legend(&legend_area.margin(0, 0, 70, 10), &entries)?;

        let n_cat = self.categories.len().max(1);
        let (y0, y1) = y_range(self.values.iter().map(|v| v.2), 0.12);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin_left(10)
            .margin_right(20)
            .margin_bottom(8)
            .x_label_area_size(if self.x_label.is_empty() { 30 } else { 52 })
            .y_label_area_size(if self.y_label.is_empty() { 52 } else { 72 })
            .build_cartesian_2d(0.0..n_cat as f64, y0..y1)
            .map_err(|e| e.to_string())?;
        let y_fmt = |v: &f64| fmt_number(*v);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(8)
            .y_label_formatter(&y_fmt)
            .max_light_lines(0)
            .bold_line_style(RGBColor(0xE4, 0xE4, 0xE4))
            .axis_style(MUTED)
            .label_style(text_style(13.0, &INK, Pos::new(HPos::Right, VPos::Center)))
            .axis_desc_style(text_style(14.0, &INK, Pos::new(HPos::Center, VPos::Top)))
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .draw()
            .map_err(|e| e.to_string())?;

        let n_series = self.series.len().max(1);
        let group = 0.76;
        let bar_w = group / n_series as f64;
        let plot = chart.plotting_area();
        let (plot_w, _) = plot.dim_in_pixel();
        let px_per_unit = f64::from(plot_w) / n_cat as f64;
        let bar_px = bar_w * px_per_unit;
        for &(c, s, v) in &self.values {
            let x0 = c as f64 + (1.0 - group) / 2.0 + s as f64 * bar_w;
            let x1 = x0 + bar_w;
            let inset = (bar_w * 0.06).min(2.0 / px_per_unit);
            if v.is_finite() {
                plot.draw(&Rectangle::new(
                    [(x0 + inset, 0.0_f64.max(y0)), (x1 - inset, v)],
                    self.color(s).filled(),
                ))
                .map_err(|e| e.to_string())?;
            }
            let label = fmt_value(v);
            if self.value_labels && text_width(&label, 12.0) <= bar_px + 6.0 {
                let top = if v.is_finite() { v.max(0.0) } else { 0.0 };
                let (px, py) = chart.backend_coord(&((x0 + x1) / 2.0, top));
                root.draw_text(
                    &label,
                    &text_style(12.0, &INK, Pos::new(HPos::Center, VPos::Bottom)),
                    (px, py - 3),
                )
                .map_err(|e| e.to_string())?;
            }
        }

        // Category names sit under the middle of their group, which a numeric axis's own
        // ticks would not do.
        let name_style = text_style(13.0, &INK, Pos::new(HPos::Center, VPos::Top));
        for (i, name) in self.categories.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, y0));
            let name = fit_text(name, px_per_unit - 6.0, 13.0);
            root.draw_text(&name, &name_style, (px, py + 6))
                .map_err(|e| e.to_string())?;
        }
        if self.values.is_empty() {
            let (px, py) = chart.backend_coord(&(n_cat as f64 / 2.0, (y0 + y1) / 2.0));
            root.draw_text(
                "no bars yet: add some with .bar(category, series, value)",
                &text_style(14.0, &MUTED, Pos::new(HPos::Center, VPos::Center)),
                (px, py),
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Line chart
// ---------------------------------------------------------------------------------------

/// A line chart: one or more series of (x, y) points, each drawn as a line with a dot on
/// every point, in the order the points were given.
///
/// The y axis starts at 0 (unless a value is negative) so that heights compare honestly;
/// points that are not finite are left out.
///
/// ```
/// use conclab::chart::LineChart;
///
/// let chart = LineChart::new("Time against pool size")
///     .x_label("pool size")
///     .y_label("ms")
///     .series("Pool::map", [(2, 24.0), (4, 17.0), (8, 22.0)])
///     .series("threads", [(2, 3.1), (4, 2.2), (8, 2.4)]);
/// let svg = chart.svg();
/// assert!(svg.contains("Pool::map") && svg.contains("threads"));
/// ```
#[derive(Debug, Clone)]
pub struct LineChart {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<(String, Vec<(f64, f64)>)>,
    size: (u32, u32),
}

impl LineChart {
    /// An empty line chart with a title (800 × 480 pixels).
    ///
    /// ```
    /// let chart = conclab::chart::LineChart::new("Speed-up");
    /// assert!(chart.svg().contains("Speed-up"));
    /// ```
    pub fn new(title: impl Into<String>) -> LineChart {
        LineChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            size: (800, 480),
        }
    }

    /// Names the x axis.
    ///
    /// ```
    /// let chart = conclab::chart::LineChart::new("t").x_label("threads");
    /// assert!(chart.svg().contains("threads"));
    /// ```
    pub fn x_label(mut self, label: impl Into<String>) -> LineChart {
        self.x_label = label.into();
        self
    }

    /// Names the y axis (with its unit).
    ///
    /// ```
    /// let chart = conclab::chart::LineChart::new("t").y_label("seconds");
    /// assert!(chart.svg().contains("seconds"));
    /// ```
    pub fn y_label(mut self, label: impl Into<String>) -> LineChart {
        self.y_label = label.into();
        self
    }

    /// Sets the picture's size in pixels (at least 320 × 240).
    ///
    /// ```
    /// let chart = conclab::chart::LineChart::new("t").size(640, 360);
    /// assert!(chart.svg().contains("height=\"360\""));
    /// ```
    pub fn size(mut self, width: u32, height: u32) -> LineChart {
        self.size = (width.max(320), height.max(240));
        self
    }

    /// Adds points to the series `name` (created on first use), for chaining.
    ///
    /// ```
    /// let chart = conclab::chart::LineChart::new("t").series("a", [(1, 1.0), (2, 4.0)]);
    /// assert_eq!(chart.len(), 2);
    /// ```
    pub fn series<X, Y, I>(mut self, name: impl ToString, points: I) -> LineChart
    where
        X: ChartValue,
        Y: ChartValue,
        I: IntoIterator<Item = (X, Y)>,
    {
        for (x, y) in points {
            self.add_point(name.to_string(), x, y);
        }
        self
    }

    /// Adds one point to the series `name` (created on first use), for loops.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut chart = conclab::chart::LineChart::new("t").y_label("seconds");
    /// for n in 1..=4 {
    ///     chart.add_point("sleep", n, Duration::from_millis(10 * n));
    /// }
    /// assert_eq!(chart.len(), 4);
    /// ```
    pub fn add_point(
        &mut self,
        name: impl ToString,
        x: impl ChartValue,
        y: impl ChartValue,
    ) -> &mut LineChart {
        let name = name.to_string();
        let point = (x.to_f64(), y.to_f64());
        match self.series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push(point),
            None => self.series.push((name, vec![point])),
        }
        self
    }

    /// How many points the chart has, over all series.
    ///
    /// ```
    /// assert_eq!(conclab::chart::LineChart::new("t").len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.series.iter().map(|(_, p)| p.len()).sum()
    }

    /// Whether the chart has no point yet.
    ///
    /// ```
    /// assert!(conclab::chart::LineChart::new("t").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chart as an SVG document (see [`BarChart::svg`] about failures).
    ///
    /// ```
    /// let svg = conclab::chart::LineChart::new("t").series("a", [(0, 0), (1, 1)]).svg();
    /// assert!(svg.contains("<polyline"));
    /// ```
    pub fn svg(&self) -> String {
        display::svg(self)
    }

    /// Writes the SVG to `path`.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("lines-{}.svg", std::process::id()));
    /// conclab::chart::LineChart::new("t").save_svg(&path).unwrap();
    /// assert!(std::fs::read_to_string(&path).unwrap().contains("<svg"));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<(), ChartError> {
        display::save_svg(self, path.as_ref())
    }

    /// Shows the chart in a notebook cell (evcxr calls this for a cell's last value), with
    /// a text summary as its `text/plain`.
    ///
    /// ```
    /// conclab::chart::LineChart::new("t").series("a", [(1, 2)]).evcxr_display();
    /// ```
    pub fn evcxr_display(&self) {
        display::show(self);
    }

    fn draw(&self, root: &Area) -> Result<(), String> {
        let (width, _) = root.dim_in_pixel();
        let body = draw_title(root, &self.title)?;
        let entries: Vec<LegendEntry> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, (name, _))| LegendEntry {
                label: name.clone(),
                color: PALETTE[i % PALETTE.len()],
            })
            .collect();
        let legend_h = legend_height(&entries, width - 80);
        let (legend_area, plot_area) = body.split_vertically(legend_h + 6);
        draw_legend(&legend_area.margin(0, 0, 70, 10), &entries)?;

        let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let all = || {
            self.series
                .iter()
                .flat_map(|(_, p)| p.iter())
                .filter(finite)
        };
        let (mut x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            (x0, x1) = (x0 - 1.0, x1 + 1.0);
        }
        let pad = (x1 - x0) * 0.04;
        let (y0, y1) = y_range(all().map(|p| p.1), 0.08);

        let mut chart = ChartBuilder::on(&plot_area)
            .margin_left(10)
            .margin_right(24)
            .margin_bottom(8)
            .x_label_area_size(if self.x_label.is_empty() { 30 } else { 52 })
            .y_label_area_size(if self.y_label.is_empty() { 52 } else { 72 })
            .build_cartesian_2d((x0 - pad)..(x1 + pad), y0..y1)
            .map_err(|e| e.to_string())?;
        let fmt = |v: &f64| fmt_number(*v);
        chart
            .configure_mesh()
            .x_labels(10)
            .y_labels(8)
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .max_light_lines(0)
            .bold_line_style(RGBColor(0xE4, 0xE4, 0xE4))
            .axis_style(MUTED)
            .label_style(text_style(13.0, &INK, Pos::new(HPos::Center, VPos::Top)))
            .axis_desc_style(text_style(14.0, &INK, Pos::new(HPos::Center, VPos::Top)))
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .draw()
            .map_err(|e| e.to_string())?;

        for (i, (_, points)) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = points.iter().filter(finite).copied().collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(3),
                ))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| Circle::new(p, 4, color.filled().stroke_width(1))),
                )
                .map_err(|e| e.to_string())?;
        }
        if self.is_empty() {
            let (px, py) = chart.backend_coord(&((x0 + x1) / 2.0, (y0 + y1) / 2.0));
            root.draw_text(
                "no points yet: add some with .series(name, [(x, y), ...])",
                &text_style(14.0, &MUTED, Pos::new(HPos::Center, VPos::Center)),
                (px, py),
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl display::Picture for BarChart {
    fn render(&self) -> Result<String, String> {
        render_svg(self.size, |root| self.draw(root))
    }

    fn text(&self) -> String {
        let mut text = format!("{}: bar chart, {} bars", self.title, self.values.len());
        for &(category, series, value) in &self.values {
            let _ = write!(
                text,
                "\n  {} ({}): {value}",
                self.categories[category], self.series[series]
            );
        }
        text
    }
}

impl display::Picture for LineChart {
    fn render(&self) -> Result<String, String> {
        render_svg(self.size, |root| self.draw(root))
    }

    fn text(&self) -> String {
        let mut text = format!("{}: line chart, {} series", self.title, self.series.len());
        for (name, points) in &self.series {
            let _ = write!(text, "\n  {name}: {} points", points.len());
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_number(0.0), "0");
        assert_eq!(fmt_number(2.0), "2");
        assert_eq!(fmt_number(0.024), "0.024");
        assert_eq!(fmt_number(0.01712), "0.0171");
        assert_eq!(fmt_number(17.26), "17.3");
        assert_eq!(fmt_number(1234.6), "1235");
        assert_eq!(fmt_number(f64::NAN), "n/a");
        assert_eq!(fmt_value(2.003), "2.00");
        assert_eq!(fmt_value(0.0241), "0.0241");
    }

    #[test]
    fn long_text_is_cut_to_fit() {
        let cut = fit_text("a very long row name indeed", 60.0, 10.0);
        assert!(cut.ends_with('…'));
        assert!(text_width(&cut, 10.0) <= 60.0);
        assert_eq!(fit_text("short", 600.0, 10.0), "short");
        let middle = fit_text_middle("worker-with-a-long-name-17", 90.0, 10.0);
        assert!(
            middle.starts_with("work") && middle.ends_with("-17"),
            "{middle}"
        );
        assert!(text_width(&middle, 10.0) <= 90.0);
    }

    #[test]
    fn legend_wraps_at_the_width() {
        let entries: Vec<LegendEntry> = (0..12)
            .map(|i| LegendEntry {
                label: format!("series number {i}"),
                color: PALETTE[i % 10],
            })
            .collect();
        let (places, height) = legend_layout(&entries, 500);
        assert!(height > LEGEND_ROW);
        assert!(places.iter().all(|&(x, _)| x < 500));
    }
}
