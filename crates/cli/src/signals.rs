//! Shutdown signals. A role started by the supervisor stops on SIGTERM only
//! (a Ctrl-C in the terminal reaches the whole process group, and the
//! supervisor wants to stop the tiers in order); anything else also stops on
//! SIGINT. SIGHUP asks a role to reload its configuration.

use tokio::signal::unix::{signal, SignalKind};

/// Set by the supervisor in its children's environment.
pub const SUPERVISED_ENV: &str = "WEBINFRA_SUPERVISED";

/// Resolves on SIGTERM, or SIGINT when not supervised.
pub async fn shutdown() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let supervised = std::env::var_os(SUPERVISED_ENV).is_some();
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => {
                if !supervised {
                    return;
                }
            }
        }
    }
}

/// On every SIGUSR1, points stdout and stderr at the log file again (the
/// supervisor names it in the environment): a rotated log is followed by
/// a new one of the same name. Without a named file, SIGUSR1 is ignored.
pub async fn reopen_log_on_usr1(log: Option<std::path::PathBuf>) {
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    while usr1.recv().await.is_some() {
        let Some(path) = &log else { continue };
        match webinfra_process::reopen_stdio(path) {
            Ok(()) => tracing::info!(file = %path.display(), "log reopened"),
            Err(e) => tracing::error!(file = %path.display(), error = %e, "cannot reopen the log"),
        }
    }
}

/// Sends a message on `reload` for every SIGHUP.
pub async fn on_hangup(reload: tokio::sync::mpsc::Sender<()>) {
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        if reload.send(()).await.is_err() {
            return;
        }
    }
}
