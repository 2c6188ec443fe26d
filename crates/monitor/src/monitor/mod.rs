//! The control loop: every tick it probes every node, keeps exactly one
//! writable primary, fails over when the primary is confirmed dead, points
//! every other node at the primary, and keeps diverged nodes out.

use crate::actions;
use crate::gtid::Position;
use crate::probe::{probe, Probe};
use crate::state::{self, ClusterState, Failover};
use arc_swap::ArcSwap;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use webinfra_db::pool::settle;
use webinfra_topology::credentials::MONITOR_USER;
use webinfra_topology::{Credentials, Database, DbNode};

mod ops;
mod view;

pub use view::{ClusterView, NodeView};

/// Time between probes.
pub const TICK: Duration = Duration::from_millis(200);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(600);
/// Consecutive failed probes before the primary is suspected dead.
const SUSPECT_AFTER: u32 = 3;
/// MariaDB's error when a replica asks for GTIDs the primary does not have.
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u32 = 1236;

struct Node {
    spec: DbNode,
    pool: Pool,
}

/// The database monitor.
pub struct Monitor {
    nodes: Vec<Node>,
    repl_password: String,
    state_path: PathBuf,
    state: std::sync::Mutex<ClusterState>,
    /// Serialises ticks and operator requests.
    ops: Mutex<Tick>,
    view: ArcSwap<ClusterView>,
}

/// Loop-local memory.
#[derive(Default)]
struct Tick {
    primary_failures: u32,
    first_failure: Option<Instant>,
    semi_sync_warned: bool,
    /// Replicas streaming from the primary when it last answered (with their
    /// uptime then), and reachable without a restart since: the only ones an
    /// automatic failover may promote. One that was down or disconnected in
    /// between may lack writes the primary acknowledged alone.
    in_sync: Vec<(usize, u64)>,
    /// The refusal to promote an out-of-sync replica was logged.
    refusal_logged: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Monitor {
    /// A monitor for `database`, remembering its state under `state_dir`.
    pub fn new(
        database: &Database,
        credentials: &Credentials,
        state_dir: &std::path::Path,
    ) -> Monitor {
        let nodes = database
            .nodes
            .iter()
            .map(|n| {
                let opts = OptsBuilder::default()
                    .ip_or_hostname(n.sql.ip().to_string())
                    .tcp_port(n.sql.port())
                    .user(Some(MONITOR_USER))
                    .pass(Some(credentials.monitor_password.clone()))
                    .prefer_socket(false)
                    // Kept and reused; closed after a failed call (`settle`).
                    .pool_opts(webinfra_db::pool::options(4));
                Node {
                    spec: n.clone(),
                    pool: Pool::new(Opts::from(opts)),
                }
            })
            .collect();
        let state_path = state::path(state_dir);
        Monitor {
            nodes,
            repl_password: credentials.repl_password.clone(),
            state: std::sync::Mutex::new(ClusterState::load(&state_path)),
            state_path,
            ops: Mutex::new(Tick::default()),
            view: ArcSwap::from_pointee(ClusterView {
                status: "starting".into(),
                ..Default::default()
            }),
        }
    }

    /// The last published view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    fn state(&self) -> ClusterState {
        self.state.lock().expect("state lock").clone()
    }

