//! Errors of bake evaluation: HCL-style diagnostics that point into a file, rendered the way
//! buildx renders them (the source lines around the error, then `file:line,col-col: summary;
//! detail`).

use std::fmt;

/// A byte range in one of the bake files (index into the file list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub file: u32,
    pub start: usize,
    pub end: usize,
}

/// One evaluation problem, optionally located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub summary: String,
    pub detail: String,
    pub span: Option<Span>,
}

impl Diag {
    pub fn new(summary: impl Into<String>, detail: impl Into<String>, span: Option<Span>) -> Diag {
        Diag {
            summary: summary.into(),
            detail: detail.into(),
            span,
        }
    }

    /// A problem without a location (buildx reports these as a bare message).
    pub fn msg(detail: impl Into<String>) -> Diag {
        Diag::new("", detail, None)
    }

    /// Gives a location to a problem that has none yet.
    pub fn at(mut self, span: Span) -> Diag {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }
}

/// An error with everything needed to show it: the diagnostic and the file it points into.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Error {
    pub diag: Diag,
    /// `(file name, line, start column, end line, end column)` when located.
    pub location: Option<Box<Location>>,
    /// The source lines around the error, as buildx prints them before the message.
    pub excerpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub end_line: usize,
    pub end_col: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.diag;
        match &self.location {
            Some(l) => {
                let cols = if l.end_line == l.line {
                    format!("{}-{}", l.col, l.end_col)
                } else {
                    format!("{}-{},{}", l.col, l.end_line, l.end_col)
                };
                write!(
                    f,
                    "{}:{},{}: {}; {}",
                    l.file, l.line, cols, d.summary, d.detail
                )
            }
            None if d.summary.is_empty() => f.write_str(&d.detail),
            None => write!(f, "{}; {}", d.summary, d.detail),
        }
    }
}

/// The bake files' names and contents, to turn spans into lines and columns.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: Vec<(String, String)>,
}

impl Sources {
    pub fn error(&self, diag: Diag) -> Error {
        let Some(span) = diag.span else {
            return Error {
                diag,
                location: None,
                excerpt: None,
            };
        };
        let Some((name, text)) = self.files.get(span.file as usize) else {
            return Error {
                diag,
                location: None,
                excerpt: None,
            };
        };
        let (line, col) = line_col(text, span.start);
        let (end_line, end_col) = line_col(text, span.end.max(span.start));
        let excerpt = excerpt(name, text, line, end_line);
        Error {
            diag,
            location: Some(Box::new(Location {
                file: name.clone(),
                line,
                col,
                end_line,
                end_col,
            })),
            excerpt: Some(excerpt),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Source lines around `line..=end_line` with `>>>` on the error's lines, between rules.
fn excerpt(name: &str, text: &str, line: usize, end_line: usize) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let first = line.saturating_sub(2).max(1);
    let last = (end_line + 2).min(lines.len());
    let mut out = format!("{name}:{line}\n--------------------\n");
    for n in first..=last {
        let marker = if (line..=end_line).contains(&n) {
            ">>>"
        } else {
            "   "
        };
        out.push_str(&format!("{n:>4} | {marker} {}\n", lines[n - 1]));
    }
    out.push_str("--------------------\n");
    out
}
