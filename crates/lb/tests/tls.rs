//! HTTPS on the load balancer: requests over TLS reach the servers marked
//! `X-Forwarded-Proto: https`, ALPN offers HTTP/2, plain HTTP can be
//! redirected, a renewed certificate is picked up by a reload (and an
//! unusable one refused), each client gets the certificate for the name it
//! asks for, and a client that does not speak TLS is dropped without harm.

mod common;

use common::{wait_until, write_certificate, Lb};
use http_body_util::{BodyExt, Empty};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client trusting the certificates (DER) in `roots`, offering `alpn`.
fn client(roots: &[Vec<u8>], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(CertificateDer::from(r.clone())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    connect_to(addr, config, "localhost").await
}

/// A TLS connection to `addr` for the server `name` (a DNS name, sent as
/// SNI, or an IP address: no SNI).
async fn connect_to(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

/// GET `path` over HTTP/1.1 on a new TLS connection: (status, body).
async fn get(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> (u16, String) {
    let mut s = connect(addr, config).await.expect("TLS handshake");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// HTTP/2 over `stream`, its connection driven in the background.
async fn h2(
    stream: TlsStream<TcpStream>,
) -> hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>> {
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

fn certificate_of(lb: &Lb) -> Vec<u8> {
    let pem = std::fs::read(lb.tls_dir.as_ref().unwrap().path().join("certificate.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
}

#[test]
fn https_requests_reach_the_servers_marked_https() {
    let lb = Lb::start_tls(&["a"], |_| {});
    let config = client(&[certificate_of(&lb)], &[b"http/1.1"]);
    let (status, body) = runtime().block_on(get(lb.tls.unwrap(), config, "/x"));
    assert_eq!((status, body.as_str()), (200, "a"));
    let plain = webinfra_test_support::http::get(lb.site, "/y").unwrap();
    assert_eq!(plain.status, 200);
    let seen = lb.backend("a").record.seen.lock().unwrap().clone();
    let proto: Vec<_> = seen
        .iter()
        .map(|s| (s.path.as_str(), s.header("x-forwarded-proto").unwrap()))
        .collect();
    assert_eq!(proto, vec![("/x", "https"), ("/y", "http")]);
}

#[test]
fn alpn_offers_http2_and_requests_are_served_over_it() {
    let lb = Lb::start_tls(&["a"], |_| {});
    let config = client(&[certificate_of(&lb)], &[b"h2", b"http/1.1"]);
    let addr = lb.tls.unwrap();
    let (alpn, status, body) = runtime().block_on(async move {
        let stream = connect(addr, config).await.unwrap();
        let alpn = stream.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        let mut sender = h2(stream).await;
        let req = http::Request::get("https://localhost/h2")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        // Headers as large as HTTP/1.1 takes (a 30 KB cookie) pass over h2 too.
        let big = http::Request::get("https://localhost/big")
            .header("cookie", "a".repeat(30_000))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let big = sender.send_request(big).await.map(|r| r.status().as_u16());
        assert_eq!(big.ok(), Some(200));
        (alpn, status, body)
    });
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!((status, &body[..]), (200, &b"a"[..]));
}

#[test]
fn plain_http_is_redirected_to_https_when_asked() {
    let lb = Lb::start_tls(&["a"], |cfg| {
        let tls = cfg.tls.as_mut().unwrap();
        tls.redirect_http = true;
        tls.hsts_max_age_s = Some(31_536_000);
    });
    let port = lb.tls.unwrap().port();
    let r = webinfra_test_support::http::request(
        lb.site,
        "GET",
        "/board?page=2",
        &[("Host", "www.foobar.com:8080")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://www.foobar.com:{port}/board?page=2").as_str())
    );
    assert_eq!(lb.backend("a").record.count(), 0);
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "HSTS only over HTTPS"
    );
    let config = client(&[certificate_of(&lb)], &[b"http/1.1"]);
    let head = runtime().block_on(async {
        let mut s = connect(lb.tls.unwrap(), config).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).to_lowercase()
    });
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("strict-transport-security: max-age=31536000\r\n"),
        "{head}"
    );
}

#[test]
fn a_renewed_certificate_is_served_after_a_reload_and_an_unusable_one_is_refused() {
    let lb = Lb::start_tls(&["a"], |_| {});
    let dir = lb.tls_dir.as_ref().unwrap().path().to_path_buf();
    let old = certificate_of(&lb);
    let new = write_certificate(&dir);
    let trusts_both = client(&[old.clone(), new.clone()], &[b"http/1.1"]);
    let addr = lb.tls.unwrap();
    let rt = runtime();
    let served = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let s = connect(addr, trusts_both.clone()).await.unwrap();
            s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
        })
    };
    assert_eq!(served(&rt), old, "no reload yet: the old certificate");
    let reload =
        || webinfra_test_support::http::request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    let r = reload();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("new TLS certificate"), "{}", r.text());
    assert_eq!(served(&rt), new);

    // A key that does not parse: the reload is refused, the certificate stays.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    let r = reload();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("key.pem"), "{}", r.text());
    assert_eq!(served(&rt), new);
}

/// A self-signed certificate for `names` in `dir` as `{stem}.pem` and
/// `{stem}.key`: the files and the certificate (DER).
fn certificate_for(
    dir: &std::path::Path,
    stem: &str,
    names: &[&str],
) -> ((std::path::PathBuf, std::path::PathBuf), Vec<u8>) {
    let made =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let files = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&files.0, made.cert.pem()).unwrap();
    std::fs::write(&files.1, made.key_pair.serialize_pem()).unwrap();
    (files, made.cert.der().to_vec())
}

