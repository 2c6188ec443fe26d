//! Starts every component as its own OS process and stops them in order.
//!
//! A process that dies is recorded and left dead, like a lost machine: the
//! load balancer and the application route around it, `webinfra status`
//! shows it, and `webinfra start NAME` brings it back.

use crate::components::{ComponentSpec, Role};
use anyhow::Context;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::watch;

/// How long a component gets to stop after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the supervisor knows of one component's process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessState {
    /// The component.
    pub name: String,
    /// Its pid (the last one, if it exited).
    pub pid: Option<u32>,
    /// `running`, `exited` or `stopped` (by the operator), or `not started`.
    pub state: String,
    /// How it ended, e.g. `signal: 9 (SIGKILL)`.
    pub exit: Option<String>,
    /// Its log file.
    pub log: PathBuf,
}

struct Proc {
    pid: u32,
    /// Flips to true when the process has exited.
    exited: watch::Receiver<bool>,
    exit: Arc<Mutex<Option<String>>>,
    stopped_by_operator: bool,
}

/// The processes of one stack.
pub struct Supervisor {
    exe: PathBuf,
    topology: PathBuf,
    state_dir: PathBuf,
    specs: Vec<ComponentSpec>,
    procs: Mutex<HashMap<String, Proc>>,
}

impl Supervisor {
    /// A supervisor for `specs`; `exe` is the webinfra binary to run roles with.
    pub fn new(
        exe: PathBuf,
        topology: PathBuf,
        state_dir: PathBuf,
        specs: Vec<ComponentSpec>,
    ) -> Arc<Self> {
        Arc::new(Supervisor {
            exe,
            topology,
            state_dir,
            specs,
            procs: Mutex::new(HashMap::new()),
        })
    }

    /// The components this supervisor runs.
    pub fn specs(&self) -> &[ComponentSpec] {
        &self.specs
    }

    fn log_path(&self, spec: &ComponentSpec) -> PathBuf {
        self.state_dir
            .join("logs")
            .join(format!("{}-{}.log", spec.host, spec.role.as_str()))
    }

    /// Starts every component not already running, in start order.
    pub fn start_all(&self) -> anyhow::Result<()> {
        for spec in &self.specs {
            self.start(&spec.name)?;
        }
        Ok(())
    }

    /// Starts the component named `name` unless it is running; `Ok(false)`: it was already.
    pub fn start(&self, name: &str) -> anyhow::Result<bool> {
        let spec = self
            .specs
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no component named {name}"))?;
        let mut procs = self.procs.lock().expect("procs lock");
        if procs.get(name).is_some_and(|p| !*p.exited.borrow()) {
            return Ok(false);
        }
        let log_path = self.log_path(spec);
        std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.env("WEBINFRA_SUPERVISED", "1")
            .env(webinfra_process::LOG_FILE_ENV, &log_path)
            .arg("run")
            .arg(spec.role.as_str())
            .arg("--host")
            .arg(&spec.host)
            .arg("--topology")
            .arg(&self.topology)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        webinfra_process::die_with_parent(&mut cmd, webinfra_process::SIGTERM);
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let (tx, rx) = watch::channel(false);
        let exit = Arc::new(Mutex::new(None));
        let exit_slot = exit.clone();
        let name_owned = name.to_string();
        tokio::spawn(async move {
            let status = child.wait().await;
            let clean = status.as_ref().is_ok_and(|s| s.success());
            let text = match status {
                Ok(s) => describe_exit(s),
                Err(e) => e.to_string(),
            };
            if clean {
                tracing::info!(component = %name_owned, pid, "process ended");
            } else {
                tracing::warn!(component = %name_owned, pid, exit = %text, "process ended");
            }
            *exit_slot.lock().expect("exit lock") = Some(text);
            let _ = tx.send(true);
        });
        tracing::info!(component = %name, pid, "process started");
        procs.insert(
            name.to_string(),
            Proc {
                pid,
                exited: rx,
                exit,
                stopped_by_operator: false,
            },
        );
        Ok(true)
    }

    /// Stops the component `name`: SIGTERM, then SIGKILL after a grace
    /// period; `false` when it was not running.
    pub async fn stop(&self, name: &str) -> bool {
        let (pid, mut exited) = {
            let mut procs = self.procs.lock().expect("procs lock");
            let Some(p) = procs.get_mut(name) else {
                return false;
            };
            p.stopped_by_operator = true;
            (p.pid, p.exited.clone())
        };
        if *exited.borrow() {
            return false;
        }
        webinfra_process::signal(pid, webinfra_process::SIGTERM);
        let wait = exited.wait_for(|e| *e);
        if tokio::time::timeout(STOP_TIMEOUT, wait).await.is_err() {
            tracing::warn!(component = %name, pid, "did not stop in time: SIGKILL");
            webinfra_process::signal(pid, webinfra_process::SIGKILL);
            let _ = exited.wait_for(|e| *e).await;
        }
        true
    }

    /// Stops everything: the load balancer first, the databases last (the
    /// monitor just before them, so it does not fail over a planned stop);
    /// the components of one tier stop in parallel.
    pub async fn stop_all(self: &Arc<Self>) {
        for role in [
            Role::LoadBalancer,
            Role::Web,
            Role::App,
            Role::DbMonitor,
            Role::Database,
        ] {
            let mut stops = tokio::task::JoinSet::new();
            for spec in self.specs.iter().filter(|s| s.role == role) {
                let me = self.clone();
                let name = spec.name.clone();
                stops.spawn(async move {
                    me.stop(&name).await;
                });
            }
            while stops.join_next().await.is_some() {}
        }
    }

    /// Has every running component reopen its log file (SIGUSR1, after a
    /// rotation renamed it); returns their names.
    pub fn reopen_logs(&self) -> Vec<String> {
        [
            Role::Database,
            Role::DbMonitor,
            Role::App,
            Role::Web,
            Role::LoadBalancer,
        ]
        .into_iter()
        .flat_map(|role| self.signal_role(role, webinfra_process::SIGUSR1))
        .collect()
    }

    /// Sends `signal` to every running component of `role`; returns their names.
    pub fn signal_role(&self, role: Role, signal: i32) -> Vec<String> {
        let procs = self.procs.lock().expect("procs lock");
        self.specs
            .iter()
            .filter(|s| s.role == role)
            .filter_map(|s| procs.get(&s.name).map(|p| (s, p)))
            .filter(|(_, p)| !*p.exited.borrow())
            .filter(|(_, p)| webinfra_process::signal(p.pid, signal))
            .map(|(s, _)| s.name.clone())
            .collect()
    }

    /// What every component's process is doing.
    pub fn states(&self) -> Vec<ProcessState> {
        let procs = self.procs.lock().expect("procs lock");
        self.specs
            .iter()
            .map(|spec| {
                let log = self.log_path(spec);
                match procs.get(&spec.name) {
                    None => ProcessState {
                        name: spec.name.clone(),
                        pid: None,
                        state: "not started".into(),
                        exit: None,
                        log,
                    },
                    Some(p) => {
                        let exited = *p.exited.borrow();
                        let state = match (exited, p.stopped_by_operator) {
                            (false, _) => "running",
                            (true, true) => "stopped",
                            (true, false) => "exited",
                        };
                        ProcessState {
                            name: spec.name.clone(),
                            pid: Some(p.pid),
                            state: state.into(),
                            exit: p.exit.lock().expect("exit lock").clone(),
                            log,
                        }
                    }
                }
            })
            .collect()
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(9)) => "killed by signal 9 (SIGKILL)".into(),
        (None, Some(15)) => "terminated by signal 15 (SIGTERM)".into(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}
