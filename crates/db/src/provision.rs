//! Users, grants and schemas, applied at every start (idempotently) over the
//! administrator's unix socket. Replication is not set up here: which node is
//! the primary is the database monitor's decision.
//!
//! Users are created on each node locally with `sql_log_bin=0`, so nothing of
//! it enters the binary log and replicas never replay it. Each user gets only
//! what its job needs, from only the addresses it connects from.

use crate::mariadb::Server;
use crate::NodeConfig;
use std::collections::BTreeSet;
use std::net::IpAddr;
use webinfra_topology::credentials::{APP_USER, MONITOR_USER, REPL_USER};

/// Applies users, grants and schemas.
pub async fn provision(server: &Server, config: &NodeConfig) -> anyhow::Result<()> {
    server.sql(&bootstrap_sql(config)).await?;
    Ok(())
}

/// webinfra's own schema: the monitor's heartbeat table lives there.
pub const META_SCHEMA: &str = "webinfra";

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
    let monitor_hosts = client_hosts(
        config
            .database
            .nodes
            .iter()
            .map(|n| n.sql.ip())
            .chain([config.database.monitor.ip()]),
    );
    let mut sql = String::from("SET SESSION sql_log_bin = 0;\n");
    // mariadb-install-db creates anonymous users; 10.11 cannot skip them.
    sql.push_str(
        "DELETE FROM mysql.global_priv WHERE User = '';\n\
         FLUSH PRIVILEGES;\n",
    );
    sql.push_str(&format!(
        "CREATE DATABASE IF NOT EXISTS `{schema}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
         CREATE DATABASE IF NOT EXISTS `{META_SCHEMA}`;\n"
    ));
    user_sql(
        &mut sql,
        APP_USER,
        &creds.app_password,
        &app_hosts,
        &[
            &format!("SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON `{schema}`.*"),
            &format!("SELECT ON `{META_SCHEMA}`.*"),
        ],
    );
    user_sql(
        &mut sql,
        REPL_USER,
        &creds.repl_password,
        &monitor_hosts,
        &["REPLICATION SLAVE ON *.*"],
    );
    user_sql(
        &mut sql,
        MONITOR_USER,
        &creds.monitor_password,
        &db_hosts,
        // The monitor runs replication: promotes, demotes, repoints.
        &[
            "SUPER, RELOAD, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, SLAVE MONITOR, BINLOG MONITOR, PROCESS ON *.*",
            &format!("SELECT, INSERT, UPDATE, DELETE, CREATE ON `{META_SCHEMA}`.*"),
        ],
    );
    sql
}
