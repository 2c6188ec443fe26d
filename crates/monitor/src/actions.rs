//! The SQL the monitor runs to change roles. Each is idempotent.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use std::net::SocketAddr;
use webinfra_topology::credentials::REPL_USER;

/// Makes a node the writable primary: replication off and forgotten, read-only off.
pub async fn promote(conn: &mut Conn) -> mysql_async::Result<()> {
    conn.query_drop("STOP SLAVE").await?;
    conn.query_drop("RESET SLAVE ALL").await?;
    conn.query_drop("SET GLOBAL read_only = OFF").await
}

/// Makes a node read-only (fencing, or the first step of a switchover).
pub async fn fence(conn: &mut Conn) -> mysql_async::Result<()> {
    conn.query_drop("SET GLOBAL read_only = ON").await
}

/// Waits until a replica has applied `gtid`; false on timeout.
pub async fn wait_applied(conn: &mut Conn, gtid: &str, seconds: f64) -> mysql_async::Result<bool> {
    if gtid.trim().is_empty() {
        return Ok(true);
    }
    let r: Option<Option<i64>> = conn
        .exec_first("SELECT MASTER_GTID_WAIT(?, ?)", (gtid, seconds))
        .await?;
    Ok(r.flatten() == Some(0))
}

/// Points a node at `primary` with GTID. `from_own_binlog` is for a node that
/// was not a replica (a former primary, or a fresh node): it continues from
/// what its own binary log holds instead of replaying from the start.
pub async fn replicate_from(
    conn: &mut Conn,
    primary: SocketAddr,
    password: &str,
    from_own_binlog: bool,
) -> mysql_async::Result<()> {
    conn.query_drop("STOP SLAVE").await?;
    if from_own_binlog {
        conn.query_drop("SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos")
            .await?;
    }
    conn.query_drop(format!(
        "CHANGE MASTER TO MASTER_HOST = '{}', MASTER_PORT = {}, MASTER_USER = '{REPL_USER}', \
         MASTER_PASSWORD = '{password}', MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
        primary.ip(),
        primary.port()
    ))
    .await?;
    conn.query_drop("START SLAVE").await
}

/// Stops replication on a node kept out of the cluster.
pub async fn stop_replication(conn: &mut Conn) -> mysql_async::Result<()> {
    conn.query_drop("STOP SLAVE").await
}

/// Writes the heartbeat the application servers measure replica lag with.
/// It names the primary that wrote it: a read-only node whose heartbeat
/// comes from another (former) primary is not replicating from this one.
pub async fn heartbeat(conn: &mut Conn, primary: &str) -> mysql_async::Result<()> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS webinfra.heartbeat (\
           id TINYINT UNSIGNED NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL, \
           source VARCHAR(64) NOT NULL DEFAULT '') ENGINE = InnoDB",
    )
    .await?;
    conn.exec_drop(
        "REPLACE INTO webinfra.heartbeat (id, ts, source) VALUES (1, UTC_TIMESTAMP(6), ?)",
        (primary,),
    )
    .await
}
