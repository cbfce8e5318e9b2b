//! What to draw for the input line: the prompt and the part of the line that fits.
//!
//! Everything is measured in display columns (`unicode-width`, one grapheme cluster at a
//! time), and the drawn text stays below the terminal's width: writing into the last
//! column would make some terminals wrap. A line longer than that scrolls horizontally so
//! that the cursor is always on screen, with a few columns of context after it when there
//! is more text; a wide character cut by either edge is not drawn (a blank stands for its
//! part inside the left edge). The prompt is kept whole while it leaves the line 16
//! columns (half the width, on a narrow terminal), and cut to that when it is wider.
//!
//! Nothing that could drive the terminal reaches the text: a line break shows as `⏎`,
//! other controls and invisible characters as in [`crate::sanitize`] (`␛`, `\u{200b}`).

use std::borrow::Cow;

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::sanitize;

/// Columns kept visible after the cursor, when the line goes on, before it scrolls.
const CONTEXT: usize = 8;

/// What a line break in the line shows as.
const LINE_BREAK: &str = "⏎";

/// Marks a prompt cut to fit.
const ELLIPSIS: &str = "…";

/// The input line as it should be drawn, from the first column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The prompt and the visible part of the line: terminal-safe, narrower than the width
    /// it was laid out for.
    pub text: String,
    /// The display column (0-based) to put the cursor in.
    pub cursor_col: usize,
    /// `text[..prompt_bytes]` is the prompt (cut to fit), for drawing it in a style of its
    /// own.
    pub prompt_bytes: usize,
}

/// One grapheme cluster as drawn: its safe text and how many columns it takes.
struct Cell<'a> {
    text: Cow<'a, str>,
    width: usize,
}

/// The grapheme clusters of `text` as cells, each with its byte index in `text`.
fn cells(text: &str) -> impl Iterator<Item = (usize, Cell<'_>)> {
    text.grapheme_indices(true).map(|(i, g)| (i, cell(g)))
}

fn cell(grapheme: &str) -> Cell<'_> {
    if grapheme == "\n" {
        return Cell {
            text: Cow::Borrowed(LINE_BREAK),
            width: 1,
        };
    }
    let hidden_tags = grapheme
        .chars()
        .any(|c| ('\u{e0000}'..='\u{e007f}').contains(&c))
        && !grapheme.starts_with('\u{1f3f4}'); // a subdivision flag is made of them
    let width = grapheme.width();
    if width > 0 && !hidden_tags && !grapheme.chars().any(sanitize::needs_escape) {
        return Cell {
            text: Cow::Borrowed(grapheme),
            width,
        };
    }
    // Controls, and characters that would take no room of their own (a zero-width space,
    // a combining mark with nothing to combine with): shown as escapes.
    let mut text = String::new();
    for c in grapheme.chars() {
        if sanitize::needs_escape(c) {
            text.push_str(&sanitize::for_terminal(c.encode_utf8(&mut [0; 4])));
        } else if c.width().unwrap_or(0) == 0 || ('\u{e0000}'..='\u{e007f}').contains(&c) {
            text.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            text.push(c);
        }
    }
    let width = text.width().max(1);
    Cell {
        text: Cow::Owned(text),
        width,
    }
}

/// Lays out `prompt` and `line`, with the cursor at byte `cursor` of `line`, for a
/// terminal `width` columns wide.
pub fn render(prompt: &str, line: &str, cursor: usize, width: usize) -> View {
    let mut view = View {
        text: String::new(),
        cursor_col: 0,
        prompt_bytes: 0,
    };
    // The last column is never written.
    let Some(room) = width.checked_sub(1).filter(|&room| room > 0) else {
        return view;
    };

    let prompt_width = push_prompt(&mut view.text, prompt, room);
    view.prompt_bytes = view.text.len();
    let cols = room - prompt_width; // at least 1: the prompt leaves the line some

    let line_cells: Vec<(usize, Cell)> = cells(line).collect();
    let total: usize = line_cells.iter().map(|(_, c)| c.width).sum();
    let cursor_x: usize = line_cells
        .iter()
        .take_while(|(i, _)| *i < cursor)
        .map(|(_, c)| c.width)
        .sum();
    let context = CONTEXT.min((cols - 1) / 3).min(total - cursor_x);
    // The first column of the line that is shown: as far left as keeps the cursor and
    // its context in view.
    let start = (cursor_x + 1 + context).saturating_sub(cols);
    let end = start + cols;

    let mut x = 0;
    for (_, cell) in &line_cells {
        let next = x + cell.width;
        if next > end {
            break;
        }
        if x >= start {
            view.text.push_str(&cell.text);
        } else if next > start {
            view.text.extend(std::iter::repeat_n(' ', next - start));
        }
        x = next;
    }
    view.cursor_col = prompt_width + cursor_x - start;
    view
}

/// Columns the line keeps beside a long prompt (a menu question): as many as half the
/// room on a narrow terminal.
const LINE_KEEPS: usize = 16;

/// Writes the prompt into `out`, cut (ending in `…`) if it leaves the line fewer than
/// [`LINE_KEEPS`] columns (half the room, on a narrow terminal); returns its width.
fn push_prompt(out: &mut String, prompt: &str, room: usize) -> usize {
    let prompt_cells: Vec<Cell> = cells(prompt).map(|(_, c)| c).collect();
    let full: usize = prompt_cells.iter().map(|c| c.width).sum();
    let most = room - LINE_KEEPS.min(room / 2).max(1);
    let (budget, ellipsis) = if full <= most {
        (full, "")
    } else if most > ELLIPSIS.width() {
        (most - ELLIPSIS.width(), ELLIPSIS)
    } else {
        (most, "")
    };
    let mut used = 0;
    for cell in &prompt_cells {
        if used + cell.width > budget {
            break;
        }
        out.push_str(&cell.text);
        used += cell.width;
    }
    out.push_str(ellipsis);
    used + ellipsis.width()
}

#[cfg(test)]
mod tests;
