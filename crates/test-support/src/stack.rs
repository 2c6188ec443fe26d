//! A whole webinfra stack (`webinfra up`) on its own loopback block.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long `up` may take to report the stack healthy.
const UP_TIMEOUT: Duration = Duration::from_secs(240);

/// The foobar.com design on the block 127.`a`.`b`.0/24, with fast health checks.
pub fn topology_toml(a: u8, b: u8) -> String {
    topology_with_replicas(a, b, 1)
}

/// [`topology_toml`] with `replicas` replicas: db-02 on .22, db-03 on .23, ...
pub fn topology_with_replicas(a: u8, b: u8, replicas: u8) -> String {
    let ip = |last: u8| format!("127.{a}.{b}.{last}");
    let base = topology_base(a, b);
    let names: Vec<String> = (0..replicas).map(|r| format!("db-{:02}", r + 2)).collect();
    let hosts: String = names
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, n)| {
            format!(
                "[[host]]\nname = \"{n}\"\naddress = \"{}\"\n\n",
                ip(22 + i as u8)
            )
        })
        .collect();
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    base.replacen("[load_balancer]", &format!("{hosts}[load_balancer]"), 1)
        .replace("replicas = [\"db-02\"]", &format!("replicas = [{list}]"))
}

fn topology_base(a: u8, b: u8) -> String {
    let ip = |last: u8| format!("127.{a}.{b}.{last}");
    format!(
        r#"[site]
name = "www.foobar.com"

[[host]]
name = "lb-01"
address = "{lb}"

[[host]]
name = "server-01"
address = "{s1}"

[[host]]
name = "server-02"
address = "{s2}"

[[host]]
name = "db-01"
address = "{d1}"

[[host]]
name = "db-02"
address = "{d2}"

[load_balancer]
host = "lb-01"
port = 18080
admin_port = 18404
servers = ["server-01", "server-02"]

[load_balancer.tls]
port = 18443

[load_balancer.health_check]
interval_ms = 200
timeout_ms = 500
rise = 2
fall = 2

[web]
hosts = ["server-01", "server-02"]
port = 18000

[app]
hosts = ["server-01", "server-02"]
port = 19000

[database]
primary = "db-01"
replicas = ["db-02"]
port = 13306
admin_port = 19104
monitor_port = 19105
"#,
        lb = ip(1),
        s1 = ip(11),
        s2 = ip(12),
        d1 = ip(21),
        d2 = ip(22),
    )
}

const DIR_PREFIX: &str = "webinfra-test-";

/// A stack shared by a whole test binary lives in a static and is never
/// dropped (its processes stop when `up`'s stdin closes): remove the dirs of
/// test processes that are gone.
fn reap_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        let owner = std::fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if named && owner.is_some_and(|pid| !webinfra_process::alive(pid)) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Lines `up` printed, shared with the thread that reads them.
#[derive(Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

/// A running stack. Dropping it kills every process it started.
pub struct Stack {
    bin: PathBuf,
    /// Keeps the temp dir (topology, state) alive.
    _dir: tempfile::TempDir,
    /// The topology file.
    pub topology: PathBuf,
    /// The state dir (data, logs, credentials).
    pub state_dir: PathBuf,
    /// 127.a.b.0/24.
    pub block: (u8, u8),
    up: Option<(Child, ChildStdin, Arc<Output>)>,
}

impl Stack {
    /// Writes the topology for block 127.`a`.`b`.0/24 and runs `up` until healthy.
    pub fn start(bin: &Path, a: u8, b: u8) -> Stack {
        Stack::start_with(bin, a, b, &topology_toml(a, b))
    }