#[test]
fn each_client_gets_the_certificate_for_the_name_it_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let (api_files, api) = certificate_for(dir.path(), "api", &["api.example.com"]);
    let (wild_files, wild) = certificate_for(dir.path(), "wild", &["*.example.org"]);
    let more = vec![api_files, wild_files];
    let lb = Lb::start_tls(&["a"], move |cfg| cfg.tls.as_mut().unwrap().more = more);
    let default = certificate_of(&lb);
    let trusts_all = client(
        &[default.clone(), api.clone(), wild.clone()],
        &[b"http/1.1"],
    );
    let addr = lb.tls.unwrap();
    let rt = runtime();
    let served = |name: &str| {
        rt.block_on(async {
            let s = connect_to(addr, trusts_all.clone(), name).await?;
            Ok::<_, std::io::Error>(s.get_ref().1.peer_certificates().unwrap()[0].to_vec())
        })
    };
    assert_eq!(served("api.example.com").unwrap(), api);
    assert_eq!(served("www.example.org").unwrap(), wild, "a wildcard fits");
    assert_eq!(served("localhost").unwrap(), default);
    assert_eq!(served("127.0.0.1").unwrap(), default, "no SNI: the default");
    // A name no certificate fits gets the default, which the client refuses.
    let e = served("example.org").unwrap_err().to_string();
    assert!(e.contains("certificate not valid for name"), "{e}");
    // And the connection serves: over the api certificate.
    let answer = rt.block_on(async {
        let mut s = connect_to(addr, trusts_all.clone(), "api.example.com")
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    });
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\na"),
        "{answer}"
    );

    // A reload without them: every name gets the default.
    let mut only_default = lb.config();
    only_default.tls.as_mut().unwrap().more.clear();
    *lb.next_config.lock().unwrap() = Ok(only_default);
    let r = webinfra_test_support::http::request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let e = served("api.example.com").unwrap_err().to_string();
    assert!(e.contains("certificate not valid for name"), "{e}");
}

