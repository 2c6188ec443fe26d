//! The `mariadb` command-line client, as an operator would use it.

use std::net::SocketAddr;
use std::process::Command;

/// What a `mariadb -e` run printed.
#[derive(Debug)]
pub struct Output {
    /// Whether the client exited 0.
    pub ok: bool,
    /// Tab-separated rows, no column names.
    pub stdout: String,
    /// Error messages.
    pub stderr: String,
}

/// Runs `sql` on the server at `addr` as `user`.
pub fn query(addr: SocketAddr, user: &str, password: &str, sql: &str) -> Output {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        .args([
            "--batch",
            "--skip-column-names",
            "--connect-timeout=5",
            "-e",
            sql,
        ])
        .output()
        .expect("the mariadb client runs (apt-get install mariadb-client)");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
