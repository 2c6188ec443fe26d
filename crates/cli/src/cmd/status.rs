//! `webinfra status [--json]`: every component with its process and health.
//! Exits 0 when everything is healthy, 1 otherwise.

use crate::args::StackArgs;
use http::Method;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use webinfra_supervisor::components::{components, ComponentSpec};
use webinfra_supervisor::health::{probe, Health};
use webinfra_supervisor::{control, Role};

/// One line of the status table.
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub role: &'static str,
    pub host: String,
    pub address: String,
    pub port: u16,
    pub pid: Option<u32>,
    /// `running`, `exited`, `stopped`, `not started`, or `unknown` with no supervisor.
    pub process: String,
    pub exit: Option<String>,
    pub health: String,
    pub detail: String,
    /// The component's own `/healthz` answer (for a database: role, GTID, replication).
    pub info: Option<Value>,
}

/// Probes every component of `specs` and asks the supervisor about processes.
pub async fn gather(specs: &[ComponentSpec], state_dir: &Path) -> Vec<Row> {
    let processes = control::request(state_dir, Method::GET, "/status")
        .await
        .ok()
        .map(|(_, body)| body["components"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    let probes = specs
        .iter()
        .map(|s| probe(s.health, Duration::from_secs(2)));
    let mut healths = Vec::new();
    let handles: Vec<_> = probes.map(tokio::spawn).collect();
    for h in handles {
        healths.push(h.await.expect("probe task"));
    }
    specs
        .iter()
        .zip(healths)
        .map(|(spec, health)| {
            let proc_info = processes.iter().find(|p| p["name"] == spec.name.as_str());
            let health = own_process(spec, health, proc_info);
            Row {
                name: spec.name.clone(),
                role: spec.role.as_str(),
                host: spec.host.clone(),
                address: spec.address.ip().to_string(),
                port: spec.address.port(),
                pid: proc_info.and_then(|p| p["pid"].as_u64()).map(|p| p as u32),
                process: proc_info
                    .and_then(|p| p["state"].as_str())
                    .unwrap_or("unknown")
                    .to_string(),
                exit: proc_info.and_then(|p| p["exit"].as_str()).map(String::from),
                detail: describe(spec, &health),
                health: health.status.clone(),
                info: health.body,
            }
        })
        .collect()
}

/// The health of *this* stack's process: every `/healthz` names its pid,
/// and an answer from another process (another stack on the same address,
/// a stale one) is not this component being healthy. A component this
/// supervisor does not run (another host's; no supervisor) keeps what its
/// address answers, unverified.
fn own_process(spec: &ComponentSpec, health: Health, process: Option<&Value>) -> Health {
    let Some(process) = process else {
        return health;
    };
    let ours = process["pid"].as_u64();
    let answering = health.body.as_ref().and_then(|b| b["pid"].as_u64());
    let running = process["state"] == "running";
    let addr = spec.health;
    match (running, answering) {
        (true, Some(pid)) if Some(pid) == ours => health,
        (true, None) => health,
        (true, Some(other)) => Health {
            status: "foreign".into(),
            body: None,
            detail: Some(format!(
                "{addr} is answered by another process (pid {other}), not this stack's (pid {})",
                ours.map_or_else(|| "?".to_string(), |p| p.to_string())
            )),
        },
        (false, Some(other)) => Health {
            status: "down".into(),
            body: None,
            detail: Some(format!(
                "its process is {}; {addr} is answered by another process (pid {other})",
                process["state"].as_str().unwrap_or("?")
            )),
        },
        (false, None) => Health {
            status: "down".into(),
            body: None,
            detail: health.detail.or_else(|| {
                Some(format!(
                    "its process is {}",
                    process["state"].as_str().unwrap_or("?")
                ))
            }),
        },
    }
}

/// A short human description of what a component reports.
pub fn describe(spec: &ComponentSpec, health: &Health) -> String {
    let body = health.body.as_ref();
    let own = match (spec.role, body) {
        (Role::Database, Some(b)) => {
            let role = b["db_role"].as_str().unwrap_or("?");
            let gtid = b["gtid_current_pos"].as_str().unwrap_or("");
            let gtid = if gtid.is_empty() { "-" } else { gtid };
            match b.get("replication").filter(|r| !r.is_null()) {
                Some(r) => format!(
                    "{role} of {}, io={} sql={}, lag {}, gtid {gtid}",
                    r["source"].as_str().unwrap_or("?"),
                    r["io_running"].as_str().unwrap_or("?"),
                    r["sql_running"].as_str().unwrap_or("?"),
                    r["seconds_behind"]
                        .as_u64()
                        .map(|s| format!("{s}s"))
                        .unwrap_or_else(|| "?".into()),
                ),
                None => format!("{role}, gtid {gtid}"),
            }
        }
        (Role::DbMonitor, Some(b)) => {
            let mut text = format!(
                "primary {}, semi-sync {}",
                b["primary"].as_str().unwrap_or("none"),
                b["semi_sync_detail"].as_str().unwrap_or("?")
            );
            if let Some(f) = b.get("last_failover").filter(|f| !f.is_null()) {
                text.push_str(&format!(
                    ", last {} {} -> {} ({} ms)",
                    f["kind"].as_str().unwrap_or("?"),
                    f["from"].as_str().unwrap_or("?"),
                    f["to"].as_str().unwrap_or("?"),
                    f["duration_ms"]
                ));
            }
            text
        }
        (Role::LoadBalancer, Some(b)) => {
            let servers = b["servers"].as_array().cloned().unwrap_or_default();
            let up: Vec<&str> = servers
                .iter()
                .filter(|s| s["up"] == true)
                .filter_map(|s| s["name"].as_str())
                .collect();
            format!(
                "{}/{} servers up ({})",
                up.len(),
                servers.len(),
                up.join(", ")
            )
        }
        _ => String::new(),
    };
    match &health.detail {
        Some(d) if own.is_empty() => d.clone(),
        Some(d) => format!("{own}; {d}"),
        None => own,
    }
}

/// Prints rows as a table, each column as wide as its widest cell.
pub fn print_table(rows: &[Row]) {
    let header = [
        "COMPONENT",
        "ROLE",
        "ADDRESS",
        "PID",
        "PROCESS",
        "HEALTH",
        "DETAIL",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let process = match &r.exit {
                Some(exit) if r.process != "running" => format!("{} ({exit})", r.process),
                _ => r.process.clone(),
            };
            [
                r.name.clone(),
                r.role.to_string(),
                format!("{}:{}", r.address, r.port),
                r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                process,
                r.health.clone(),
                r.detail.clone(),
            ]
        })
        .collect();
    for line in table_lines(&header, &cells) {
        say!("{line}");
    }
}

/// Lines of a table: columns padded to their widest cell (in characters), the last one not.
fn table_lines<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> Vec<String> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$} ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    std::iter::once(line(header.to_vec()))
        .chain(
            rows.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        )
        .collect()
}

