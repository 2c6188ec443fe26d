//! The database router: which MariaDB node a read or a write goes to. A
//! discovery task probes every node a few times a second: the one writable
//! node is the primary (the database monitor keeps it to one), the read-only ones are replicas, and the monitor's heartbeat tells
//! how far behind each replica is. Writes go to the primary; reads go to a
//! replica that is close enough (and, for read-your-writes, has applied a
//! given GTID), else to the primary. Nothing needs a restart when the primary
//! moves: the next probe sees it.

use arc_swap::ArcSwap;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use webinfra_mariadb::pool::settle;
use webinfra_topology::credentials::APP_USER;
use webinfra_topology::replication::{REPLICA_NET_TIMEOUT, SEMI_SYNC_TIMEOUT};
use webinfra_topology::{Credentials, Database};

/// How long to wait for a connection from one node.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Time between discovery probes.
const DISCOVERY_INTERVAL: Duration = Duration::from_millis(150);
/// How long one discovery probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a write may wait for a primary (a failover or switchover in
/// progress) when nothing was written yet.
const WRITE_PATIENCE: Duration = Duration::from_millis(2000);
/// MariaDB: the server runs with --read-only.
const ER_OPTION_PREVENTS_STATEMENT: u16 = 1290;
/// A primary heartbeat older than this (µs) means the monitor is not writing it.
const FRESH_HEARTBEAT_US: i64 = 1_000_000;
/// How long a replica may take to apply a client's last write before the read goes elsewhere.
const GTID_WAIT_SECONDS: f64 = 0.1;
/// How long a slow write is looked for on the other nodes ([`Db::durable`]).
const CONFIRM_WITHIN: Duration = Duration::from_secs(2);
/// How long a replica may take over a read before it goes to the primary
/// instead: a replica that hangs (SIGSTOP, a stuck disk) would otherwise
/// hold the reads it was given until it runs again.
const REPLICA_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a database call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// No connection could be had: nothing was sent, nothing was written.
    Unreachable(String),
    /// The node refused the statement as read-only (it is no longer the
    /// primary): nothing was written.
    Refused(String),
    /// The connection failed or the server refused after the query was sent:
    /// a write may or may not have been committed.
    Failed(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unreachable(m) | DbError::Refused(m) | DbError::Failed(m) => f.write_str(m),
        }
    }
}

/// A future borrowing a connection, returned by query closures.
pub type QueryFuture<'c, T> = Pin<Box<dyn Future<Output = mysql_async::Result<T>> + Send + 'c>>;

/// One MariaDB node as the application sees it.
pub struct Node {
    /// The node's name (`X-DB-Node`).
    pub name: String,
    pool: Pool,
}

/// One discovery probe of one node.
#[derive(Debug, Clone, PartialEq)]
struct NodeProbe {
    read_only: bool,
    /// Age of the monitor's heartbeat row, as this node sees it.
    heartbeat_age_us: Option<i64>,
    /// The primary that wrote that heartbeat.
    heartbeat_source: Option<String>,
}

/// What discovery found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roles {
    /// Index of the writable node.
    pub primary: Option<usize>,
    /// Read-only nodes that answered, with their lag behind the primary when known.
    pub replicas: Vec<(usize, Option<Duration>)>,
}

/// The nodes and what they are now.
pub struct Db {
    nodes: Vec<Node>,
    roles: ArcSwap<Roles>,
    rediscover: Notify,
    max_lag: Duration,
    /// Where the next read starts its round over the replicas.
    next_replica: AtomicUsize,
}

impl Node {
    fn new(name: &str, addr: std::net::SocketAddr, schema: &str, password: &str) -> Node {
        let opts = OptsBuilder::default()
            .ip_or_hostname(addr.ip().to_string())
            .tcp_port(addr.port())
            .user(Some(APP_USER))
            .pass(Some(password))
            .db_name(Some(schema))
            .prefer_socket(false)
            .init(vec!["SET time_zone = '+00:00'"])
            // Kept and reused; closed after a failed call (`settle`).
            .pool_opts(webinfra_mariadb::pool::options(64));
        Node {
            name: name.to_string(),
            pool: Pool::new(Opts::from(opts)),
        }
    }

