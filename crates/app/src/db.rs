//! Database routing: writes to the primary, reads to a replica, and to the
//! primary when no replica answers. A node that failed is skipped for a short
//! while so a dead replica costs one failed attempt, not one per request.

use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use webinfra_topology::credentials::APP_USER;
use webinfra_topology::{Credentials, Database};

/// How long to wait for a connection from one node.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a failed node is skipped for reads.
const BACKOFF: Duration = Duration::from_secs(2);

/// Why a database call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// No connection could be had: nothing was sent, nothing was written.
    Unreachable(String),
    /// The connection failed or the server refused after the query was sent:
    /// a write may or may not have been committed.
    Failed(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unreachable(m) | DbError::Failed(m) => f.write_str(m),
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
    failed_until: Mutex<Option<Instant>>,
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
            .pool_opts(
                PoolOpts::default().with_constraints(PoolConstraints::new(0, 64).expect("0 <= 64")),
            );
        Node {
            name: name.to_string(),
            pool: Pool::new(Opts::from(opts)),
            failed_until: Mutex::new(None),
        }
    }

    fn backing_off(&self) -> bool {
        self.failed_until
            .lock()
            .expect("node lock")
            .is_some_and(|t| Instant::now() < t)
    }

    fn mark(&self, ok: bool) {
        *self.failed_until.lock().expect("node lock") = (!ok).then(|| Instant::now() + BACKOFF);
    }

    async fn run<T, F>(&self, f: &F) -> Result<T, DbError>
    where
        F: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.pool.get_conn()).await;
        let mut conn = match conn {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(DbError::Unreachable(format!("{}: {e}", self.name))),
            Err(_) => {
                return Err(DbError::Unreachable(format!(
                    "{}: no connection within {CONNECT_TIMEOUT:?}",
                    self.name
                )))
            }
        };
        f(&mut conn)
            .await
            .map_err(|e| DbError::Failed(format!("{}: {e}", self.name)))
    }
}

/// The primary and replicas, with routing.
pub struct Db {
    /// Takes every write.
    pub primary: Node,
    /// Serve reads.
    pub replicas: Vec<Node>,
}

impl Db {
    /// Pools for every node (connections are made lazily).
    pub fn new(database: &Database, credentials: &Credentials) -> Db {
        let node = |n: &webinfra_topology::DbNode| {
            Node::new(&n.name, n.sql, &database.schema, &credentials.app_password)
        };
        Db {
            primary: node(database.primary()),
            replicas: database.replicas().iter().map(node).collect(),
        }
    }

    /// Runs `f` on the primary. Returns the result and the node's name.
    pub async fn write<T, F>(&self, f: F) -> Result<(T, &str), DbError>
    where
        F: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let out = self.primary.run(&f).await;
        self.primary.mark(out.is_ok());
        out.map(|v| (v, self.primary.name.as_str()))
    }

    /// Runs read-only `f` on the first replica that answers, else on the primary.
    pub async fn read<T, F>(&self, f: F) -> Result<(T, &str), DbError>
    where
        F: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let mut errors = Vec::new();
        for replica in self.replicas.iter().filter(|r| !r.backing_off()) {
            match replica.run(&f).await {
                Ok(v) => {
                    replica.mark(true);
                    return Ok((v, replica.name.as_str()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "replica read failed; trying the next node");
                    replica.mark(false);
                    errors.push(e.to_string());
                }
            }
        }
        match self.primary.run(&f).await {
            Ok(v) => Ok((v, self.primary.name.as_str())),
            Err(e) => {
                errors.push(e.to_string());
                Err(DbError::Unreachable(errors.join("; ")))
            }
        }
    }

    /// Closes every pool (at shutdown).
    pub async fn disconnect(&self) {
        let _ = self.primary.pool.clone().disconnect().await;
        for r in &self.replicas {
            let _ = r.pool.clone().disconnect().await;
        }
    }
}