pub async fn status(stack: &StackArgs, json: bool) -> i32 {
    let topology = match super::load(&stack.topology) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let rows = gather(&components(&topology), &stack.state_dir).await;
    if json {
        let doc = serde_json::json!({
            "site": topology.site,
            "url": topology.site_url(),
            "https_url": topology.secure_url(),
            "components": rows,
        });
        say!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serialisable")
        );
    } else {
        print_table(&rows);
    }
    if rows.iter().all(|r| r.process == "unknown") {
        eprintln!(
            "webinfra: no stack is running from {}: nothing above is known to be its process",
            stack.state_dir.display()
        );
        return 1;
    }
    if rows.iter().all(|r| r.health == "ok") {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> ComponentSpec {
        ComponentSpec {
            name: "server-01/web".into(),
            role: Role::Web,
            host: "server-01".into(),
            address: "127.0.0.11:8000".parse().unwrap(),
            health: "127.0.0.11:8000".parse().unwrap(),
        }
    }

    fn answering(pid: u32) -> Health {
        Health {
            status: "ok".into(),
            body: Some(json!({"status": "ok", "pid": pid})),
            detail: None,
        }
    }

    #[test]
    fn the_status_table_stays_aligned_with_long_process_states() {
        let rows = [
            [
                "a".to_string(),
                "exited (killed by signal 9 (SIGKILL))".into(),
                "first".into(),
            ],
            [
                "server-01/web".to_string(),
                "running".into(),
                "second".into(),
            ],
        ];
        let lines = table_lines(&["NAME", "PROCESS", "DETAIL"], &rows);
        let column = |l: &str, what: &str| l.find(what).unwrap();
        assert_eq!(column(&lines[0], "DETAIL"), column(&lines[1], "first"));
        assert_eq!(column(&lines[1], "first"), column(&lines[2], "second"));
        assert_eq!(column(&lines[0], "PROCESS"), column(&lines[2], "running"));
    }

    #[test]
    fn health_is_that_of_this_stacks_own_process() {
        let running = json!({"name": "server-01/web", "pid": 5, "state": "running"});
        let exited = json!({"name": "server-01/web", "pid": 5, "state": "exited"});
        assert_eq!(
            own_process(&spec(), answering(5), Some(&running)).status,
            "ok"
        );
        let other = own_process(&spec(), answering(6), Some(&running));
        assert_eq!(other.status, "foreign");
        assert!(other.detail.unwrap().contains("pid 6"));
        let dead = own_process(&spec(), answering(6), Some(&exited));
        assert_eq!(dead.status, "down");
        // Not run by this supervisor (another host's): what answers, unverified.
        assert_eq!(own_process(&spec(), answering(6), None).status, "ok");
    }
}
