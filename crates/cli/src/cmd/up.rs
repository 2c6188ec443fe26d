//! `webinfra up`: start the stack, show progress until every component is
//! healthy, then (in the foreground) run until Ctrl-C / SIGTERM and stop it
//! all in order; with `--detach`, hand the stack to a background supervisor.

use super::status::{gather, print_table, Row};
use crate::args::StackArgs;
use anyhow::Context;
use http::Method;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;
use webinfra_supervisor::components::{components, ComponentSpec};
use webinfra_supervisor::{control, Role, Supervisor};
use webinfra_topology::{Credentials, Topology};

/// How long the whole stack may take to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// How `up` runs.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Start, wait for health, run until a signal, stop.
    Foreground {
        /// Also stop when standard input closes.
        stdin_eof: bool,
    },
    /// Start a background supervisor, wait for health, return.
    Detach,
    /// The background supervisor itself: start and supervise, no health wait.
    Background,
}

pub async fn up(stack: &StackArgs, mode: Mode, hosts: &[String]) -> i32 {
    let topology = match super::load(&stack.topology) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut specs = components(&topology);
    if !hosts.is_empty() {
        if let Some(bad) = hosts.iter().find(|h| topology.host(h).is_none()) {
            eprintln!(
                "webinfra: no host named `{bad}` in {}",
                stack.topology.display()
            );
            return 2;
        }
        specs.retain(|s| hosts.contains(&s.host));
    }
    if specs.iter().any(|s| s.role == Role::Database) {
        if let Err(e) = webinfra_db::mariadb::Binaries::locate() {
            return super::fail(e);
        }
    }
    let paths = match prepare(stack) {
        Ok(p) => p,
        Err(e) => return super::fail(e),
    };
    if control::request(&paths.state_dir, Method::GET, "/status")
        .await
        .is_ok()
    {
        eprintln!(
            "webinfra: a stack is already running from {} (`webinfra down --state-dir {}` stops it)",
            paths.state_dir.display(),
            stack.state_dir.display()
        );
        return 1;
    }
    if let Err(e) = remember_topology(&paths) {
        return super::fail(e);
    }
    say!(
        "starting {} from {} (state in {})",
        topology.site,
        stack.topology.display(),
        paths.state_dir.display()
    );
    match mode {
        Mode::Detach => detached(&topology, &specs, &paths, stack, hosts).await,
        Mode::Foreground { stdin_eof } => {
            foreground(&topology, specs, &paths, stdin_eof, true).await
        }
        Mode::Background => foreground(&topology, specs, &paths, false, false).await,
    }
}

struct Paths {
    topology: PathBuf,
    state_dir: PathBuf,
}

fn prepare(stack: &StackArgs) -> anyhow::Result<Paths> {
    std::fs::create_dir_all(&stack.state_dir)
        .with_context(|| format!("creating {}", stack.state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&stack.state_dir)?;
    Credentials::load_or_create(&state_dir).context("creating the database credentials")?;
    Ok(Paths {
        topology: std::fs::canonicalize(&stack.topology)?,
        state_dir,
    })
}

/// `status`, `lb`, `reload`, ... given only `-s` find the topology here.
fn remember_topology(paths: &Paths) -> anyhow::Result<()> {
    let remembered = paths.state_dir.join(crate::args::REMEMBERED_TOPOLOGY);
    std::fs::write(&remembered, format!("{}\n", paths.topology.display()))
        .with_context(|| format!("writing {}", remembered.display()))
}

/// Runs the supervisor in this process until stopped. With `wait`, shows
/// progress until healthy and gives up (stopping everything) if a component
/// dies or the deadline passes; without, the caller does that.
async fn foreground(
    topology: &Topology,
    specs: Vec<ComponentSpec>,
    paths: &Paths,
    stdin_eof: bool,
    wait: bool,
) -> i32 {
    let sock = control::socket_path(&paths.state_dir);
    let _ = std::fs::remove_file(&sock);
    let listener = match tokio::net::UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => return super::fail(anyhow::anyhow!("cannot create {}: {e}", sock.display())),
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return super::fail(e.into()),
    };
    let sup = Supervisor::new(
        exe,
        paths.topology.clone(),
        paths.state_dir.clone(),
        specs.clone(),
    );
    let stop = Arc::new(Notify::new());
    tokio::spawn(control::serve(listener, sup.clone(), stop.clone()));
    // `kill -USR1 $(cat supervisor.pid)` after a log rotation (logrotate's postrotate).
    let pid_file = paths.state_dir.join("supervisor.pid");
    let _ = std::fs::write(&pid_file, format!("{}\n", std::process::id()));
    // In the background, this process writes supervisor.log itself.
    let own_log = (!wait).then(|| paths.state_dir.join("supervisor.log"));
    if stdin_eof {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            stop.notify_one();
        });
    }
    let code = match sup.start_all() {
        Err(e) => super::fail(e),
        Ok(()) if !wait => {
            let stopped = stop.notified();
            tokio::pin!(stopped);
            wait_for_stop(&mut stopped, &sup, own_log.as_deref()).await;
            0
        }
        Ok(()) => {
            let stopped = stop.notified();
            tokio::pin!(stopped);
            tokio::select! {
                ready = wait_ready(&specs, &paths.state_dir) => match ready {
                    Ok(rows) => {
                        announce(topology, &rows, None);
                        say!("press Ctrl-C to stop");
                        wait_for_stop(&mut stopped, &sup, own_log.as_deref()).await;
                        0
                    }
                    Err(e) => {
                        eprintln!("webinfra: the stack did not come up: {e}");
                        1
                    }
                },
                _ = wait_for_stop(&mut stopped, &sup, own_log.as_deref()) => 0,
            }
        }
    };
    say!("stopping ...");
    sup.stop_all().await;
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&pid_file);
    say!("stopped");
    code
}

