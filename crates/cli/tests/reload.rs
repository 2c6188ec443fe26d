//! `webinfra reload` and SIGHUP on a real load balancer process (`webinfra
//! run load-balancer`) in front of two small HTTP servers, on its own
//! 127.78.1.0/24 block: the file's changes apply without a restart, and a
//! broken file is refused with its line and key while the old one keeps serving.
//! And HTTPS with no certificate named: a self-signed one is made and served.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;
use webinfra_test_support::{hangup, http, poll, KillOnDrop};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");
const LB: &str = "127.78.1.1";

/// An HTTP server answering every request with `name`, one per connection.
fn named_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.78.1.2:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // Read the head; these requests have no body.
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = reader.get_mut().write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
    addr
}

fn topology(backends: &[(&str, SocketAddr, &str)]) -> String {
    let mut t = format!(
        "[[host]]\nname = \"lb-01\"\naddress = \"{LB}\"\n\n[load_balancer]\nhost = \"lb-01\"\nport = 18080\nadmin_port = 18404\naccess_log = false\n\n[load_balancer.health_check]\npath = \"/\"\ninterval_ms = 200\n"
    );
    for (name, addr, extra) in backends {
        t.push_str(&format!(
            "\n[[load_balancer.backend]]\nname = \"{name}\"\naddress = \"{addr}\"\n{extra}"
        ));
    }
    t
}

/// `webinfra run load-balancer` on `file` (state in `state`), once `site` answers 200.
fn run_load_balancer(
    file: &std::path::Path,
    state: &std::path::Path,
    site: SocketAddr,
) -> KillOnDrop {
    webinfra_test_support::run_load_balancer(Command::new(BIN), file, state, site)
}

fn served(site: SocketAddr) -> std::collections::BTreeSet<String> {
    (0..6)
        .map(|_| http::get(site, "/").unwrap().text())
        .collect()
}

#[test]
fn reload_and_sighup_apply_the_file_and_a_broken_file_changes_nothing() {
    let (a, b) = (named_server("a"), named_server("b"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.toml");
    std::fs::write(&file, topology(&[("a", a, "")])).unwrap();
    let site: SocketAddr = format!("{LB}:18080").parse().unwrap();
    let lb = run_load_balancer(&file, dir.path(), site);
    assert_eq!(served(site), ["a".to_string()].into());

    // `webinfra reload`: b added, with a weight.
    std::fs::write(&file, topology(&[("a", a, ""), ("b", b, "weight = 2\n")])).unwrap();
    let out = Command::new(BIN)
        .arg("reload")
        .arg("-t")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("added server b"), "{stdout}");
    assert_eq!(served(site), ["a".to_string(), "b".to_string()].into());

    // A broken file: refused with its line and key, the running set stays.
    let broken = topology(&[("a", a, ""), ("b", b, "weight = 0\n")]);
    let line = broken.lines().position(|l| l == "weight = 0").unwrap() + 1;
    std::fs::write(&file, &broken).unwrap();
    let out = Command::new(BIN)
        .arg("reload")
        .arg("-t")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(":{line}:10: key `load_balancer.backend.weight`")),
        "{stderr}"
    );
    // Sent anyway (SIGHUP reads the broken file): still refused.
    assert!(hangup(lb.0.id()));
    assert_eq!(served(site), ["a".to_string(), "b".to_string()].into());

    // SIGHUP with a good file: a removed.
    std::fs::write(&file, topology(&[("b", b, "")])).unwrap();
    assert!(hangup(lb.0.id()));
    poll("a removed", Duration::from_secs(10), || {
        (served(site) == ["b".to_string()].into()).then_some(())
    });
    // Two reloads took: `webinfra reload` and the last SIGHUP (handled in
    // order after the refused one).
    let admin: SocketAddr = format!("{LB}:18404").parse().unwrap();
    assert_eq!(http::get(admin, "/stats").unwrap().json()["generation"], 2);
}

#[test]
fn https_without_a_named_certificate_serves_one_from_a_local_ca() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer};
    const HOST: &str = "127.78.1.3";
    let a = named_server("a");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.toml");
    std::fs::write(
        &file,
        format!(
            "[site]\nname = \"www.foobar.com\"\n\n[[host]]\nname = \"lb-01\"\naddress = \"{HOST}\"\n\n[load_balancer]\nhost = \"lb-01\"\nport = 18080\nadmin_port = 18404\n\n[load_balancer.tls]\nport = 18443\n\n[load_balancer.health_check]\npath = \"/\"\n\n[[load_balancer.backend]]\nname = \"a\"\naddress = \"{a}\"\n"
        ),
    )
    .unwrap();
    let site: SocketAddr = format!("{HOST}:18080").parse().unwrap();
    let _lb = run_load_balancer(&file, dir.path(), site);
    // Clients trust the local CA kept in the state dir, not the site's certificate itself.
    let pem = std::fs::read(dir.path().join("lb-01/tls/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The certificate names the site and the load balancer's address.
    for name in ["www.foobar.com", HOST] {
        let answer = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect((HOST, 18443)).await.unwrap();
            let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config.clone()))
                .connect(server, tcp)
                .await
                .unwrap_or_else(|e| panic!("handshake as {name}: {e}"));
            tls.write_all(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            tls.read_to_end(&mut out).await.unwrap();
            String::from_utf8_lossy(&out).into_owned()
        });
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\na"), "{answer}");
    }
}

