//! The monitor's durable memory: which node is the primary, which nodes
//! diverged, and the failover history. Kept in `<state-dir>/monitor/cluster.json`
//! so a restarted stack keeps its primary.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One change of primary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failover {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// `failover` (the primary died), `switchover` (planned) or `forced`.
    pub kind: String,
    /// The old primary.
    pub from: String,
    /// The new primary.
    pub to: String,
    /// From first noticing the problem (or the request) to the new primary being writable.
    pub duration_ms: u64,
    /// Why.
    pub reason: String,
    /// How long writes were refused (switchover: old primary read-only until the new one is writable).
    #[serde(default)]
    pub writes_paused_ms: Option<u64>,
}

/// What the monitor remembers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterState {
    /// The node that takes writes; None until the first one is chosen.
    pub primary: Option<String>,
    /// Nodes kept out because their data diverged from the primary's.
    pub diverged: Vec<String>,
    /// How many times the primary changed.
    pub changes: u64,
    /// The last change.
    pub last_failover: Option<Failover>,
}

/// Where a stack's cluster state lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("monitor").join("cluster.json")
}

impl ClusterState {
    /// Loads the state, or the empty state when there is none.
    pub fn load(path: &Path) -> ClusterState {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Writes the state atomically (write, fsync, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(tmp, path)
    }
}
