//! The monitor's rules, as a pure function: from one round of probes, what
//! the monitor remembers between rounds ([`Memory`]) and across restarts
//! ([`ClusterState`]), to the [`Action`]s that round takes, in order. No
//! SQL, no clock, no logging here: the executor (`Monitor::tick`) runs the
//! actions, so the rules that keep data safe -- a primary is suspected
//! after [`SUSPECT_AFTER`] failed probes and never while a replica still
//! streams from it; only a replica that was streaming from it when it was
//! last seen, and has not restarted since, is promoted on its own; a node
//! whose binlog holds what the primary never had is kept out -- are table
//! tested without MariaDB (the tests below).

use crate::gtid::Position;
use crate::probe::Probe;
use crate::state::ClusterState;
use std::net::SocketAddr;

/// Consecutive failed probes before the primary is suspected dead.
pub const SUSPECT_AFTER: u32 = 3;
/// MariaDB's error when a replica asks for GTIDs the primary does not have.
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u32 = 1236;

/// One round's probe of each node (index as in the topology's nodes).
pub type Probes = [Result<Probe, String>];

/// What the rules remember from one round to the next (not across a
/// restart of the monitor: a restarted monitor knows no replica to be in
/// sync, so it promotes none on its own until the primary has been seen).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Memory {
    /// Rounds in a row the primary did not answer.
    pub primary_failures: u32,
    /// Semi-sync was said to be off (said again only when it comes back).
    pub semi_sync_warned: bool,
    /// Replicas streaming from the primary when it last answered (with their
    /// uptime then), and reachable without a restart since: the only ones an
    /// automatic failover may promote. One that was down or disconnected in
    /// between may lack writes the primary acknowledged alone.
    pub in_sync: Vec<(usize, u64)>,
    /// The refusal to promote an out-of-sync replica was said.
    pub refusal_said: bool,
}

/// One thing a round does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No primary is remembered: take this node as the primary.
    ChoosePrimary(usize),
    /// The primary is read-only (after a restart): make it writable.
    MakeWritable(usize),
    /// Write the heartbeat on the (writable) primary.
    Heartbeat(usize),
    /// The primary's semi-sync state changed: `waits` false, commits no
    /// longer wait for a replica (said loudly); true, they do again.
    SemiSyncChanged { primary: usize, waits: bool },
    /// The primary is confirmed dead: promote the most advanced of
    /// `eligible` in its place.
    Failover {
        from: usize,
        eligible: Vec<usize>,
        reason: String,
    },
    /// The primary is lost and no replica may be promoted on its own (said once).
    RefusePromotion { problem: String },
    /// A second writable node: make it read-only.
    Fence(usize),
    /// A diverged node still replicates: stop it.
    StopReplication(usize),
    /// A node holds what the primary never had: keep it out.
    MarkDiverged { node: usize, why: String },
    /// Point a node at the primary (`from_own_binlog`: a node that was
    /// never its replica starts from its own binlog position).
    Replicate { node: usize, from_own_binlog: bool },
    /// Publish the view, with the round's problem if any.
    Publish(Option<String>),
}

/// The rules: what one round does, given its probes.
pub fn decide(
    nodes: &[SocketAddr],
    names: &[String],
    probes: &Probes,
    st: &ClusterState,
    mem: &mut Memory,
) -> Vec<Action> {
    let mut out = Vec::new();
    let mut primary = st
        .primary
        .as_deref()
        .and_then(|n| names.iter().position(|x| x == n));
    if primary.is_none() {
        // A primary to start from: a single writable node, else the configured one.
        let writable: Vec<usize> = (0..probes.len())
            .filter(|&i| probes[i].as_ref().is_ok_and(|p| !p.read_only))
            .collect();
        primary = match writable.as_slice() {
            [one] => Some(*one),
            _ => probes[0].is_ok().then_some(0),
        };
        if let Some(i) = primary {
            out.push(Action::ChoosePrimary(i));
        }
    }
    let Some(p) = primary else {
        out.push(Action::Publish(Some("no primary yet".into())));
        return out;
    };
    let pp = match &probes[p] {
        Ok(pp) => pp,
        Err(e) => {
            lost_primary(p, e, nodes, names, probes, mem, &mut out);
            return out;
        }
    };
    mem.primary_failures = 0;
    mem.refusal_said = false;
    mem.in_sync = streaming_from(p, nodes, probes)
        .into_iter()
        .filter_map(|i| probes[i].as_ref().ok().map(|r| (i, r.uptime_s)))
        .collect();
    if pp.read_only {
        out.push(Action::MakeWritable(p));
    } else {
        // Only on a writable primary: the monitor's privileges would let it
        // write to a read-only node too.
        out.push(Action::Heartbeat(p));
    }
    let waits = pp.semi_sync_waits();
    if waits == mem.semi_sync_warned {
        mem.semi_sync_warned = !waits;
        out.push(Action::SemiSyncChanged { primary: p, waits });
    }
    converge(p, nodes, names, probes, st, &mut out);
    out.push(Action::Publish(None));
    out
}

