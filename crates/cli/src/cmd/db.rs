//! `webinfra db status|switchover|failover|rejoin`: the database monitor's
//! view and operations, over its HTTP API.

use crate::args::{DbCommand, StackArgs};
use http::Method;
use serde_json::Value;
use std::time::Duration;
use webinfra_proxy::probe::call;

pub async fn db(stack: &StackArgs, command: &DbCommand) -> i32 {
    let topology = match super::load(&stack.topology) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let Some(db) = topology.database else {
        eprintln!("webinfra: the topology has no [database]");
        return 2;
    };
    let (method, path, timeout) = match command {
        DbCommand::Status { .. } => (Method::GET, "/cluster".to_string(), 3),
        DbCommand::Switchover { to: Some(n) } => (Method::POST, format!("/switchover?to={n}"), 30),
        DbCommand::Switchover { to: None } => (Method::POST, "/switchover".to_string(), 30),
        DbCommand::Failover => (Method::POST, "/failover".to_string(), 30),
        DbCommand::Rejoin { node } => (Method::POST, format!("/rejoin/{node}"), 3),
    };
    let (code, body) = match call(db.monitor, method, &path, Duration::from_secs(timeout)).await {
        Ok((code, Some(body))) => (code, body),
        Ok((code, None)) => {
            eprintln!("webinfra: the database monitor answered {code} without JSON");
            return 1;
        }
        Err(e) => {
            eprintln!(
                "webinfra: cannot reach the database monitor at {}: {e}",
                db.monitor
            );
            return 1;
        }
    };
    if let Some(e) = body["error"].as_str() {
        eprintln!("webinfra: {e}");
        return 1;
    }
    match command {
        DbCommand::Status { json: true } => {
            say!("{}", serde_json::to_string_pretty(&body).expect("JSON"))
        }
        DbCommand::Status { json: false } => print_cluster(&body),
        DbCommand::Rejoin { node } => {
            say!("{node} may rejoin; the monitor retries within a second")
        }
        _ => say!(
            "{} {} -> {} in {} ms ({})",
            body["kind"].as_str().unwrap_or("?"),
            body["from"].as_str().unwrap_or("?"),
            body["to"].as_str().unwrap_or("?"),
            body["duration_ms"],
            body["reason"].as_str().unwrap_or("")
        ),
    }
    i32::from(!(200..300).contains(&code) || body["status"] == "down")
}

fn print_cluster(c: &Value) {
    say!(
        "cluster: {}{}",
        c["status"].as_str().unwrap_or("?"),
        c["detail"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    say!(
        "primary: {}   semi-sync: {}   primary changes: {}",
        c["primary"].as_str().unwrap_or("none"),
        if c["semi_sync"] == true {
            c["semi_sync_detail"].as_str().unwrap_or("on").to_string()
        } else {
            format!(
                "{}: acknowledged writes are at risk",
                c["semi_sync_detail"].as_str().unwrap_or("OFF (async)")
            )
        },
        c["changes"]
    );
    if let Some(f) = c.get("last_failover").filter(|f| !f.is_null()) {
        say!(
            "last change: {} {} -> {} in {} ms: {}",
            f["kind"].as_str().unwrap_or("?"),
            f["from"].as_str().unwrap_or("?"),
            f["to"].as_str().unwrap_or("?"),
            f["duration_ms"],
            f["reason"].as_str().unwrap_or("")
        );
    }
    say!();
    say!(
        "{:<10} {:<22} {:<10} {:<28} {:<28} {:<8} REPLICATION",
        "NODE",
        "ADDRESS",
        "ROLE",
        "GTID CURRENT",
        "GTID RECEIVED",
        "LAG"
    );
    for n in c["nodes"].as_array().into_iter().flatten() {
        let p = &n["probe"];
        let slave = &p["slave"];
        let repl = if slave.is_null() {
            n["error"].as_str().unwrap_or("-").to_string()
        } else {
            format!(
                "from {}:{} io={} sql={}{}",
                slave["master_host"].as_str().unwrap_or("?"),
                slave["master_port"],
                slave["io_running"].as_str().unwrap_or("?"),
                slave["sql_running"].as_str().unwrap_or("?"),
                slave["last_error"]
                    .as_str()
                    .filter(|e| !e.is_empty())
                    .map(|e| format!(" error: {e}"))
                    .unwrap_or_default()
            )
        };
        say!(
            "{:<10} {:<22} {:<10} {:<28} {:<28} {:<8} {}",
            n["name"].as_str().unwrap_or("?"),
            n["address"].as_str().unwrap_or("?"),
            n["role"].as_str().unwrap_or("?"),
            p["gtid_current_pos"].as_str().unwrap_or("-"),
            slave["gtid_io_pos"].as_str().unwrap_or("-"),
            slave["seconds_behind"]
                .as_u64()
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into()),
            repl
        );
    }
}
