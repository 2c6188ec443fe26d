//! MariaDB GTID positions (`0-1-123,1-2-7`): parsing and ordering.

use std::collections::BTreeMap;

/// A GTID position: for each replication domain, the last (server id, sequence number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position(BTreeMap<u32, (u32, u64)>);

impl Position {
    /// Parses MariaDB's text form; empty text is the empty position.
    pub fn parse(text: &str) -> Position {
        let mut map = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut f = part.split('-');
            if let (Some(d), Some(s), Some(n)) = (f.next(), f.next(), f.next()) {
                if let (Ok(d), Ok(s), Ok(n)) = (d.parse(), s.parse(), n.parse()) {
                    map.insert(d, (s, n));
                }
            }
        }
        Position(map)
    }

    /// True when `self` has at least every domain's sequence number of `other`.
    pub fn covers(&self, other: &Position) -> bool {
        other
            .0
            .iter()
            .all(|(d, (_, n))| self.0.get(d).is_some_and(|(_, mine)| mine >= n))
    }

    /// Total of the sequence numbers: orders positions of one history.
    pub fn total(&self) -> u64 {
        self.0.values().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let a = Position::parse("0-1-10");
        let b = Position::parse("0-2-12,1-1-3");
        assert!(b.covers(&a));
        assert!(!a.covers(&b));
        assert!(a.covers(&Position::parse("")));
        assert_eq!(b.total(), 15);
        assert_eq!(Position::parse("garbage"), Position::default());
    }
}
