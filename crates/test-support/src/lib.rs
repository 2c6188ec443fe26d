//! Test support: whole webinfra stacks as real processes on loopback, and
//! small real clients (HTTP over a TCP socket, the `mariadb` CLI), and a raw
//! HTTP server for exact bytes ([`raw_server`]).
//!
//! A [`Stack`] takes its own 127.X.Y.0/24 block so stacks never collide,
//! runs `webinfra up` in its own process group, and kills that group when
//! dropped, even on panic. `up` also stops everything when its standard
//! input closes, so a stack shared by a whole test binary goes away when the
//! binary exits.

pub mod http;
pub mod load;
pub mod mariadb;
pub mod raw_server;
mod stack;

pub use stack::{topology_toml, topology_with_replicas, Stack};

use std::time::{Duration, Instant};

/// `kill -9 PID`, by pid (never by name); false if there was no such process.
pub fn kill9(pid: u32) -> bool {
    webinfra_process::signal(pid, webinfra_process::SIGKILL)
}

/// `kill -HUP PID` (reload), by pid.
pub fn hangup(pid: u32) -> bool {
    webinfra_process::signal(pid, webinfra_process::SIGHUP)
}

/// `kill -STOP PID`, by pid: the process hangs without dying (a gray
/// failure) until the guard is dropped (`kill -CONT`), even on panic.
pub fn freeze(pid: u32) -> Frozen {
    assert!(
        webinfra_process::signal(pid, webinfra_process::SIGSTOP),
        "kill -STOP {pid}"
    );
    Frozen(pid)
}

/// A process stopped by [`freeze`], continued when dropped.
pub struct Frozen(u32);

impl Drop for Frozen {
    fn drop(&mut self) {
        webinfra_process::signal(self.0, webinfra_process::SIGCONT);
    }
}

/// A child process killed (SIGKILL, by pid) and reaped when dropped, even on panic.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 50 ms until it returns Some, or panics after `deadline` naming `what`.
pub fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `webinfra run load-balancer -t FILE -s STATE` started by `command` (the
/// `webinfra` binary, or a wrapper such as `taskset` with its arguments),
/// returned once `site` answers a `GET /` with 200.
pub fn run_load_balancer(
    mut command: std::process::Command,
    file: &std::path::Path,
    state: &std::path::Path,
    site: std::net::SocketAddr,
) -> KillOnDrop {
    let child = command
        .args(["run", "load-balancer", "-t"])
        .arg(file)
        .arg("-s")
        .arg(state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the load balancer: {e}"));
    let lb = KillOnDrop(child);
    poll("the load balancer", Duration::from_secs(20), || {
        http::get(site, "/").ok().filter(|r| r.status == 200)
    });
    lb
}
