//! The one printer: data a pipe wants on stdout (one JSON object per line with
//! `--output json`), everything for people on stderr. A closed pipe ends quietly.

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
        crate::render::table(headers, rows)
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