    async fn conn(&self) -> Result<Conn, DbError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.pool.get_conn()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(DbError::Unreachable(format!("{}: {e}", self.name))),
            Err(_) => Err(DbError::Unreachable(format!(
                "{}: no connection within {CONNECT_TIMEOUT:?}",
                self.name
            ))),
        }
    }

    /// Runs `f` on a pooled connection. `write`: the connection is pinged
    /// first, so one whose node died since it was pooled fails with nothing
    /// sent (`Unreachable`: a write may wait for the next primary) instead
    /// of failing mid-statement (`Failed`: its outcome unknown).
    async fn run<T, F>(&self, f: &F, write: bool) -> Result<T, DbError>
    where
        F: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let mut conn = self.conn().await?;
        if write {
            if let Err(e) = conn.ping().await {
                settle(conn, false);
                return Err(DbError::Unreachable(format!("{}: {e}", self.name)));
            }
        }
        let result = f(&mut conn).await;
        settle(conn, result.is_ok());
        result.map_err(|e| match &e {
            mysql_async::Error::Server(se) if se.code == ER_OPTION_PREVENTS_STATEMENT => {
                DbError::Refused(format!("{}: {e}", self.name))
            }
            _ => DbError::Failed(format!("{}: {e}", self.name)),
        })
    }

    async fn probe(&self) -> Option<NodeProbe> {
        let mut conn = tokio::time::timeout(PROBE_TIMEOUT, self.pool.get_conn())
            .await
            .ok()?
            .ok()?;
        let q = async {
            let conn = &mut conn;
            let ro: Option<bool> = conn.query_first("SELECT @@read_only").await?;
            // The heartbeat table appears once the monitor has written to the primary.
            let beat: Option<(Option<i64>, String)> = conn
                .query_first(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)), source \
                     FROM webinfra.heartbeat WHERE id = 1",
                )
                .await
                .unwrap_or(None);
            let (age, source) = beat.map(|(a, s)| (a, Some(s))).unwrap_or((None, None));
            Ok::<_, mysql_async::Error>(NodeProbe {
                read_only: ro.unwrap_or(true),
                heartbeat_age_us: age,
                heartbeat_source: source,
            })
        };
        let probe = tokio::time::timeout(PROBE_TIMEOUT, q).await;
        let probe = probe.ok().and_then(Result::ok);
        settle(conn, probe.is_some());
        probe
    }
}

impl Db {
    /// Pools for every node (connections are made lazily).
    pub fn new(database: &Database, credentials: &Credentials) -> Db {
        Db {
            nodes: database
                .nodes
                .iter()
                .map(|n| Node::new(&n.name, n.sql, &database.schema, &credentials.app_password))
                .collect(),
            roles: ArcSwap::from_pointee(Roles::default()),
            rediscover: Notify::new(),
            max_lag: database.max_replica_lag,
            next_replica: AtomicUsize::new(0),
        }
    }

    /// What discovery last found.
    pub fn roles(&self) -> Arc<Roles> {
        self.roles.load_full()
    }

    /// Probes every node until the process ends; run it as a task.
    pub async fn discover_forever(self: Arc<Self>) {
        loop {
            let probes: Vec<_> = self.nodes.iter().map(|n| n.probe()).collect();
            let mut results = Vec::new();
            for p in probes {
                results.push(p.await);
            }
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            let roles = roles_from(&results, &names);
            let changed =
                *self.roles.load_full() != roles && roles.primary != self.roles.load().primary;
            if changed {
                tracing::info!(
                    primary = roles
                        .primary
                        .map(|i| self.nodes[i].name.as_str())
                        .unwrap_or("none"),
                    "database primary changed"
                );
            }
            self.roles.store(Arc::new(roles));
            tokio::select! {
                _ = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
                _ = self.rediscover.notified() => {}
            }
        }
    }