/// The primary did not answer: suspect, confirm, fail over or refuse.
fn lost_primary(
    p: usize,
    e: &str,
    nodes: &[SocketAddr],
    names: &[String],
    probes: &Probes,
    mem: &mut Memory,
    out: &mut Vec<Action>,
) {
    mem.primary_failures += 1;
    // A replica that went away since cannot count as in sync, even if it is
    // back: it may have missed the last writes.
    mem.in_sync
        .retain(|&(i, uptime)| probes[i].as_ref().is_ok_and(|r| r.uptime_s >= uptime));
    // A replica still streaming from the primary means it is alive (slow).
    let seen_alive = !streaming_from(p, nodes, probes).is_empty();
    let mut problem = format!("primary {} unreachable: {e}", names[p]);
    if mem.primary_failures >= SUSPECT_AFTER && !seen_alive {
        if mem.in_sync.is_empty() {
            problem.push_str(
                "; no replica was replicating from it when it was lost, so none is promoted \
                 (it could lack acknowledged writes): it takes `webinfra db failover`",
            );
            if !mem.refusal_said {
                mem.refusal_said = true;
                out.push(Action::RefusePromotion {
                    problem: problem.clone(),
                });
            }
        } else {
            out.push(Action::Failover {
                from: p,
                eligible: mem.in_sync.iter().map(|(i, _)| *i).collect(),
                reason: format!(
                    "{} unreachable for {} probes: {e}",
                    names[p], mem.primary_failures
                ),
            });
        }
    }
    out.push(Action::Publish(Some(problem)));
}

/// Fences stray writable nodes, points the others at the primary `p`,
/// keeps diverged ones out.
fn converge(
    p: usize,
    nodes: &[SocketAddr],
    names: &[String],
    probes: &Probes,
    st: &ClusterState,
    out: &mut Vec<Action>,
) {
    let primary_addr = nodes[p];
    let primary_binlog = probes[p]
        .as_ref()
        .map(|pp| pp.gtid_binlog_pos.clone())
        .unwrap_or_default();
    let primary_pos = Position::parse(&primary_binlog);
    for (i, r) in probes.iter().enumerate() {
        let Ok(r) = r else { continue };
        if i == p {
            continue;
        }
        if !r.read_only {
            out.push(Action::Fence(i));
        }
        let slave = r.slave.as_ref();
        if st.diverged.contains(&names[i]) {
            if slave.is_some_and(|s| s.io_running != "No" || s.sql_running != "No") {
                out.push(Action::StopReplication(i));
            }
            continue;
        }
        if let Some(s) = slave.filter(|s| s.last_io_errno == ER_MASTER_FATAL_ERROR_READING_BINLOG) {
            out.push(Action::MarkDiverged {
                node: i,
                why: s.last_error.clone(),
            });
            continue;
        }
        let pointed = slave.is_some_and(|s| {
            s.master_host == primary_addr.ip().to_string() && s.master_port == primary_addr.port()
        });
        let running = slave.is_some_and(|s| s.io_running != "No" && s.sql_running == "Yes");
        if pointed && running {
            continue;
        }
        let from_own_binlog = slave.is_none();
        // A node that was never a replica of this primary may not hold more than it does.
        if from_own_binlog && !primary_pos.covers(&Position::parse(&r.gtid_binlog_pos)) {
            out.push(Action::MarkDiverged {
                node: i,
                why: format!(
                    "its binlog has {} beyond the primary's {primary_binlog}",
                    r.gtid_binlog_pos
                ),
            });
            continue;
        }
        if pointed && slave.is_some_and(|s| s.sql_running == "No" && !s.last_error.is_empty()) {
            // A replication error an operator must look at; do not loop on it.
            continue;
        }
        out.push(Action::Replicate {
            node: i,
            from_own_binlog,
        });
    }
}

/// Replicas whose IO thread is streaming from node `p`.
pub fn streaming_from(p: usize, nodes: &[SocketAddr], probes: &Probes) -> Vec<usize> {
    let host = nodes[p].ip().to_string();
    (0..probes.len())
        .filter(|&i| {
            i != p
                && probes[i].as_ref().is_ok_and(|r| {
                    r.slave
                        .as_ref()
                        .is_some_and(|s| s.io_running == "Yes" && s.master_host == host)
                })
        })
        .collect()
}

#[cfg(test)]
mod tests;
