//! The control loop: every tick it probes every node, keeps exactly one
//! writable primary, fails over when the primary is confirmed dead, points
//! every other node at the primary, and keeps diverged nodes out.

use crate::actions;
use crate::gtid::Position;
use crate::probe::{probe, Probe};
use crate::state::{self, ClusterState, Failover};
use arc_swap::ArcSwap;
use decide::Action;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use webinfra_mariadb::pool::settle;
use webinfra_topology::credentials::MONITOR_USER;
use webinfra_topology::{Credentials, Database, DbNode};

mod decide;
mod ops;
mod view;

pub use view::{ClusterView, NodeView};

/// Time between probes.
pub const TICK: Duration = Duration::from_millis(200);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(600);

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

/// Loop-local memory: the rules' ([`decide::Memory`]) and when the
/// primary was first missed (for the failover's duration).
#[derive(Default)]
struct Tick {
    memory: decide::Memory,
    first_failure: Option<Instant>,
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
                    .pool_opts(webinfra_mariadb::pool::options(4));
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

    /// One round: probe every node, decide ([`decide::decide`]), act.
    pub async fn tick(&self) {
        let mut tick = self.ops.lock().await;
        let probes = self.probe_all().await;
        let mut st = self.state();
        let addresses: Vec<_> = self.nodes.iter().map(|n| n.spec.sql).collect();
        let names: Vec<_> = self.nodes.iter().map(|n| n.spec.name.clone()).collect();
        let actions = decide::decide(&addresses, &names, &probes, &st, &mut tick.memory);
        if tick.memory.primary_failures == 0 {
            tick.first_failure = None;
        } else {
            tick.first_failure.get_or_insert_with(Instant::now);
        }
        for action in actions {
            if self.act_on(action, &probes, &mut st, &mut tick).await {
                return;
            }
        }
    }

    /// Runs one decided action; true when the round ends here (a failover
    /// was done and the view published from fresh probes).
    async fn act_on(
        &self,
        action: Action,
        probes: &[Result<Probe, String>],
        st: &mut ClusterState,
        tick: &mut Tick,
    ) -> bool {
        let name = |i: usize| self.nodes[i].spec.name.clone();
        match action {
            Action::ChoosePrimary(i) => {
                tracing::info!(node = %name(i), "chose the initial primary");
                st.primary = Some(name(i));
                self.save(st.clone());
            }
            Action::MakeWritable(p) => {
                tracing::info!(node = %name(p), "making the primary writable");
                let _ = self
                    .act(p, "promote", |c| Box::pin(actions::promote(c)))
                    .await;
            }
            Action::Heartbeat(p) => self.spawn_heartbeat(p),
            Action::SemiSyncChanged { primary, waits } => {
                let words = probes[primary]
                    .as_ref()
                    .map(Probe::semi_sync_words)
                    .unwrap_or_default();
                if waits {
                    tracing::warn!(primary = %name(primary), state = %words, "semi-synchronous replication is active again");
                } else {
                    // Commits do not wait for a replica: said loudly, once.
                    tracing::error!(
                        primary = %name(primary),
                        state = %words,
                        "semi-synchronous replication is OFF (async): acknowledged writes can be lost in a failover"
                    );
                }
            }
            Action::Failover {
                from,
                eligible,
                reason,
            } => {
                let since = tick.first_failure.unwrap_or_else(Instant::now);
                let promoted = self
                    .promote_best(
                        from,
                        probes,
                        st,
                        "failover",
                        &reason,
                        since,
                        Some(&eligible),
                    )
                    .await;
                if let Some(new) = promoted {
                    tick.memory.primary_failures = 0;
                    tick.memory.in_sync.clear();
                    tick.first_failure = None;
                    let probes = self.probe_all().await;
                    self.publish(&probes, st, None);
                    tracing::warn!(from = %name(from), to = %name(new), "failover done");
                    return true;
                }
            }
            Action::RefusePromotion { problem } => tracing::error!("{problem}"),
            Action::Fence(i) => {
                tracing::error!(node = %name(i), "a second writable node: fencing it (read_only=ON)");
                let _ = self.act(i, "fence", |c| Box::pin(actions::fence(c))).await;
            }
            Action::StopReplication(i) => {
                let _ = self
                    .act(i, "stop replication", |c| {
                        Box::pin(actions::stop_replication(c))
                    })
                    .await;
            }
            Action::MarkDiverged { node, why } => {
                let n = name(node);
                tracing::error!(node = %n, why, "node diverged from the primary: kept out (webinfra db rejoin {n} after fixing it)");
                let _ = self
                    .act(node, "stop replication", |c| {
                        Box::pin(actions::stop_replication(c))
                    })
                    .await;
                if !st.diverged.contains(&n) {
                    st.diverged.push(n);
                    self.save(st.clone());
                }
            }
            Action::Replicate {
                node,
                from_own_binlog,
            } => {
                let primary = st.primary.as_deref().and_then(|n| self.index(n));
                let Some(p) = primary else { return false };
                let primary_addr = self.nodes[p].spec.sql;
                tracing::info!(node = %name(node), primary = %name(p), from_own_binlog, "pointing the node at the primary");
                let pw = self.repl_password.clone();
                let _ = self
                    .act(node, "replicate", move |c| {
                        Box::pin(async move {
                            actions::replicate_from(c, primary_addr, &pw, from_own_binlog).await
                        })
                    })
                    .await;
            }
            Action::Publish(problem) => self.publish(probes, st, problem),
        }
        false
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