    /// [`Stack::start`] with a topology of the caller's (on the same block).
    pub fn start_with(bin: &Path, a: u8, b: u8, toml: &str) -> Stack {
        reap_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string())
            .expect("owner.pid");
        let topology = dir.path().join("topology.toml");
        std::fs::write(&topology, toml).expect("write topology");
        let mut stack = Stack {
            bin: bin.to_path_buf(),
            state_dir: dir.path().join("state"),
            topology,
            _dir: dir,
            block: (a, b),
            up: None,
        };
        stack.up();
        stack
    }

    /// 127.a.b.`last`: a host's address, or (for a last byte no host has) a client that is no host of the stack.
    pub fn ip(&self, last: u8) -> std::net::IpAddr {
        std::net::IpAddr::from([127, self.block.0, self.block.1, last])
    }

    /// The database monitor's API (on lb-01).
    pub fn monitor(&self) -> SocketAddr {
        SocketAddr::new(self.ip(1), 19105)
    }

    /// The load balancer's admin address.
    pub fn lb_admin(&self) -> SocketAddr {
        SocketAddr::new(self.ip(1), 18404)
    }

    /// What the process of `host`'s `role` logged so far (`logs/<host>-<role>.log`).
    pub fn log(&self, host: &str, role: &str) -> String {
        let path = self
            .state_dir
            .join("logs")
            .join(format!("{host}-{role}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The site: where clients send requests.
    pub fn site(&self) -> SocketAddr {
        SocketAddr::new(self.ip(1), 18080)
    }

    /// The site over HTTPS (the load balancer's default certificate is
    /// issued by the local CA `<state_dir>/lb-01/tls/ca.pem`).
    pub fn secure_site(&self) -> SocketAddr {
        SocketAddr::new(self.ip(1), 18443)
    }

    /// A server host's web server (`n` = 1 or 2).
    pub fn web(&self, n: u8) -> SocketAddr {
        SocketAddr::new(self.ip(10 + n), 18000)
    }

    /// A database node's SQL address (`n` = 1 for db-01, 2 for db-02).
    pub fn db(&self, n: u8) -> SocketAddr {
        SocketAddr::new(self.ip(20 + n), 13306)
    }

    /// The application user's password.
    pub fn app_password(&self) -> String {
        let text =
            std::fs::read_to_string(self.state_dir.join("credentials.json")).expect("credentials");
        let v: serde_json::Value = serde_json::from_str(&text).expect("credentials JSON");
        v["app_password"]
            .as_str()
            .expect("app_password")
            .to_string()
    }

    /// Starts `webinfra up` (again) and waits until it reports the stack up.
    pub fn up(&mut self) {
        assert!(self.up.is_none(), "the stack is already up");
        let mut child = Command::new(&self.bin)
            .arg("up")
            .arg("--topology")
            .arg(&self.topology)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--exit-on-stdin-eof")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn webinfra up");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let out = Arc::new(Output::default());
        let reader_out = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[up] {line}");
                reader_out.lines.lock().unwrap().push(line);
                reader_out.changed.notify_all();
            }
            reader_out.lines.lock().unwrap().push("<eof>".into());
            reader_out.changed.notify_all();
        });
        self.up = Some((child, stdin, out.clone()));
        let deadline = Instant::now() + UP_TIMEOUT;
        let mut lines = out.lines.lock().unwrap();
        loop {
            if lines.iter().any(|l| l.contains(" is up: http://")) {
                return;
            }
            if lines.iter().any(|l| l == "<eof>") || Instant::now() > deadline {
                let text = lines.join("\n");
                drop(lines);
                self.kill();
                panic!("webinfra up did not bring the stack up:\n{text}");
            }
            lines = out
                .changed
                .wait_timeout(lines, Duration::from_millis(200))
                .unwrap()
                .0;
        }
    }

    /// Stops the stack the way an operator does (SIGTERM to `up`) and waits
    /// for `up` to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let (mut child, stdin, _) = self.up.take().expect("the stack is up");
        webinfra_process::signal(child.id(), webinfra_process::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().expect("wait for up") {
                drop(stdin);
                return status.code();
            }
            if Instant::now() > deadline {
                webinfra_process::signal_group(child.id(), webinfra_process::SIGKILL);
                let _ = child.wait();
                panic!("webinfra up did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some((mut child, stdin, _)) = self.up.take() {
            let pgid = child.id();
            drop(stdin);
            webinfra_process::signal_group(pgid, webinfra_process::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Whatever is left of the group (a stuck mariadbd) goes now.
            webinfra_process::signal_group(pgid, webinfra_process::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Runs `webinfra ARGS --state-dir ...` (and `--topology` where it applies).
    pub fn webinfra(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("WEBINFRA_STATE_DIR", &self.state_dir)
            .env("WEBINFRA_TOPOLOGY", &self.topology);
        cmd.output().expect("run webinfra")
    }

    /// `webinfra status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.webinfra(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `webinfra db status --json`: the database monitor's view.
    pub fn cluster(&self) -> serde_json::Value {
        let out = self.webinfra(&["db", "status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The current primary's name, as the monitor reports it.
    pub fn primary(&self) -> Option<String> {
        self.cluster()["primary"].as_str().map(String::from)
    }

    /// A node's role as the monitor reports it (`primary`, `replica`, `diverged`, `down`, ...).
    pub fn role_of(&self, node: &str) -> Option<String> {
        self.cluster()["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == node)
            .and_then(|n| n["role"].as_str().map(String::from))
    }

    /// Waits until the monitor sees `node` reachable and says it will not
    /// promote it on its own (it was not in sync when the primary was lost).
    pub fn wait_promotion_refused(&self, node: &str) {
        crate::poll(
            &format!("the monitor to see {node} and refuse to promote it"),
            Duration::from_secs(30),
            || {
                let c = self.cluster();
                let seen = c["nodes"]
                    .as_array()?
                    .iter()
                    .any(|n| n["name"] == node && n["reachable"] == true);
                let refused = c["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("none is promoted"));
                (seen && refused).then_some(())
            },
        );
    }

    /// The pid of `node`'s mariadbd, from its pid file.
    pub fn mariadbd_pid(&self, node: &str) -> u32 {
        let path = self.state_dir.join(node).join("mariadb/run/mariadb.pid");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .expect("a pid")
    }

    /// The SQL address of the node named `db-0N`.
    pub fn db_named(&self, node: &str) -> SocketAddr {
        let n: u8 = node.trim_start_matches("db-0").parse().expect("db-0N");
        self.db(n)
    }

    /// The pids of every component on `host`, from `webinfra status`.
    pub fn pids_of(&self, host: &str) -> Vec<u32> {
        self.status()["components"]
            .as_array()
            .expect("components")
            .iter()
            .filter(|c| c["host"] == host)
            .filter_map(|c| c["pid"].as_u64().map(|p| p as u32))
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill();
    }
}
