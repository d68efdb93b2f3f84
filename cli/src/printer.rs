//! The one printer: data a pipe wants on stdout (one JSON object per line with
//! `--output json`), everything for people on stderr. A closed pipe ends quietly. Its tables
//! are laid out here too: columns aligned, a cell too wide cut.

use std::io::{IsTerminal, Write};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Clone, Debug)]
pub struct Printer {
    pub output: Output,
    /// stderr is a terminal: progress may redraw lines.
    pub stderr_tty: bool,
    pub color: bool,
}

/// Raised when stdout is closed (`foundry ... | head`): the command stops and exits 0.
#[derive(Debug)]
pub struct BrokenPipe;

/// Colours are for a person at a terminal who has not asked for none (`NO_COLOR`).
pub fn stderr_wants_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` without terminal control sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL` or
/// `ESC \`, other escapes) and without other control characters but tab: what a command
/// printed cannot retitle the terminal, clear it or move the cursor.
pub fn sanitized(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    // Parameters and intermediates, up to the final byte.
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    // A string, to BEL or the string terminator `ESC \`.
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\u{9b}' => {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

impl Printer {
    pub fn new(output: Output) -> Self {
        Printer {
            output,
            stderr_tty: std::io::stderr().is_terminal(),
            color: stderr_wants_color(),
        }
    }

    pub fn json(&self) -> bool {
        self.output == Output::Json
    }

    fn out(&self, line: &str) -> Result<(), BrokenPipe> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .map_err(|_| BrokenPipe)
    }

    /// One JSON object as one line of stdout.
    pub fn data<T: Serialize>(&self, value: &T) -> Result<(), BrokenPipe> {
        let line =
            serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        self.out(&line)
    }

    /// A line of human output on stdout (tables, results).
    pub fn line(&self, line: &str) -> Result<(), BrokenPipe> {
        self.out(line)
    }

    /// Each item as one JSON line, until a reader stops listening.
    pub fn data_each<T: Serialize>(&self, items: &[T]) -> Result<(), BrokenPipe> {
        items.iter().try_for_each(|item| self.data(item))
    }

    /// A table with aligned columns on stdout, until a reader stops listening.
    pub fn table(&self, headers: &[&str], rows: &[Vec<String>]) -> Result<(), BrokenPipe> {
        table(headers, rows)
            .iter()
            .try_for_each(|line| self.out(line))
    }

    /// A message for people, on stderr.
    pub fn note(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    pub fn paint(&self, text: &str, ansi: &str) -> String {
        if self.color {
            format!("\x1b[{ansi}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// The widest a table cell is shown; JSON output keeps the whole value.
pub const MAX_CELL: usize = 80;

/// The longest a run's error is shown in its header (`--output json` has all of it).
pub const MAX_LINE: usize = 400;

/// `text` cut to at most `max` characters, on a character boundary, the cut marked with an
/// ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text[at..].chars().nth(1).is_some() => format!("{}…", &text[..at]),
        _ => text.to_string(),
    }
}

/// Left-aligned columns separated by two spaces; a cell wider than [`MAX_CELL`] is cut.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| truncate(c, MAX_CELL)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let fmt = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    std::iter::once(fmt(header.iter().map(|h| h.to_string()).collect()))
        .chain(rows.iter().map(|r| fmt(r.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_stripped_and_text_kept() {
        assert_eq!(sanitized("\x1b]0;pwned\x07title kept"), "title kept");
        assert_eq!(
            sanitized("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"),
            "link"
        );
        assert_eq!(sanitized("a\x1b[2Jb\x1b[1;31mc\x1b[0m"), "abc");
        assert_eq!(sanitized("\u{9b}2Jx\x08\ry\x7f\tz"), "xy\tz");
        assert_eq!(sanitized("ünïcode ✓ stays"), "ünïcode ✓ stays");
        // An unterminated sequence swallows the rest, never panics.
        assert_eq!(sanitized("ok\x1b]0;no end"), "ok");
        assert_eq!(sanitized("ok\x1b"), "ok");
    }

    #[test]
    fn long_cells_are_cut_on_character_boundaries() {
        assert_eq!(truncate("short", 80), "short");
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        let wide = "é".repeat(70_000);
        let cut = truncate(&wide, MAX_CELL);
        assert_eq!(cut.chars().count(), MAX_CELL);
        assert!(cut.ends_with('…'));
        let lines = table(&["STEP", "STATE"], &[vec![wide, "done".into()]]);
        assert!(
            lines.iter().all(|l| l.chars().count() <= MAX_CELL + 2 + 5),
            "{lines:?}"
        );
    }
}