/// Resolves on SIGINT, SIGTERM or a control-socket shutdown; SIGHUP is passed
/// on to the load balancers (a reload, like `webinfra reload`); SIGUSR1
/// reopens every log (each component's, and `own_log` when this process
/// writes one), as nginx does, for log rotation.
async fn wait_for_stop(
    stopped: &mut std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    sup: &webinfra_supervisor::Supervisor,
    own_log: Option<&Path>,
) {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                let sent = sup.signal_role(webinfra_supervisor::Role::LoadBalancer, webinfra_process::SIGHUP);
                tracing::info!(to = ?sent, "SIGHUP: the load balancers reload");
            }
            _ = usr1.recv() => {
                if let Some(path) = own_log {
                    if let Err(e) = webinfra_process::reopen_stdio(path) {
                        tracing::error!(file = %path.display(), error = %e, "cannot reopen the log");
                    }
                }
                let sent = sup.reopen_logs();
                tracing::info!(to = ?sent, "SIGUSR1: logs reopened");
            }
            _ = stopped.as_mut() => return,
        }
    }
}

async fn detached(
    topology: &Topology,
    specs: &[ComponentSpec],
    paths: &Paths,
    stack: &StackArgs,
    hosts: &[String],
) -> i32 {
    let log_path = paths.state_dir.join("supervisor.log");
    let spawn = || -> anyhow::Result<tokio::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.arg("up")
            .arg("--background")
            .arg("--topology")
            .arg(&paths.topology)
            .arg("--state-dir")
            .arg(&paths.state_dir);
        for h in hosts {
            cmd.arg("--host").arg(h);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        Ok(cmd.spawn()?)
    };
    let mut child = match spawn() {
        Ok(c) => c,
        Err(e) => return super::fail(e.context("starting the background supervisor")),
    };
    tokio::select! {
        ready = wait_ready(specs, &paths.state_dir) => match ready {
            Ok(rows) => {
                announce(topology, &rows, Some(&stack.state_dir));
                0
            }
            Err(e) => {
                eprintln!("webinfra: the stack did not come up: {e}");
                let _ = control::request(&paths.state_dir, Method::POST, "/shutdown").await;
                let _ = tokio::time::timeout(Duration::from_secs(120), child.wait()).await;
                1
            }
        },
        exit = child.wait() => {
            eprintln!(
                "webinfra: the background supervisor exited ({}):\n{}",
                exit.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                tail(&log_path, 20)
            );
            1
        }
    }
}

/// Polls until every component is healthy, printing each as it becomes so.
/// Fails at once when a component's process exits, naming it and its log.
async fn wait_ready(specs: &[ComponentSpec], state_dir: &Path) -> Result<Vec<Row>, String> {
    let start = Instant::now();
    let mut shown: HashSet<String> = HashSet::new();
    loop {
        let rows = gather(specs, state_dir).await;
        for r in &rows {
            if ready(r) && shown.insert(r.name.clone()) {
                say!(
                    "  ok  {:<24} {:<22} {} ({:.1}s)",
                    r.name,
                    format!("{}:{}", r.address, r.port),
                    r.detail,
                    start.elapsed().as_secs_f64()
                );
            }
        }
        if let Some(dead) = rows.iter().find(|r| r.process == "exited") {
            let spec = specs
                .iter()
                .find(|s| s.name == dead.name)
                .expect("same specs");
            let log =
                state_dir
                    .join("logs")
                    .join(format!("{}-{}.log", spec.host, spec.role.as_str()));
            return Err(format!(
                "{} exited ({}); the end of {}:\n{}",
                dead.name,
                dead.exit.as_deref().unwrap_or("?"),
                log.display(),
                tail(&log, 15)
            ));
        }
        if rows.iter().all(ready) {
            return Ok(rows);
        }
        if start.elapsed() > READY_TIMEOUT {
            let waiting: Vec<String> = rows
                .iter()
                .filter(|r| !ready(r))
                .map(|r| format!("{} is {} ({}): {}", r.name, r.health, r.process, r.detail))
                .collect();
            return Err(format!(
                "not healthy after {READY_TIMEOUT:?}:\n  {}",
                waiting.join("\n  ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Up: this supervisor's own process runs it, and answers healthy (its pid checked by `gather`).
fn ready(r: &Row) -> bool {
    r.process == "running" && r.health == "ok"
}

fn announce(topology: &Topology, rows: &[Row], detached_from: Option<&Path>) {
    say!();
    print_table(rows);
    say!();
    match (topology.site_url(), topology.secure_url()) {
        (Some(url), Some(secure)) => say!("{} is up: {url} and {secure}", topology.site),
        (Some(url), None) => say!("{} is up: {url}", topology.site),
        _ => say!("{} is up", topology.site),
    }
    if let Some(dir) = detached_from {
        say!(
            "running in the background; `webinfra down --state-dir {}` stops it",
            dir.display()
        );
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
