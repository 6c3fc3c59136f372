//! Diagnostics: every problem found in a document, with where it is and how to fix it.

use std::fmt;

use crate::yaml::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub pos: Pos,
    /// Dotted field path such as `spec.file.rules[2].path`.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// `FILE:LINE:COL: error: MESSAGE`, then the hint on its own line.
    pub fn render(&self, file: &str) -> String {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{file}:{}:{}: {level}: ", self.pos.line, self.pos.col);
        if !self.field.is_empty() {
            out.push_str(&format!("{}: ", self.field));
        }
        out.push_str(&self.message);
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  hint: {hint}"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("<policy>"))
    }
}

/// Collects diagnostics while a document is decoded, so that one pass reports them all.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, pos, field, message.into(), None);
    }

    pub fn error_hint(
        &mut self,
        pos: Pos,
        field: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(
            Severity::Error,
            pos,
            field,
            message.into(),
            Some(hint.into()),
        );
    }

    pub fn warning(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, pos, field, message.into(), None);
    }

    fn push(
        &mut self,
        severity: Severity,
        pos: Pos,
        field: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.items.push(Diagnostic {
            severity,
            pos,
            field: field.to_string(),
            message,
            hint,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Sorted by position so that output reads top to bottom like the file.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| d.pos);
        self.items
    }
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.len() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            closest("recursve", &["recursive", "path", "dir"]),
            Some("recursive")
        );
        assert_eq!(closest("banana", &["recursive", "path", "dir"]), None);
    }

    #[test]
    fn renders_compiler_style() {
        let d = Diagnostic {
            severity: Severity::Error,
            pos: Pos { line: 3, col: 7 },
            field: "spec.mode".into(),
            message: "unknown mode `enforcing`".into(),
            hint: Some("use `enforce` or `audit`".into()),
        };
        assert_eq!(
            d.render("p.yaml"),
            "p.yaml:3:7: error: spec.mode: unknown mode `enforcing`\n  hint: use `enforce` or `audit`"
        );
    }
}
