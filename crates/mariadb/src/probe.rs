//! What one MariaDB node is doing, read through the monitoring user: the
//! database supervisor reports it on `/healthz`, the monitor decides on it.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use serde::Serialize;

/// `SHOW SLAVE STATUS`, the parts failover decisions need.
#[derive(Debug, Clone, Serialize)]
pub struct SlaveStatus {
    /// `Master_Host`.
    pub master_host: String,
    /// `Master_Port`.
    pub master_port: u16,
    /// `Slave_IO_Running`: Yes, No, Connecting.
    pub io_running: String,
    /// `Slave_SQL_Running`: Yes, No.
    pub sql_running: String,
    /// `Gtid_IO_Pos`: what it has received.
    pub gtid_io_pos: String,
    /// `Last_IO_Errno`: 1236 means the primary lacks what this node has.
    pub last_io_errno: u32,
    /// The last IO or SQL error.
    pub last_error: String,
    /// `Seconds_Behind_Master`.
    pub seconds_behind: Option<u64>,
}

/// One probe of one node.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// `@@read_only`.
    pub read_only: bool,
    /// `@@gtid_current_pos`.
    pub gtid_current_pos: String,
    /// `@@gtid_binlog_pos`.
    pub gtid_binlog_pos: String,
    /// Replication, when configured.
    pub slave: Option<SlaveStatus>,
    /// `Rpl_semi_sync_master_status` (meaningful on the primary). MariaDB
    /// leaves it ON while no replica is attached: see [`Probe::semi_sync_waits`].
    pub semi_sync_active: bool,
    /// `Rpl_semi_sync_master_clients`: replicas attached that acknowledge.
    pub semi_sync_clients: u64,
    /// `Rpl_semi_sync_master_yes_tx`: commits a replica acknowledged.
    pub semi_sync_yes_tx: u64,
    /// `Rpl_semi_sync_master_no_tx`: commits acknowledged to the client with no replica's.
    pub semi_sync_no_tx: u64,
    /// `Uptime`: seconds since mariadbd started (it drops after a restart).
    pub uptime_s: u64,
}

impl Probe {
    /// Whether this node's commits wait for a replica's acknowledgement:
    /// semi-sync on *and* at least one replica attached to acknowledge.
    pub fn semi_sync_waits(&self) -> bool {
        self.semi_sync_active && self.semi_sync_clients > 0
    }

    /// The semi-sync state in words, as MariaDB reports it (`status` and `db status` print it).
    pub fn semi_sync_words(&self) -> String {
        let counts = format!(
            "{} commits acknowledged by a replica, {} without",
            self.semi_sync_yes_tx, self.semi_sync_no_tx
        );
        match (self.semi_sync_waits(), self.semi_sync_clients) {
            (true, n) => format!("on ({n} replica(s) acknowledging; {counts})"),
            (false, 0) => format!("OFF (async: no replica acknowledges; {counts})"),
            (false, n) => format!("OFF (async: {n} replica(s) attached but timed out; {counts})"),
        }
    }
}

/// Reads a node's state.
pub async fn probe(conn: &mut Conn) -> mysql_async::Result<Probe> {
    let (read_only, gtid_current_pos, gtid_binlog_pos): (bool, String, String) = conn
        .query_first("SELECT @@read_only, @@gtid_current_pos, @@gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    let row: Option<Row> = conn.query_first("SHOW SLAVE STATUS").await?;
    let slave = row.map(|row| {
        let text = |name: &str| -> String {
            row.get_opt::<Option<String>, _>(name)
                .and_then(|r| r.ok())
                .flatten()
                .unwrap_or_default()
        };
        let io_error = text("Last_IO_Error");
        SlaveStatus {
            master_host: text("Master_Host"),
            master_port: text("Master_Port").parse().unwrap_or(0),
            io_running: text("Slave_IO_Running"),
            sql_running: text("Slave_SQL_Running"),
            gtid_io_pos: text("Gtid_IO_Pos"),
            last_io_errno: text("Last_IO_Errno").parse().unwrap_or(0),
            last_error: if io_error.is_empty() {
                text("Last_SQL_Error")
            } else {
                io_error
            },
            seconds_behind: text("Seconds_Behind_Master").parse().ok(),
        }
    });
    let status: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN \
             ('Rpl_semi_sync_master_status', 'Rpl_semi_sync_master_clients', \
             'Rpl_semi_sync_master_yes_tx', 'Rpl_semi_sync_master_no_tx', 'Uptime')",
        )
        .await?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Ok(Probe {
        read_only,
        gtid_current_pos,
        gtid_binlog_pos,
        slave,
        semi_sync_active: get("Rpl_semi_sync_master_status").eq_ignore_ascii_case("ON"),
        semi_sync_clients: get("Rpl_semi_sync_master_clients").parse().unwrap_or(0),
        semi_sync_yes_tx: get("Rpl_semi_sync_master_yes_tx").parse().unwrap_or(0),
        semi_sync_no_tx: get("Rpl_semi_sync_master_no_tx").parse().unwrap_or(0),
        uptime_s: get("Uptime").parse().unwrap_or(0),
    })
}
