//! One `mariadbd`: finding the binaries, writing its config, initialising the
//! data dir, starting, waiting for it and stopping it cleanly.

use crate::NodeConfig;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use webinfra_topology::replication;

/// What to install when MariaDB is missing.
pub const INSTALL_HINT: &str =
    "install MariaDB from Debian's packages: `apt-get install mariadb-server` (scripts/up does it for you)";

/// How long a starting or crash-recovering mariadbd may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a clean shutdown may take before mariadbd is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Paths of the MariaDB programs webinfra drives.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The server.
    pub mariadbd: PathBuf,
    /// Data dir initialiser.
    pub install_db: PathBuf,
    /// The command-line client (used over the socket for administration).
    pub client: PathBuf,
}

impl Binaries {
    /// Finds the programs in `PATH`, `/usr/sbin` and `/usr/bin`, or only in
    /// `$WEBINFRA_MARIADB_BIN_DIR` when that is set.
    pub fn locate() -> anyhow::Result<Binaries> {
        let dirs: Vec<String> = match std::env::var("WEBINFRA_MARIADB_BIN_DIR") {
            Ok(dir) => vec![dir],
            Err(_) => std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .map(String::from)
                .chain(
                    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
                        .map(String::from),
                )
                .collect(),
        };
        let find = |name: &str| -> anyhow::Result<PathBuf> {
            let found = dirs
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file());
            found.with_context(|| format!("`{name}` not found: {INSTALL_HINT}"))
        };
        Ok(Binaries {
            mariadbd: find("mariadbd")?,
            install_db: find("mariadb-install-db")?,
            client: find("mariadb")?,
        })
    }
}

/// The OS account mariadbd runs as.
#[derive(Debug, Clone)]
struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// One node's mariadbd and its files.
pub struct Server {
    bins: Binaries,
    node: String,
    server_id: u32,
    sql: std::net::SocketAddr,
    dir: PathBuf,
    /// Account that owns the files and runs mariadbd (`mysql` when root can hand over).
    user: OsUser,
    /// The OS user whose unix-socket login is MariaDB's administrator.
    admin_login: String,
    /// Another node is the primary now: crash recovery rolls back what no
    /// replica acknowledged (`init-rpl-role=SLAVE`), so this node can rejoin.
    pub rejoining: bool,
}

impl Server {
    /// Describes the server for `config`; nothing is started or written yet.
    pub fn new(config: &NodeConfig, bins: Binaries) -> anyhow::Result<Server> {
        let dir = std::path::absolute(&config.dir)?;
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("run/mariadb.sock");
        if socket.as_os_str().len() > 100 {
            bail!(
                "the socket path {} is too long for a unix socket: use a shorter --state-dir",
                socket.display()
            );
        }
        let me = current_user();
        let user = if me.uid == 0 {
            match passwd_entry("mysql") {
                Some(mysql) if traversable_by_others(&dir) => mysql,
                _ => {
                    tracing::warn!(dir = %dir.display(), "the state dir is not reachable by the `mysql` user: running mariadbd as root");
                    me.clone()
                }
            }
        } else {
            me.clone()
        };
        Ok(Server {
            bins,
            node: config.node.name.clone(),
            server_id: config.node.server_id,
            sql: config.node.sql,
            dir,
            user,
            admin_login: me.name,
            rejoining: false,
        })
    }

