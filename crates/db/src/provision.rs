//! Users, grants, the application schema and replication, applied at every
//! start (idempotently) over the administrator's unix socket.
//!
//! Users are created on each node locally with `sql_log_bin=0`, so nothing of
//! it enters the binary log and replicas never replay it. Each user gets only
//! what its job needs, from only the addresses it connects from.

use crate::mariadb::Server;
use crate::NodeConfig;
use std::collections::BTreeSet;
use std::net::IpAddr;
use webinfra_topology::credentials::{APP_USER, MONITOR_USER, REPL_USER};
use webinfra_topology::DbRole;

/// Applies users, grants, schema and (on a replica) replication.
pub async fn provision(server: &Server, config: &NodeConfig) -> anyhow::Result<()> {
    server.sql(&bootstrap_sql(config)).await?;
    if config.node.role == DbRole::Replica {
        server.sql(&replication_sql(config)).await?;
    }
    Ok(())
}

/// Client addresses MariaDB will see for connections from `hosts`. On
/// loopback the kernel picks 127.0.0.1 as the source whatever the target, so
/// it is allowed too when any host is a loopback address.
fn client_hosts(hosts: impl IntoIterator<Item = IpAddr>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for ip in hosts {
        if ip.is_loopback() {
            out.insert("127.0.0.1".to_string());
        }
        out.insert(ip.to_string());
    }
    out
}

fn user_sql(
    sql: &mut String,
    user: &str,
    password: &str,
    hosts: &BTreeSet<String>,
    grants: &[&str],
) {
    for host in hosts {
        sql.push_str(&format!(
            "CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{password}';\n\
             ALTER USER '{user}'@'{host}' IDENTIFIED BY '{password}';\n"
        ));
        for grant in grants {
            sql.push_str(&format!("GRANT {grant} TO '{user}'@'{host}';\n"));
        }
    }
}

/// The SQL that makes a fresh or existing node match the topology.
pub fn bootstrap_sql(config: &NodeConfig) -> String {
    let schema = &config.database.schema;
    let creds = &config.credentials;
    let db_hosts = client_hosts(config.database.nodes.iter().map(|n| n.sql.ip()));
    let app_hosts = client_hosts(config.app_hosts.iter().copied());
    let mut sql = String::from("SET SESSION sql_log_bin = 0;\n");
    // mariadb-install-db creates anonymous users; 10.11 cannot skip them.
    sql.push_str(
        "DELETE FROM mysql.global_priv WHERE User = '';\n\
         FLUSH PRIVILEGES;\n",
    );
    sql.push_str(&format!(
        "CREATE DATABASE IF NOT EXISTS `{schema}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
    ));
    user_sql(
        &mut sql,
        APP_USER,
        &creds.app_password,
        &app_hosts,
        &[&format!(
            "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON `{schema}`.*"
        )],
    );
    user_sql(
        &mut sql,
        REPL_USER,
        &creds.repl_password,
        &db_hosts,
        &["REPLICATION SLAVE ON *.*"],
    );
    user_sql(
        &mut sql,
        MONITOR_USER,
        &creds.monitor_password,
        &db_hosts,
        &["SLAVE MONITOR, BINLOG MONITOR, PROCESS ON *.*"],
    );
    sql
}

/// Points a replica at the primary with GTID, keeping its own position.
pub fn replication_sql(config: &NodeConfig) -> String {
    let primary = config.database.primary();
    format!(
        "STOP SLAVE;\n\
         CHANGE MASTER TO MASTER_HOST = '{host}', MASTER_PORT = {port}, \
         MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{password}', \
         MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1;\n\
         START SLAVE;\n",
        host = primary.sql.ip(),
        port = primary.sql.port(),
        password = config.credentials.repl_password,
    )
}