    /// Runs `f` on the primary. Returns the result and the node's name.
    ///
    /// While no primary takes it and nothing was written (no primary known,
    /// no connection, or refused as read-only), the write waits for discovery
    /// to find the new primary, up to [`WRITE_PATIENCE`]: a switchover or a
    /// failover is a pause, not an error. A failure after the statement may
    /// have run is returned at once: repeating it could write twice.
    pub async fn write<T, F>(&self, f: F) -> Result<(T, &str), DbError>
    where
        F: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let deadline = tokio::time::Instant::now() + WRITE_PATIENCE;
        loop {
            let result = match self.roles().primary {
                None => Err(DbError::Unreachable(
                    "no writable primary right now (failover in progress?)".into(),
                )),
                Some(p) => self.nodes[p]
                    .run(&f, true)
                    .await
                    .map(|v| (v, self.nodes[p].name.as_str())),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e @ DbError::Failed(_)) => {
                    self.rediscover.notify_one();
                    return Err(e);
                }
                Err(e) => {
                    self.rediscover.notify_one();
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(DISCOVERY_INTERVAL / 2).await;
                }
            }
        }
    }

    /// Runs read-only `f` on the primary.
    pub async fn read_primary<T, F>(&self, f: F) -> Result<(T, &str), DbError>
    where
        F: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let p = self
            .roles()
            .primary
            .ok_or_else(|| DbError::Unreachable("no primary right now".into()))?;
        self.nodes[p]
            .run(&f, false)
            .await
            .map(|v| (v, self.nodes[p].name.as_str()))
    }

    /// Runs read-only `f` on a replica that is within the lag bound and has
    /// applied `after` (a GTID the client wrote), taking the replicas in
    /// turn, else on the primary (also when no replica answers within
    /// [`REPLICA_READ_TIMEOUT`]). While no primary is known (a failover),
    /// reads go on on the replicas; only one that needs the primary fails.
    pub async fn read<T, F>(&self, after: Option<&str>, f: F) -> Result<(T, &str), DbError>
    where
        F: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let roles = self.roles();
        let mut errors = Vec::new();
        // Unknown lag (no fresh heartbeat) is not within the bound.
        let close: Vec<usize> = roles
            .replicas
            .iter()
            .filter(|(_, lag)| lag.is_some_and(|l| l <= self.max_lag))
            .map(|(i, _)| *i)
            .collect();
        // Round robin over them; the next ones if one fails, the primary last.
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed);
        for k in 0..close.len() {
            let node = &self.nodes[close[(start + k) % close.len()]];
            let slow = || format!("{}: no answer within {REPLICA_READ_TIMEOUT:?}", node.name);
            let begun = tokio::time::Instant::now();
            let mut conn = match tokio::time::timeout(REPLICA_READ_TIMEOUT, node.conn()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    errors.push(e.to_string());
                    continue;
                }
                Err(_) => {
                    errors.push(slow());
                    continue;
                }
            };
            // Ok(None): the replica has not applied `after` yet.
            let attempt = async {
                let conn = &mut conn;
                if let Some(gtid) = after {
                    let waited: Option<Option<i64>> = conn
                        .exec_first("SELECT MASTER_GTID_WAIT(?, ?)", (gtid, GTID_WAIT_SECONDS))
                        .await?;
                    if waited.flatten() != Some(0) {
                        return Ok(None);
                    }
                }
                f(conn).await.map(Some)
            };
            // Given up (and its connection closed) when the replica is slow.
            let left = REPLICA_READ_TIMEOUT.saturating_sub(begun.elapsed());
            let answer = tokio::time::timeout(left, attempt).await;
            settle(conn, matches!(answer, Ok(Ok(_))));
            match answer {
                Ok(Ok(Some(v))) => return Ok((v, node.name.as_str())),
                Ok(Ok(None)) => errors.push(format!(
                    "{} has not applied {} yet",
                    node.name,
                    after.unwrap_or_default()
                )),
                Ok(Err(e)) => errors.push(format!("{}: {e}", node.name)),
                Err(_) => errors.push(slow()),
            }
        }
        match self.read_primary(f).await {
            Ok(v) => Ok(v),
            Err(e) => {
                errors.push(e.to_string());
                Err(DbError::Unreachable(errors.join("; ")))
            }
        }
    }

    /// Whether a write that took `took` on `node` may be acknowledged:
    /// whether it is where a failover would not lose it.
    ///
    /// A commit is on a replica before it returns unless the primary's
    /// semi-synchronous wait gave up ([`SEMI_SYNC_TIMEOUT`]); one that took
    /// about that long may be on no other node. That costs nothing while its
    /// node stays the primary, and no failover starts before the replica has
    /// heard nothing from the primary for [`REPLICA_NET_TIMEOUT`]. But a
    /// primary that hung longer (SIGSTOP, a stuck disk) and was replaced
    /// meanwhile finishes the commits it held once it runs again, on a node
    /// the monitor then keeps out of the cluster: acknowledged, they would be
    /// lost. So a write taking under half the semi-synchronous wait is
    /// acknowledged at once; one taking under the replica's timeout (less a
    /// second) while its node is still the primary; any other only once
    /// `seen` finds it on another node (looked for up to [`CONFIRM_WITHIN`]).
    pub async fn durable<F>(&self, node: &str, took: Duration, seen: F) -> bool
    where
        F: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, bool>,
    {
        if took < SEMI_SYNC_TIMEOUT / 2 {
            return true;
        }
        let no_failover_yet = REPLICA_NET_TIMEOUT.saturating_sub(Duration::from_secs(1));
        if took < no_failover_yet && self.primary_name() == Some(node) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + CONFIRM_WITHIN;
        loop {
            for other in self.nodes.iter().filter(|n| n.name != node) {
                let Ok(Ok(mut conn)) = tokio::time::timeout(PROBE_TIMEOUT, other.conn()).await
                else {
                    continue;
                };
                let look = tokio::time::timeout(PROBE_TIMEOUT, seen(&mut conn)).await;
                settle(conn, matches!(look, Ok(Ok(_))));
                if let Ok(Ok(true)) = look {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(DISCOVERY_INTERVAL).await;
        }
    }

    /// The name of the current primary, if any.
    pub fn primary_name(&self) -> Option<&str> {
        self.roles().primary.map(|i| self.nodes[i].name.as_str())
    }

    /// Closes every pool (at shutdown).
    pub async fn disconnect(&self) {
        for n in &self.nodes {
            let _ = n.pool.clone().disconnect().await;
        }
    }
}

/// Roles from probe results: exactly one writable node is the primary (two
/// would be a split brain: then none, and writes wait for the monitor). A
/// read-only node is a replica only if its heartbeat comes from that primary;
/// its lag is how much older its heartbeat is than the primary's.
fn roles_from(results: &[Option<NodeProbe>], names: &[&str]) -> Roles {
    let writable: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_ref().is_some_and(|r| !r.read_only))
        .map(|(i, _)| i)
        .collect();
    let primary = match writable.as_slice() {
        [one] => Some(*one),
        [] => None,
        _ => {
            tracing::error!(
                ?writable,
                "more than one writable database node: sending no writes"
            );
            None
        }
    };
    // The primary's heartbeat must be fresh for a replica's lag to mean anything.
    let primary_age = primary
        .and_then(|p| results[p].as_ref().and_then(|r| r.heartbeat_age_us))
        .filter(|age| *age < FRESH_HEARTBEAT_US);
    let replicas = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let r = r.as_ref()?;
            if !r.read_only {
                return None;
            }
            let from_primary =
                primary.is_some_and(|p| r.heartbeat_source.as_deref() == Some(names[p]));
            let lag = match (r.heartbeat_age_us, primary_age, from_primary) {
                (Some(a), Some(p), true) => Some(Duration::from_micros((a - p).max(0) as u64)),
                // No primary (it died, a failover is under way): the replica
                // has everything committed up to the last beat it applied, so
                // that beat's age bounds how far behind it is, and reads go on
                // within the bound.
                (Some(a), _, _) if primary.is_none() => {
                    Some(Duration::from_micros(a.max(0) as u64))
                }
                _ => None,
            };
            Some((i, lag))
        })
        .collect();
    Roles { primary, replicas }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(read_only: bool, age_ms: i64, source: &str) -> Option<NodeProbe> {
        Some(NodeProbe {
            read_only,
            heartbeat_age_us: Some(age_ms * 1000),
            heartbeat_source: Some(source.into()),
        })
    }

    #[test]
    fn one_writable_node_is_the_primary_and_lag_is_relative_to_it() {
        let r = roles_from(
            &[probe(false, 100, "a"), probe(true, 400, "a"), None],
            &["a", "b", "c"],
        );
        assert_eq!(r.primary, Some(0));
        assert_eq!(r.replicas, vec![(1, Some(Duration::from_millis(300)))]);
    }

    #[test]
    fn a_read_only_node_with_another_primary_s_heartbeat_has_no_known_lag() {
        let r = roles_from(&[probe(true, 50, "a"), probe(false, 100, "b")], &["a", "b"]);
        assert_eq!(r.primary, Some(1));
        assert_eq!(r.replicas, vec![(0, None)]);
    }

    #[test]
    fn reads_keep_going_to_replicas_while_no_primary_is_known() {
        // The primary died: it answers no probe, nobody is writable.
        let r = roles_from(
            &[None, probe(true, 300, "a"), probe(true, 5000, "a")],
            &["a", "b", "c"],
        );
        assert_eq!(r.primary, None);
        assert_eq!(
            r.replicas,
            vec![
                (1, Some(Duration::from_millis(300))),
                (2, Some(Duration::from_millis(5000)))
            ],
            "each replica's lag is bounded by its own heartbeat's age"
        );
    }

    #[test]
    fn two_writable_nodes_mean_no_primary() {
        let r = roles_from(&[probe(false, 1, "a"), probe(false, 1, "b")], &["a", "b"]);
        assert_eq!(r.primary, None);
    }
}