#[test]
fn a_client_that_does_not_speak_tls_is_dropped_and_others_are_served() {
    let lb = Lb::start_tls(&["a"], |cfg| {
        cfg.clients.header_timeout = Duration::from_secs(2)
    });
    // Plain HTTP on the HTTPS port: no handshake, the connection is closed.
    let r = webinfra_test_support::http::send_raw(
        lb.tls.unwrap(),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(r.is_err() || r.unwrap().status != 200);
    // A client that connects and says nothing is cut at the header timeout.
    let mut silent = std::net::TcpStream::connect(lb.tls.unwrap()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let _ = std::io::Read::read(&mut silent, &mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held past the header timeout"
    );
    let config = client(&[certificate_of(&lb)], &[b"http/1.1"]);
    wait_until(Duration::from_secs(5), "HTTPS still served", || {
        runtime()
            .block_on(get(lb.tls.unwrap(), config.clone(), "/"))
            .0
            == 200
    });
}

#[test]
fn plain_requests_over_https_take_the_fast_lane_marked_https_with_hsts() {
    let (addr, seen) = common::scripted_backend();
    let lb = Lb::start_tls(&["a"], move |cfg| {
        cfg.servers[0].addr = addr;
        cfg.tls.as_mut().unwrap().hsts_max_age_s = Some(600);
    });
    let config = client(&[certificate_of(&lb)], &[b"http/1.1"]);
    let text = runtime().block_on(async {
        let mut s = connect(lb.tls.unwrap(), config).await.expect("TLS handshake");
        // Keep-alive GETs (the lane's), then one that closes (hyper's). The
        // second's server field is named by its `Connection`: not passed on,
        // so the configured one is added, as on the general path.
        s.write_all(
            b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\nGET /sts-hop HTTP/1.1\r\nHost: localhost\r\n\r\nGET /two HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    });
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{text}");
    // The lane keeps the server's spelling; hyper writes lowercase.
    assert_eq!(text.matches("Server: raw").count(), 1, "{text}");
    assert_eq!(text.matches("server: raw").count(), 1, "{text}");
    assert_eq!(
        text.matches("strict-transport-security: max-age=600\r\n")
            .count(),
        3,
        "{text}"
    );
    assert!(!text.contains("max-age=1\r\n"), "{text}");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 3);
    for head in &heads {
        assert!(
            head.to_ascii_lowercase()
                .contains("x-forwarded-proto: https\r\n"),
            "{head}"
        );
    }
}

#[test]
fn http2_requests_go_to_the_pool_their_authority_names() {
    let lb = Lb::start_tls(&["a", "api"], |cfg| {
        let api = cfg.servers.pop().unwrap();
        cfg.pools.push(webinfra_topology::ServerPool {
            name: "api".into(),
            hosts: vec!["api.example.com".into()],
            paths: Vec::new(),
            algorithm: webinfra_topology::Algorithm::RoundRobin,
            health_check: cfg.health_check.clone(),
            servers: vec![api],
            pipelining: false,
        });
    });
    let config = client(&[certificate_of(&lb)], &[b"h2"]);
    let addr = lb.tls.unwrap();
    let bodies = runtime().block_on(async move {
        let stream = connect(addr, config).await.unwrap();
        let mut sender = h2(stream).await;
        let mut bodies = Vec::new();
        for url in ["https://api.example.com/x", "https://localhost/x"] {
            let req = http::Request::get(url)
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            bodies.push(String::from_utf8_lossy(&body).into_owned());
        }
        bodies
    });
    assert_eq!(bodies, ["api", "a"]);
}

#[test]
fn a_request_head_that_never_completes_over_tls_gets_a_408() {
    let lb = Lb::start_tls(&["a"], |cfg| {
        cfg.clients.header_timeout = Duration::from_millis(300)
    });
    let config = client(&[certificate_of(&lb)], &[b"http/1.1"]);
    let addr = lb.tls.unwrap();
    let (answer, idle) = runtime().block_on(async move {
        let mut s = connect(addr, config.clone()).await.expect("TLS handshake");
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Half: ")
            .await
            .unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await;
        // A connection that sent no request is closed without one.
        let mut quiet = connect(addr, config).await.expect("TLS handshake");
        let mut nothing = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut nothing)).await;
        (String::from_utf8_lossy(&raw).into_owned(), nothing)
    });
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(idle.is_empty(), "{:?}", String::from_utf8_lossy(&idle));
    assert_eq!(lb.backend("a").record.count(), 0);
}
