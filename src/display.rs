//! Rich output in a Jupyter notebook run by evcxr: the one piece that speaks its protocol.
//!
//! evcxr shows a value as a picture or a table when the value's type has a method
//! `fn evcxr_display(&self)` that prints a block of this form on standard output:
//!
//! ```text
//! EVCXR_BEGIN_CONTENT image/svg+xml
//! <svg ...>...</svg>
//! EVCXR_END_CONTENT
//! ```
//!
//! evcxr reads the child's output line by line: a line containing
//! `EVCXR_BEGIN_CONTENT <mime>` opens a block, every following line up to a line that is
//! exactly `EVCXR_END_CONTENT` is its content, and the block becomes that MIME type's entry
//! in the cell's single `execute_result`. Two consequences shape this crate:
//!
//! * one picture per cell: a second SVG printed in the same cell replaces the first, and a
//!   frontend shows only the richest MIME type of the bundle (an HTML table and an SVG in
//!   one cell show as the table alone), so a notebook puts each picture in its own cell;
//! * the block is written in one locked write and ends with a newline, so that a thread
//!   printing at the same moment cannot split it and the end marker is never glued onto
//!   the kernel's own end-of-cell line.
//!
//! Every rich block goes out with a `text/plain` block beside it: a Jupyter result without
//! `text/plain` makes tools such as nbgrader fail (`KeyError: 'text/plain'`), and a
//! frontend that cannot show the picture shows the text.
//!
//! There is no Python counterpart: Jupyter's IPython kernel calls `_repr_svg_()` and
//! `_repr_html_()` instead. [`crate::timeline::Timeline`], [`crate::chart::BarChart`],
//! [`crate::chart::LineChart`] and [`crate::table::Table`] all print through here, and the
//! pictures among them also draw, fall back and save through here ([`PictureError`]).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// The MIME type of an SVG picture, as evcxr and Jupyter name it.
///
/// ```
/// assert_eq!(conclab::display::SVG_MIME, "image/svg+xml");
/// ```
pub const SVG_MIME: &str = "image/svg+xml";

/// The MIME type of an HTML fragment, as evcxr and Jupyter name it.
///
/// ```
/// assert_eq!(conclab::display::HTML_MIME, "text/html");
/// ```
pub const HTML_MIME: &str = "text/html";

/// The MIME type of plain text, which every rich output also carries.
///
/// ```
/// assert_eq!(conclab::display::TEXT_MIME, "text/plain");
/// ```
pub const TEXT_MIME: &str = "text/plain";

/// What can go wrong when drawing or saving a picture (a timeline or a chart).
///
/// ```
/// use conclab::display::PictureError;
/// let error = PictureError::Draw("the labels do not fit".into());
/// assert!(error.to_string().contains("do not fit"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    /// plotters refused to draw (for example a picture too small for its labels).
    #[error("could not draw the picture: {0}; make it larger with .size(width, height)")]
    Draw(String),
    /// The SVG file could not be written.
    #[error("could not write the picture to {path}: {source}; check that the folder exists and is writable")]
    Io {
        /// The file that could not be written.
        path: String,
        /// What the operating system said.
        source: io::Error,
    },
}

/// A picture this crate draws: its SVG (or why it could not be drawn) and its text.
pub(crate) trait Picture {
    /// The SVG document, or plotters' reason for refusing.
    fn render(&self) -> Result<String, String>;
    /// What the picture shows, as plain text.
    fn text(&self) -> String;
}

/// The picture as SVG; when drawing fails, an SVG that shows the reason instead of
/// nothing.
pub(crate) fn svg(picture: &impl Picture) -> String {
    picture
        .render()
        .unwrap_or_else(|e| error_svg(&PictureError::Draw(e).to_string()))
}

/// Writes the picture's SVG to `path`.
pub(crate) fn save_svg(picture: &impl Picture, path: &Path) -> Result<(), PictureError> {
    let svg = picture.render().map_err(PictureError::Draw)?;
    std::fs::write(path, svg).map_err(|source| PictureError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Shows the picture in a notebook cell: its text and its SVG.
pub(crate) fn show(picture: &impl Picture) {
    print_blocks(&[(TEXT_MIME, &picture.text()), (SVG_MIME, &svg(picture))]);
}

/// The SVG drawn when drawing failed. It is hand-written because plotters is what failed.
fn error_svg(message: &str) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg width=\"640\" height=\"60\" viewBox=\"0 0 640 60\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n<text x=\"10\" y=\"34\" \
         font-family=\"sans-serif\" font-size=\"14\" fill=\"#B00020\">{}</text>\n</svg>\n",
        escape(message)
    );
    svg
}