    /// The unix socket administration goes through.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/mariadb.sock")
    }

    /// MariaDB's error log.
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("mariadb.err")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }

    /// The generated server configuration.
    ///
    /// Every node starts read-only: only the database monitor makes a node
    /// writable, so a restarted former primary can never take writes on its
    /// own. Semi-synchronous replication waits after the binlog sync
    /// (`AFTER_SYNC`), so an acknowledged commit is on a replica first. A node
    /// that another node replaced as primary restarts with
    /// `init-rpl-role=SLAVE`: crash recovery then rolls back transactions no
    /// replica acknowledged, so it rejoins without diverging. A node that is
    /// still the primary recovers everything in its binlog instead: with no
    /// replica attached (async), that is where acknowledged writes live.
    pub fn config_text(&self) -> String {
        format!(
            "# Generated by webinfra for {node}; rewritten at every start.\n\
             [mariadbd]\n\
             log-basename = {node}\n\
             user = {user}\n\
             datadir = {data}\n\
             tmpdir = {tmp}\n\
             socket = {socket}\n\
             pid-file = {pid}\n\
             log-error = {err}\n\
             bind-address = {ip}\n\
             port = {port}\n\
             skip-name-resolve\n\
             server-id = {id}\n\
             log-bin\n\
             binlog-format = ROW\n\
             gtid-strict-mode = ON\n\
             log-slave-updates = ON\n\
             read-only = ON\n\
             {init_role}\
             sync-binlog = 1\n\
             innodb-flush-log-at-trx-commit = 1\n\
             rpl-semi-sync-master-enabled = ON\n\
             rpl-semi-sync-slave-enabled = ON\n\
             rpl-semi-sync-master-wait-point = AFTER_SYNC\n\
             rpl-semi-sync-master-wait-no-slave = OFF\n\
             rpl-semi-sync-master-timeout = {semi_sync_ms}\n\
             slave-net-timeout = {net_timeout_s}\n\
             innodb-buffer-pool-size = 64M\n\
             max-connections = 300\n\
             character-set-server = utf8mb4\n\
             collation-server = utf8mb4_unicode_ci\n",
            node = self.node,
            user = self.user.name,
            semi_sync_ms = replication::SEMI_SYNC_TIMEOUT.as_millis(),
            net_timeout_s = replication::REPLICA_NET_TIMEOUT.as_secs(),
            data = self.data_dir().display(),
            tmp = self.dir.join("tmp").display(),
            socket = self.socket().display(),
            pid = self.dir.join("run/mariadb.pid").display(),
            err = self.error_log().display(),
            ip = self.sql.ip(),
            port = self.sql.port(),
            id = self.server_id,
            init_role = if self.rejoining {
                "init-rpl-role = SLAVE\n"
            } else {
                ""
            },
        )
    }

    /// Writes the config and initialises the data dir on first run.
    pub async fn prepare(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dir.join("run"))?;
        std::fs::create_dir_all(self.dir.join("tmp"))?;
        std::fs::write(self.config_file(), self.config_text())?;
        self.kill_stale();
        let initialised = self.data_dir().join("mysql").is_dir();
        if !initialised {
            tracing::info!(node = %self.node, "initialising a new data directory");
            let _ = std::fs::remove_dir_all(self.data_dir());
            self.chown_all()?;
            let out = Command::new(&self.bins.install_db)
                .arg(format!("--defaults-file={}", self.config_file().display()))
                .arg("--auth-root-authentication-method=socket")
                .arg(format!("--auth-root-socket-user={}", self.admin_login))
                .arg("--skip-test-db")
                .stdin(Stdio::null())
                .output()
                .await
                .context("running mariadb-install-db")?;
            if !out.status.success() {
                bail!(
                    "mariadb-install-db failed ({}):\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        self.chown_all()
    }

    /// Hands the node's files to the account mariadbd runs as.
    fn chown_all(&self) -> anyhow::Result<()> {
        if current_user().uid != 0 {
            return Ok(());
        }
        chown_recursive(&self.dir, self.user.uid, self.user.gid)
            .with_context(|| format!("chown {} to {}", self.dir.display(), self.user.name))
    }

    /// A mariadbd left running by a killed supervisor holds the data dir: stop it.
    fn kill_stale(&self) {
        let pid_file = self.dir.join("run/mariadb.pid");
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            return;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours =
            String::from_utf8_lossy(&cmdline).contains(&self.config_file().display().to_string());
        if ours && webinfra_process::alive(pid) {
            tracing::warn!(pid, "stopping a mariadbd left over from an earlier run");
            webinfra_process::signal(pid, webinfra_process::SIGTERM);
            if !webinfra_process::wait_gone(pid, STOP_TIMEOUT) {
                webinfra_process::signal(pid, webinfra_process::SIGKILL);
                webinfra_process::wait_gone(pid, Duration::from_secs(5));
            }
        }
    }

    /// Starts mariadbd as a child that dies with this process.
    pub async fn start(&self) -> anyhow::Result<Child> {
        let mut cmd = Command::new(&self.bins.mariadbd);
        cmd.arg(format!("--defaults-file={}", self.config_file().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        webinfra_process::die_with_parent(&mut cmd, webinfra_process::SIGTERM);
        let child = cmd.spawn().context("spawning mariadbd")?;
        tracing::info!(node = %self.node, pid = child.id(), addr = %self.sql, "mariadbd started");
        Ok(child)
    }

    /// Polls until mariadbd answers on its socket; fails if it exits first.
    pub async fn wait_ready(&self, child: &mut Child) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "mariadbd exited during start-up ({status}):\n{}",
                    self.error_log_tail()
                );
            }
            if self.socket().exists() && self.sql("SELECT 1").await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "mariadbd did not answer within {READY_TIMEOUT:?}:\n{}",
                    self.error_log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs SQL as the administrator over the unix socket; returns tab-separated rows.
    pub async fn sql(&self, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.bins.client)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--user={}", self.admin_login))
            .args([
                "--batch",
                "--skip-column-names",
                "--connect-timeout=2",
                "-e",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running the mariadb client")?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops mariadbd cleanly (SIGTERM), killing it if it does not stop in time.
    pub async fn stop(&self, child: &mut Child) {
        if let Some(pid) = child.id() {
            webinfra_process::signal(pid, webinfra_process::SIGTERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(_) => tracing::info!(node = %self.node, "mariadbd stopped cleanly"),
            Err(_) => {
                tracing::warn!(node = %self.node, "mariadbd did not stop in time: killing it");
                let _ = child.kill().await;
            }
        }
    }

    /// The last lines of the error log, for failure messages.
    pub fn error_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.error_log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

fn current_user() -> OsUser {
    let uid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.uid(), m.gid())
    });
    let (uid, gid) = uid.unwrap_or((0, 0));
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 3 && f[2] == uid.to_string())
                .map(|f| f[0].to_string())
        })
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into());
    OsUser { name, uid, gid }
}

fn passwd_entry(name: &str) -> Option<OsUser> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() <= 3 || f[0] != name {
            return None;
        }
        Some(OsUser {
            name: name.to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

/// True when every ancestor of `dir` lets other users through (o+x).
fn traversable_by_others(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors().skip(1).all(|a| {
        std::fs::metadata(a)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
