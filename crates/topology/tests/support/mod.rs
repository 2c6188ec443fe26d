//! Helpers shared by the topology's test files.

use webinfra_topology::{Topology, TopologyError};

/// The errors of a topology that must be rejected.
pub fn errors(src: &str) -> TopologyError {
    Topology::parse_str(src, "t.toml").expect_err("the topology should be rejected")
}

/// Asserts exactly one diagnostic, at `line:column`, for `key`, mentioning `words`.
pub fn assert_one(src: &str, line: usize, column: usize, key: &str, words: &str) {
    let err = errors(src);
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    let d = &err.diagnostics[0];
    assert_eq!(
        (d.line, d.column, d.key.as_str()),
        (line, column, key),
        "{err}"
    );
    assert!(d.message.contains(words), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("t.toml:{line}:{column}: key `{key}`")),
        "{err}"
    );
}

/// Line (1-based) of the first line of `src` containing `needle`.
pub fn line_of(src: &str, needle: &str) -> usize {
    src.lines().position(|l| l.contains(needle)).expect(needle) + 1
}