/// `text` with the characters that mean markup in HTML and SVG escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes one rich-output block for evcxr to `out`.
///
/// The content's line breaks are kept (evcxr joins the lines back with `\n`); a content
/// line that is exactly `EVCXR_END_CONTENT` would end the block early, so such a line is
/// written with a trailing space, which no SVG or HTML reader minds.
///
/// ```
/// let mut out = Vec::new();
/// conclab::display::write_block(&mut out, "text/html", "<b>hi</b>").unwrap();
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     "EVCXR_BEGIN_CONTENT text/html\n<b>hi</b>\nEVCXR_END_CONTENT\n"
/// );
/// ```
pub fn write_block<W: Write>(out: &mut W, mime: &str, content: &str) -> io::Result<()> {
    let mut block = String::with_capacity(content.len() + mime.len() + 48);
    push_block(&mut block, mime, content);
    // One write_all of the whole block: the caller holds the lock for stdout, so no other
    // Rust thread's output can land between the markers.
    out.write_all(block.as_bytes())?;
    out.flush()
}

fn push_block(block: &mut String, mime: &str, content: &str) {
    block.push_str("EVCXR_BEGIN_CONTENT ");
    block.push_str(mime);
    block.push('\n');
    for (i, line) in content.trim_end_matches('\n').split('\n').enumerate() {
        if i > 0 {
            block.push('\n');
        }
        block.push_str(line);
        if line == "EVCXR_END_CONTENT" {
            block.push(' ');
        }
    }
    block.push_str("\nEVCXR_END_CONTENT\n");
}

/// Prints one rich-output block on standard output, where evcxr picks it up, with a
/// `text/plain` block beside it (the content itself, unless the block is plain text).
///
/// Outside a notebook the blocks are printed as text. A failure to write standard output
/// is reported on standard error instead of panicking, since a cell should not fail
/// because its picture could not be shown. The types of this crate print through
/// [`print_blocks`], with a text of their own.
///
/// ```
/// conclab::display::print_block("text/html", "<i>shown as HTML in a notebook</i>");
/// ```
pub fn print_block(mime: &str, content: &str) {
    if mime == TEXT_MIME {
        print_blocks(&[(TEXT_MIME, content)]);
    } else {
        print_blocks(&[(TEXT_MIME, content), (mime, content)]);
    }
}

/// Prints several rich-output blocks (one per MIME type) on standard output in one
/// write; the cell's result carries each of them. Pass a `text/plain` block too.
///
/// ```
/// conclab::display::print_blocks(&[("text/plain", "a table"), ("text/html", "<table></table>")]);
/// ```
pub fn print_blocks(blocks: &[(&str, &str)]) {
    let mut all = String::new();
    for (mime, content) in blocks {
        push_block(&mut all, mime, content);
    }
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if let Err(error) = lock.write_all(all.as_bytes()).and_then(|()| lock.flush()) {
        eprintln!("conclab: could not print the rich output: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_keeps_lines_and_ends_with_newline() {
        let mut out = Vec::new();
        write_block(&mut out, SVG_MIME, "<svg>\n<rect/>\n</svg>\n").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "EVCXR_BEGIN_CONTENT image/svg+xml\n<svg>\n<rect/>\n</svg>\nEVCXR_END_CONTENT\n"
        );
    }

    #[test]
    fn a_failed_drawing_shows_its_reason_escaped() {
        struct Broken;
        impl Picture for Broken {
            fn render(&self) -> Result<String, String> {
                Err("<too small>".into())
            }
            fn text(&self) -> String {
                "broken".into()
            }
        }
        let svg = svg(&Broken);
        assert!(svg.starts_with("<svg") && svg.contains("&lt;too small&gt;"));
        let path = std::env::temp_dir().join("conclab-never-written.svg");
        assert!(matches!(
            save_svg(&Broken, &path),
            Err(PictureError::Draw(_))
        ));
    }

    #[test]
    fn an_end_marker_inside_the_content_cannot_close_the_block() {
        let mut out = Vec::new();
        write_block(&mut out, HTML_MIME, "a\nEVCXR_END_CONTENT\nb").unwrap();
        let text = String::from_utf8(out).unwrap();
        let ends = text.lines().filter(|l| *l == "EVCXR_END_CONTENT").count();
        assert_eq!(ends, 1);
        assert!(text.ends_with("b\nEVCXR_END_CONTENT\n"));
    }
}
