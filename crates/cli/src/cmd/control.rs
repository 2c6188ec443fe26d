//! `webinfra down`, `start` and `stop`: requests to a running supervisor.

use http::Method;
use std::path::Path;
use std::time::{Duration, Instant};
use webinfra_supervisor::control;

pub async fn down(state_dir: &Path) -> i32 {
    let pid = match control::request(state_dir, Method::GET, "/status").await {
        Ok((_, body)) => body["pid"].as_u64().map(|p| p as u32),
        Err(e) => {
            eprintln!("webinfra: {e:#}");
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

pub async fn start_stop(state_dir: &Path, verb: &str, name: &str) -> i32 {
    match control::request(state_dir, Method::POST, &format!("/{verb}/{name}")).await {
        Ok((200, body)) => {
            let names: Vec<String> = body[verb]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            say!("{verb}: {}", names.join(", "));
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