    fn save(&self, st: ClusterState) {
        if let Err(e) = st.save(&self.state_path) {
            tracing::error!(error = %e, "cannot save the cluster state");
        }
        *self.state.lock().expect("state lock") = st;
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.name == name)
    }

    async fn conn(&self, i: usize) -> Result<Conn, String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.nodes[i].pool.get_conn()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {PROBE_TIMEOUT:?}")),
        }
    }

    async fn probe_all(&self) -> Vec<Result<Probe, String>> {
        let futs = (0..self.nodes.len()).map(|i| async move {
            let mut conn = self.conn(i).await?;
            let probed = tokio::time::timeout(PROBE_TIMEOUT, probe(&mut conn)).await;
            settle(conn, matches!(probed, Ok(Ok(_))));
            match probed {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            }
        });
        let mut out = Vec::new();
        let handles: Vec<_> = futs.map(Box::pin).collect();
        for h in handles {
            out.push(h.await);
        }
        out
    }

    /// Runs `f` on node `i` with a deadline.
    async fn act<F>(&self, i: usize, what: &str, f: F) -> Result<(), String>
    where
        F: for<'c> FnOnce(
            &'c mut Conn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = mysql_async::Result<()>> + Send + 'c>,
        >,
    {
        let mut conn = self.conn(i).await?;
        let r = tokio::time::timeout(Duration::from_secs(10), f(&mut conn)).await;
        settle(conn, matches!(r, Ok(Ok(()))));
        let r = match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        if let Err(e) = &r {
            tracing::warn!(node = %self.nodes[i].spec.name, action = what, error = %e, "action failed");
        }
        r
    }

    /// One round of watching and acting.
    pub async fn tick(&self) {
        let mut tick = self.ops.lock().await;
        let probes = self.probe_all().await;
        let mut st = self.state();

        // A primary to start from: the remembered one, else a single writable
        // node, else the configured one.
        if st.primary.is_none() {
            let writable: Vec<usize> = probes
                .iter()
                .enumerate()
                .filter(|(_, p)| p.as_ref().is_ok_and(|p| !p.read_only))
                .map(|(i, _)| i)
                .collect();
            let pick = match writable.as_slice() {
                [one] => Some(*one),
                _ => probes[0].is_ok().then_some(0),
            };
            if let Some(i) = pick {
                tracing::info!(node = %self.nodes[i].spec.name, "chose the initial primary");
                st.primary = Some(self.nodes[i].spec.name.clone());
                self.save(st.clone());
            }
        }
        let Some(p) = st.primary.as_deref().and_then(|n| self.index(n)) else {
            self.publish(&probes, &st, Some("no primary yet".into()));
            return;
        };

        match &probes[p] {
            Ok(pp) => {
                tick.primary_failures = 0;
                tick.first_failure = None;
                tick.refusal_logged = false;
                tick.in_sync = self
                    .streaming_from(p, &probes)
                    .into_iter()
                    .filter_map(|i| probes[i].as_ref().ok().map(|r| (i, r.uptime_s)))
                    .collect();
                if pp.read_only {
                    tracing::info!(node = %self.nodes[p].spec.name, "making the primary writable");
                    let _ = self
                        .act(p, "promote", |c| Box::pin(actions::promote(c)))
                        .await;
                } else {
                    // Only on a writable primary: the monitor's privileges
                    // would let it write to a read-only node too.
                    self.spawn_heartbeat(p);
                }
                // With no replica acknowledging, commits do not wait: say so, loudly, once.
                let waits = pp.semi_sync_waits();
                if !waits && !tick.semi_sync_warned {
                    tracing::error!(
                        primary = %self.nodes[p].spec.name,
                        state = %pp.semi_sync_words(),
                        "semi-synchronous replication is OFF (async): acknowledged writes can be lost in a failover"
                    );
                    tick.semi_sync_warned = true;
                } else if waits && tick.semi_sync_warned {
                    tracing::warn!(primary = %self.nodes[p].spec.name, state = %pp.semi_sync_words(), "semi-synchronous replication is active again");
                    tick.semi_sync_warned = false;
                }
            }
            Err(e) => {
                tick.primary_failures += 1;
                // A replica that went away since cannot count as in sync,
                // even if it is back: it may have missed the last writes.
                tick.in_sync
                    .retain(|&(i, uptime)| probes[i].as_ref().is_ok_and(|r| r.uptime_s >= uptime));
                let first = *tick.first_failure.get_or_insert_with(Instant::now);
                // A replica still streaming from the primary means it is alive.
                let seen_alive = !self.streaming_from(p, &probes).is_empty();
                let mut problem = format!("primary {} unreachable: {e}", self.nodes[p].spec.name);
                if tick.primary_failures >= SUSPECT_AFTER && !seen_alive && tick.in_sync.is_empty()
                {
                    problem.push_str(
                        "; no replica was replicating from it when it was lost, so none is promoted \
                         (it could lack acknowledged writes): it takes `webinfra db failover`",
                    );
                    if !tick.refusal_logged {
                        tracing::error!(primary = %self.nodes[p].spec.name, "{problem}");
                        tick.refusal_logged = true;
                    }
                } else if tick.primary_failures >= SUSPECT_AFTER && !seen_alive {
                    let reason = format!(
                        "{} unreachable for {} probes: {e}",
                        self.nodes[p].spec.name, tick.primary_failures
                    );
                    let in_sync = std::mem::take(&mut tick.in_sync);
                    let eligible: Vec<usize> = in_sync.iter().map(|(i, _)| *i).collect();
                    if let Some(new) = self
                        .promote_best(
                            p,
                            &probes,
                            &mut st,
                            "failover",
                            &reason,
                            first,
                            Some(&eligible),
                        )
                        .await
                    {
                        tick.primary_failures = 0;
                        tick.first_failure = None;
                        let probes = self.probe_all().await;
                        self.publish(&probes, &st, None);
                        tracing::warn!(from = %self.nodes[p].spec.name, to = %self.nodes[new].spec.name, "failover done");
                        return;
                    }
                    tick.in_sync = in_sync;
                }
                self.publish(&probes, &st, Some(problem));
                return;
            }
        }

        self.converge(p, &probes, &mut st).await;
        self.publish(&probes, &st, None);
    }

    /// Fences stray writable nodes, points the others at the primary, keeps diverged ones out.
    async fn converge(&self, p: usize, probes: &[Result<Probe, String>], st: &mut ClusterState) {
        let primary_addr = self.nodes[p].spec.sql;
        let primary_pos = probes[p]
            .as_ref()
            .map(|pp| Position::parse(&pp.gtid_binlog_pos))
            .unwrap_or_default();
        for (i, r) in probes.iter().enumerate() {
            let Ok(r) = r else { continue };
            if i == p {
                continue;
            }
            let name = self.nodes[i].spec.name.clone();
            if !r.read_only {
                tracing::error!(node = %name, "a second writable node: fencing it (read_only=ON)");
                let _ = self.act(i, "fence", |c| Box::pin(actions::fence(c))).await;
            }
            if st.diverged.contains(&name) {
                if r.slave
                    .as_ref()
                    .is_some_and(|s| s.io_running != "No" || s.sql_running != "No")
                {
                    let _ = self
                        .act(i, "stop replication", |c| {
                            Box::pin(actions::stop_replication(c))
                        })
                        .await;
                }
                continue;
            }
            let slave = r.slave.as_ref();
            if let Some(s) =
                slave.filter(|s| s.last_io_errno == ER_MASTER_FATAL_ERROR_READING_BINLOG)
            {
                self.mark_diverged(i, st, &s.last_error).await;
                continue;
            }
            let pointed = slave.is_some_and(|s| {
                s.master_host == primary_addr.ip().to_string()
                    && s.master_port == primary_addr.port()
            });
            let running = slave.is_some_and(|s| s.io_running != "No" && s.sql_running == "Yes");
            if pointed && running {
                continue;
            }
            let from_own_binlog = slave.is_none();
            if from_own_binlog {
                // A node that was never a replica of this primary may not hold
                // more than the primary does.
                let own = Position::parse(&r.gtid_binlog_pos);
                if !primary_pos.covers(&own) {
                    let why = format!(
                        "its binlog has {} beyond the primary's {}",
                        r.gtid_binlog_pos,
                        probes[p]
                            .as_ref()
                            .map(|x| x.gtid_binlog_pos.as_str())
                            .unwrap_or("")
                    );
                    self.mark_diverged(i, st, &why).await;
                    continue;
                }
            }
            if pointed && slave.is_some_and(|s| s.sql_running == "No" && !s.last_error.is_empty()) {
                // A replication error an operator must look at; do not loop on it.
                continue;
            }
            tracing::info!(node = %name, primary = %self.nodes[p].spec.name, from_own_binlog, "pointing the node at the primary");
            let pw = self.repl_password.clone();
            let _ = self
                .act(i, "replicate", move |c| {
                    Box::pin(async move {
                        actions::replicate_from(c, primary_addr, &pw, from_own_binlog).await
                    })
                })
                .await;
        }
    }

    async fn mark_diverged(&self, i: usize, st: &mut ClusterState, why: &str) {
        let name = self.nodes[i].spec.name.clone();
        tracing::error!(node = %name, why, "node diverged from the primary: kept out (webinfra db rejoin {name} after fixing it)");
        let _ = self
            .act(i, "stop replication", |c| {
                Box::pin(actions::stop_replication(c))
            })
            .await;
        if !st.diverged.contains(&name) {
            st.diverged.push(name);
            self.save(st.clone());
        }
    }

    /// Replicas whose IO thread is streaming from node `p`.
    fn streaming_from(&self, p: usize, probes: &[Result<Probe, String>]) -> Vec<usize> {
        let host = self.nodes[p].spec.sql.ip().to_string();
        probes
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                *i != p
                    && r.as_ref().is_ok_and(|r| {
                        r.slave
                            .as_ref()
                            .is_some_and(|s| s.io_running == "Yes" && s.master_host == host)
                    })
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Promotes the most advanced reachable replica (among `eligible`, when
    /// given); returns its index.
    #[allow(clippy::too_many_arguments)]
    async fn promote_best(
        &self,
        old: usize,
        probes: &[Result<Probe, String>],
        st: &mut ClusterState,
        kind: &str,
        reason: &str,
        started: Instant,
        eligible: Option<&[usize]>,
    ) -> Option<usize> {
        let mut candidates: Vec<(usize, &Probe)> = probes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != old)
            .filter(|(i, _)| eligible.is_none_or(|e| e.contains(i)))
            .filter_map(|(i, r)| r.as_ref().ok().map(|r| (i, r)))
            .filter(|(i, r)| r.slave.is_some() && !st.diverged.contains(&self.nodes[*i].spec.name))
            .collect();
        // Most received first, then most applied, then file order.
        candidates.sort_by_key(|(i, r)| {
            let s = r.slave.as_ref().expect("filtered");
            (
                std::cmp::Reverse(Position::parse(&s.gtid_io_pos).total()),
                std::cmp::Reverse(Position::parse(&r.gtid_current_pos).total()),
                *i,
            )
        });
        let Some((best, probe)) = candidates.first().copied() else {
            tracing::error!(reason, "the primary is gone and no replica can be promoted");
            return None;
        };
        let io_pos = probe
            .slave
            .as_ref()
            .map(|s| s.gtid_io_pos.clone())
            .unwrap_or_default();
        let name = self.nodes[best].spec.name.clone();
        tracing::warn!(to = %name, %io_pos, reason, "promoting");
        // Everything received must be applied before the node takes writes.
        let mut conn = self.conn(best).await.ok()?;
        match actions::wait_applied(&mut conn, &io_pos, 10.0).await {
            Ok(true) => {}
            other => {
                tracing::error!(node = %name, ?other, "the candidate did not apply its relay log in time; not promoting");
                return None;
            }
        }
        if let Err(e) = actions::promote(&mut conn).await {
            tracing::error!(node = %name, error = %e, "promotion failed");
            return None;
        }
        st.primary = Some(name.clone());
        st.changes += 1;
        st.last_failover = Some(Failover {
            at_ms: now_ms(),
            kind: kind.into(),
            from: self.nodes[old].spec.name.clone(),
            to: name,
            duration_ms: started.elapsed().as_millis() as u64,
            reason: reason.into(),
            writes_paused_ms: None,
        });
        self.save(st.clone());
        Some(best)
    }

    fn spawn_heartbeat(&self, p: usize) {
        let pool = self.nodes[p].pool.clone();
        let name = self.nodes[p].spec.name.clone();
        tokio::spawn(async move {
            let limit = Duration::from_secs(2);
            let Ok(Ok(mut conn)) = tokio::time::timeout(limit, pool.get_conn()).await else {
                return;
            };
            let beat = tokio::time::timeout(limit, actions::heartbeat(&mut conn, &name)).await;
            settle(conn, matches!(beat, Ok(Ok(()))));
            if let Ok(Err(e)) = beat {
                tracing::debug!(error = %e, "heartbeat failed");
            }
        });
    }

    /// Closes every connection.
    pub async fn disconnect(&self) {
        for n in &self.nodes {
            let _ = n.pool.clone().disconnect().await;
        }
    }
}