/// The soft limit in force for `pid` (`Max open files` in /proc/PID/limits).
fn open_files_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn a_low_limit_on_open_files_is_raised_so_clients_up_to_max_connections_are_served() {
    // Started with a soft limit of 256 (a shell's usual 1024 scaled down),
    // the load balancer holds 600 clients and their servers' connections.
    const HOST: &str = "127.78.1.4";
    let (_, hard) = open_files_limits("self");
    assert!(
        hard >= 2048,
        "this test needs a hard limit of 2048 (have {hard})"
    );
    let a = named_server("a");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.toml");
    std::fs::write(&file, topology(&[("a", a, "")]).replace(LB, HOST)).unwrap();
    let mut soft_limited = Command::new("bash");
    soft_limited.args(["-c", "ulimit -Sn 256 && exec \"$0\" \"$@\"", BIN]);
    let site: SocketAddr = format!("{HOST}:18080").parse().unwrap();
    let lb = webinfra_test_support::run_load_balancer(soft_limited, &file, dir.path(), site);
    let pid = lb.0.id().to_string();
    assert_eq!(open_files_limits(&pid).0, hard.min(1 << 20));
    let mut clients: Vec<std::net::TcpStream> = (0..600)
        .map(|_| std::net::TcpStream::connect(site).unwrap())
        .collect();
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut buf = [0u8; 512];
        let n = std::io::Read::read(c, &mut buf)
            .unwrap_or_else(|e| panic!("client {i} got no answer: {e}"));
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "client {i}");
    }
}

/// A server for the access log: `/cut` breaks off mid-body, `/big` sends
/// 64 MiB, anything else answers `ok`.
fn log_server() -> SocketAddr {
    let listener = TcpListener::bind("127.78.1.2:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut first = String::new();
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if first.is_empty() {
                        first = line.clone();
                    }
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let out = reader.get_mut();
                let _ = if first.contains(" /cut ") {
                    out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten!!")
                } else if first.contains(" /big ") {
                    let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n");
                    let chunk = vec![b'x'; 1 << 20];
                    (0..64).try_for_each(|_| out.write_all(&chunk))
                } else {
                    out.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                };
            });
        }
    });
    addr
}

#[test]
fn the_access_log_says_how_each_transfer_ended() {
    // One line per request, written when the body is done: bytes sent and
    // whether it completed, the client went away or the server broke off.
    const HOST: &str = "127.78.1.5";
    let server = log_server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.toml");
    let topology = topology(&[("a", server, "")])
        .replace(LB, HOST)
        .replace("access_log = false", "access_log = true");
    std::fs::write(&file, topology).unwrap();
    let log_path = dir.path().join("lb.log");
    let child = Command::new(BIN)
        .args(["run", "load-balancer", "-t"])
        .arg(&file)
        .arg("-s")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let _lb = KillOnDrop(child);
    let site: SocketAddr = format!("{HOST}:18080").parse().unwrap();
    poll("the load balancer", Duration::from_secs(20), || {
        http::get(site, "/ready").ok().filter(|r| r.status == 200)
    });
    assert_eq!(http::get(site, "/whole").unwrap().text(), "ok");
    // The client sees a short body; only the log line matters here.
    let _ = http::get(site, "/cut");
    // Read the head of the 64 MiB answer, then hang up.
    let mut s = std::net::TcpStream::connect(site).unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 64];
    std::io::Read::read_exact(&mut s, &mut head).unwrap();
    drop(s);
    let line = |path: &str| {
        let log = std::fs::read_to_string(&log_path).unwrap();
        log.lines()
            .find(|l| l.contains("proxied") && l.contains(&format!("path={path} ")))
            .map(String::from)
    };
    let whole = poll("the /whole line", Duration::from_secs(10), || {
        line("/whole")
    });
    assert!(whole.contains("bytes=2 end=\"complete\""), "{whole}");
    assert!(
        whole.contains("status=200") && whole.contains("pool=default server=a"),
        "{whole}"
    );
    let cut = poll("the /cut line", Duration::from_secs(10), || line("/cut"));
    assert!(cut.contains("bytes=10 end=\"server failed"), "{cut}");
    let big = poll("the /big line", Duration::from_secs(20), || line("/big"));
    assert!(big.contains("end=\"client aborted\""), "{big}");
}
