//! Errors that point at the line, column and key of the topology file at fault.

use std::fmt;
use std::ops::Range;

/// One problem in a topology file, located like a compiler error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line; 0 when the problem is the file itself (unreadable).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted key path, e.g. `load_balancer.servers`; empty when there is none.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic for the byte span `span` of `src`.
    pub fn at(src: &str, file: &str, span: Range<usize>, key: &str, message: String) -> Self {
        let (line, column) = line_col(src, span.start);
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            key: key.to_string(),
            message,
        }
    }

    /// Turns a TOML syntax or shape error into a located diagnostic.
    pub(crate) fn from_toml(err: &toml::de::Error, src: &str, file: &str) -> Self {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let field = |rest: &str| rest.split('`').next().unwrap_or_default().to_string();
        let key = if let Some(rest) = message.strip_prefix("unknown field `") {
            // In an inline table (`servers = [{ host = .., wieght = 3 }]`) the
            // field belongs to the line's key, else to the table in force.
            let within = if in_inline_table(src, span.start) {
                key_at(src, span.start)
            } else {
                table_at(src, span.start)
            };
            join_key(&within, &field(rest))
        } else if let Some(rest) = message.strip_prefix("missing field `") {
            // The span is the table (or inline table) that lacks the field.
            join_key(&key_at(src, span.start), &field(rest))
        } else {
            key_at(src, span.start)
        };
        Diagnostic::at(src, file, span, &key, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (_, true) => write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            ),
            (_, false) => write!(
                f,
                "{}:{}:{}: key `{}`: {}",
                self.file, self.line, self.column, self.key, self.message
            ),
        }
    }
}

/// Every problem found in one topology file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TopologyError {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl TopologyError {
    pub(crate) fn single(d: Diagnostic) -> Self {
        TopologyError {
            diagnostics: vec![d],
        }
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// 1-based line and character column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The `[table]` (or `[[array]]`) header in force at `offset`, without brackets.
fn table_at(src: &str, offset: usize) -> String {
    let offset = offset.min(src.len());
    src[..offset]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        // Cut at `offset` in a header (an unknown table's name), up to its last dot.
        .map(|l| {
            let name = l.trim_matches(|c| c == '[' || c == ']').trim();
            name.trim_end_matches('.').to_string()
        })
        .unwrap_or_default()
}

/// Whether `offset` is inside, or at the start of, a `{ ... }` on its line.
fn in_inline_table(src: &str, offset: usize) -> bool {
    let offset = offset.min(src.len());
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let through = if src[offset..].starts_with('{') {
        offset + 1
    } else {
        offset
    };
    let before = &src[line_start..through];
    before.matches('{').count() > before.matches('}').count()
}

/// The dotted key whose `key = value` line contains `offset`.
fn key_at(src: &str, offset: usize) -> String {
    let offset = offset.min(src.len());
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = src[line_start..].lines().next().unwrap_or_default();
    if line.trim_start().starts_with('[') {
        // A table header names itself.
        return table_at(src, line_start + line.len());
    }
    let table = table_at(src, line_start);
    match line.split_once('=') {
        Some((k, _)) => join_key(&table, k.trim()),
        None => table,
    }
}

fn join_key(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, src.find('=').unwrap()), (1, 3));
        let second_eq = src.rfind('=').unwrap();
        assert_eq!(line_col(src, second_eq), (2, 4));
    }

    #[test]
    fn key_path_includes_the_table() {
        let src = "[web]\nport = \"x\"\n";
        assert_eq!(key_at(src, src.find('"').unwrap()), "web.port");
    }

    #[test]
    fn a_missing_field_is_named_in_its_own_table() {
        // Before, the key was the table *above* the one lacking the field.
        let src = "[[host]]\nname = \"a\"\n[load_balancer]\nport = 1\n";
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Lb {
            port: u16,
            admin_port: u16,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct File {
            host: Vec<toml::Value>,
            load_balancer: Lb,
        }
        let err = toml::from_str::<File>(src).unwrap_err();
        let d = Diagnostic::from_toml(&err, src, "t.toml");
        assert_eq!(
            (d.line, d.key.as_str()),
            (3, "load_balancer.admin_port"),
            "{d}"
        );
    }
}
