//! `webinfra down`, `start` and `stop`: requests to a running supervisor.

use crate::args::StackArgs;
use http::Method;
use std::path::Path;
use std::time::{Duration, Instant};
use webinfra_supervisor::components::components;
use webinfra_supervisor::control;

pub async fn down(stack: &StackArgs) -> i32 {
    let state_dir = stack.state_dir.as_path();
    let pid = match control::request(state_dir, Method::GET, "/status").await {
        Ok((_, body)) => body["pid"].as_u64().map(|p| p as u32),
        Err(e) => {
            eprintln!("webinfra: {e:#}");
            strays(stack).await;
            return 1;
        }
    };
    if let Err(e) = control::request(state_dir, Method::POST, "/shutdown").await {
        return super::fail(e);
    }
    say!("stopping the stack in {} ...", state_dir.display());
    let Some(pid) = pid else { return 0 };
    let deadline = Instant::now() + Duration::from_secs(180);
    while webinfra_process::alive(pid) {
        if Instant::now() > deadline {
            eprintln!("webinfra: the supervisor (pid {pid}) did not stop within 180 s");
            return 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say!("stopped");
    0
}

/// With no stack running from the state dir, names what still answers on
/// the topology's addresses (another state dir's stack, or one whose state
/// dir was removed while it ran), with the pids its `/healthz` gives.
async fn strays(stack: &StackArgs) {
    let Ok(topology) = webinfra_topology::Topology::load(&stack.topology) else {
        return;
    };
    let rows = super::status::gather(&components(&topology), &stack.state_dir).await;
    let answering: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let pid = r.info.as_ref()?.get("pid")?.as_u64()?;
            Some(format!("{} (pid {pid})", r.name))
        })
        .collect();
    if !answering.is_empty() {
        eprintln!(
            "webinfra: yet processes of another stack answer on {}'s addresses: {}; \
             `webinfra down -s DIR` with its state dir stops them, else stop each by its pid",
            stack.topology.display(),
            answering.join(", ")
        );
    }
}

pub async fn start_stop(state_dir: &Path, verb: &str, name: &str) -> i32 {
    match control::request(state_dir, Method::POST, &format!("/{verb}/{name}")).await {
        Ok((200, body)) => {
            let names = |key: &str| -> Vec<String> {
                body[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (done, already) = (names(verb), names("already"));
            if !done.is_empty() {
                let did = if verb == "start" {
                    "started"
                } else {
                    "stopped"
                };
                say!("{did}: {}", done.join(", "));
            }
            for n in already {
                let state = if verb == "start" {
                    "running"
                } else {
                    "not running"
                };
                say!("{n} is already {state}");
            }
            0
        }
        Ok((_, body)) => {
            eprintln!(
                "webinfra: {}",
                body["error"].as_str().unwrap_or("request failed")
            );
            1
        }
        Err(e) => super::fail(e),
    }
}
