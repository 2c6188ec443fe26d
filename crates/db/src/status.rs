//! What a database node is doing, read through the monitoring user: role,
//! read-only flag, GTID positions and replication threads.

use crate::NodeConfig;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use webinfra_topology::credentials::MONITOR_USER;
use webinfra_topology::DbRole;

/// Replication state of a replica (MariaDB's `SHOW SLAVE STATUS`).
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    /// The primary it replicates from.
    pub source: String,
    /// `Slave_IO_Running`: Yes, No or Connecting.
    pub io_running: String,
    /// `Slave_SQL_Running`: Yes or No.
    pub sql_running: String,
    /// `Seconds_Behind_Master`; None while a thread is stopped.
    pub seconds_behind: Option<u64>,
    /// The GTID position received from the primary.
    pub gtid_io_pos: String,
    /// The last IO or SQL thread error, empty when none.
    pub last_error: String,
}

/// One node's status as `/healthz` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// `ok`, `starting`, `degraded` or `down`.
    pub status: String,
    /// Always `database`.
    pub role: &'static str,
    /// The node's name.
    pub node: String,
    /// What the node is now: `primary` (writable), `replica` (replicating) or
    /// `read-only` (waiting for the monitor); None while unknown.
    pub db_role: Option<&'static str>,
    /// The role the topology file gives it.
    pub configured_role: &'static str,
    /// MariaDB's SQL address.
    pub address: String,
    /// `@@read_only`.
    pub read_only: Option<bool>,
    /// `@@gtid_current_pos`.
    pub gtid_current_pos: Option<String>,
    /// Replication threads, on a replica.
    pub replication: Option<Replication>,
    /// Why the status is not `ok`.
    pub detail: Option<String>,
}

/// Queries the node through the monitoring user.
pub struct Monitor {
    pool: Pool,
    node: String,
    db_role: DbRole,
    address: String,
    provisioned: AtomicBool,
}

impl Monitor {
    /// A monitor for `config`'s node; connects lazily.
    pub fn new(config: &NodeConfig) -> Monitor {
        let opts = OptsBuilder::default()
            .ip_or_hostname(config.node.sql.ip().to_string())
            .tcp_port(config.node.sql.port())
            .user(Some(MONITOR_USER))
            .pass(Some(config.credentials.monitor_password.clone()))
            .prefer_socket(false)
            .pool_opts(
                PoolOpts::default().with_constraints(PoolConstraints::new(0, 2).expect("0 <= 2")),
            );
        Monitor {
            pool: Pool::new(Opts::from(opts)),
            node: config.node.name.clone(),
            db_role: config.node.role,
            address: config.node.sql.to_string(),
            provisioned: AtomicBool::new(false),
        }
    }

    /// Called once users and replication are in place.
    pub fn set_provisioned(&self) {
        self.provisioned.store(true, Ordering::Release);
    }

    /// The node's current status; never fails (failures are the status).
    pub async fn status(&self) -> NodeStatus {
        let mut s = NodeStatus {
            status: "starting".into(),
            role: "database",
            node: self.node.clone(),
            db_role: None,
            configured_role: self.db_role.as_str(),
            address: self.address.clone(),
            read_only: None,
            gtid_current_pos: None,
            replication: None,
            detail: None,
        };
        if !self.provisioned.load(Ordering::Acquire) {
            s.detail = Some("mariadbd is starting".into());
            return s;
        }
        match tokio::time::timeout(Duration::from_secs(2), self.query(&mut s)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                s.status = "down".into();
                s.detail = Some(e.to_string());
            }
            Err(_) => {
                s.status = "down".into();
                s.detail = Some("no answer within 2 s".into());
            }
        }
        s
    }

    async fn query(&self, s: &mut NodeStatus) -> mysql_async::Result<()> {
        let mut conn = self.pool.get_conn().await?;
        let p = crate::probe::probe(&mut conn).await?;
        let read_only = p.read_only;
        s.read_only = Some(read_only);
        s.gtid_current_pos = Some(p.gtid_current_pos);
        s.replication = p.slave.map(|r| Replication {
            source: format!("{}:{}", r.master_host, r.master_port),
            io_running: r.io_running,
            sql_running: r.sql_running,
            seconds_behind: r.seconds_behind,
            gtid_io_pos: r.gtid_io_pos,
            last_error: r.last_error,
        });
        s.db_role = Some(match (&s.replication, read_only) {
            (_, false) => "primary",
            (Some(_), true) => "replica",
            (None, true) => "read-only",
        });
        s.status = "ok".into();
        if let Some(r) = s.replication.as_ref().filter(|r| !r.last_error.is_empty()) {
            s.detail = Some(format!("replication error: {}", r.last_error));
        }
        Ok(())
    }
}
