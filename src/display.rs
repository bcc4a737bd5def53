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
//! There is no Python counterpart: Jupyter's IPython kernel calls `_repr_svg_()` and
//! `_repr_html_()` instead. [`crate::timeline::Timeline`], [`crate::chart::BarChart`],
//! [`crate::chart::LineChart`] and [`crate::table::Table`] all print through here.

use std::io::{self, Write};

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
    // One write_all of the whole block: the caller holds the lock for stdout, so no other
    // Rust thread's output can land between the markers.
    out.write_all(block.as_bytes())?;
    out.flush()
}

/// Prints one rich-output block on standard output, where evcxr picks it up.
///
/// This is what every `evcxr_display` of this crate calls. Outside a notebook the block
/// is printed as text. A failure to write standard output is reported on standard error
/// instead of panicking, since a cell should not fail because its picture could not be
/// shown.
///
/// ```
/// conclab::display::print_block("text/html", "<i>shown as HTML in a notebook</i>");
/// ```
pub fn print_block(mime: &str, content: &str) {
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if let Err(error) = write_block(&mut lock, mime, content) {
        eprintln!("conclab: could not print the {mime} output: {error}");
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
    fn an_end_marker_inside_the_content_cannot_close_the_block() {
        let mut out = Vec::new();
        write_block(&mut out, HTML_MIME, "a\nEVCXR_END_CONTENT\nb").unwrap();
        let text = String::from_utf8(out).unwrap();
        let ends = text.lines().filter(|l| *l == "EVCXR_END_CONTENT").count();
        assert_eq!(ends, 1);
        assert!(text.ends_with("b\nEVCXR_END_CONTENT\n"));
    }
}
