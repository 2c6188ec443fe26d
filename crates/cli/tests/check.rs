//! `webinfra check` as a user runs it: exit codes and messages that point at
//! the line, column and key of a wrong topology file.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");
const FOOBAR: &str = include_str!("../../../topologies/foobar.toml");

fn check(src: &str) -> (i32, String, String) {
    check_in(&tempfile::tempdir().unwrap(), src)
}

/// [`check`] with the file in `dir` (next to files it names).
fn check_in(dir: &tempfile::TempDir, src: &str) -> (i32, String, String) {
    let path = dir.path().join("site.toml");
    std::fs::write(&path, src).unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "site.toml");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        stderr,
    )
}

#[test]
fn the_shipped_topology_checks_clean() {
    let (code, stdout, _) = check(FOOBAR);
    assert_eq!(code, 0);
    assert!(stdout.contains("ok (5 hosts, 8 components)"), "{stdout}");
}

#[test]
fn unknown_key_exits_2_naming_file_line_column_and_key() {
    let src = FOOBAR.replace("[web]\n", "[web]\nthreads = 4\n");
    let line = src.lines().position(|l| l == "threads = 4").unwrap() + 1;
    let (code, _, stderr) = check(&src);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(&format!(
            "site.toml:{line}:1: key `web.threads`: unknown field `threads`"
        )),
        "{stderr}"
    );
}

#[test]
fn every_error_is_listed() {
    let src = FOOBAR
        .replace("address = \"127.0.0.12\"", "address = \"127.0.0.11\"")
        .replace(
            "servers = [\"server-01\", \"server-02\"]",
            "servers = [\"server-01\", \"server-09\"]",
        );
    let (code, _, stderr) = check(&src);
    assert_eq!(code, 2);
    assert!(
        stderr
            .contains("key `host.address`: 127.0.0.11 is already the address of host `server-01`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("key `load_balancer.servers`: no host named `server-09`"),
        "{stderr}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["check", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent.toml: cannot read the topology file"));
}

#[test]
fn the_file_can_be_named_with_t_like_every_other_command() {
    let out = Command::new(BIN)
        .args(["check", "-t", "/nonexistent-t.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-t.toml: cannot read"));
    let out = Command::new(BIN)
        .args(["check"])
        .env("WEBINFRA_TOPOLOGY", "/nonexistent-env.toml")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-env.toml: cannot read"));
}

#[test]
fn unknown_role_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["run", "cache", "--topology", "../../topologies/foobar.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role `cache`"));
}

#[test]
fn up_without_mariadb_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "up",
            "--topology",
            "../../topologies/foobar.toml",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .env("WEBINFRA_MARIADB_BIN_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`mariadbd` not found"), "{stderr}");
    assert!(
        stderr.contains("apt-get install mariadb-server"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "nothing is started or created"
    );
}

#[test]
fn the_certificates_named_are_read_and_a_missing_or_mismatched_one_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let make = |stem: &str| {
        let made = rcgen::generate_simple_self_signed(vec![format!("{stem}.example.com")]).unwrap();
        std::fs::write(dir.path().join(format!("{stem}.pem")), made.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join(format!("{stem}.key")),
            made.key_pair.serialize_pem(),
        )
        .unwrap();
    };
    make("www");
    make("api");
    let with = |extra: &str| {
        FOOBAR.replace(
            "[load_balancer.tls]\n",
            &format!("[load_balancer.tls]\ncertificate = \"www.pem\"\nkey = \"www.key\"\n{extra}"),
        )
    };
    let more = |cert: &str, key: &str| {
        format!("\n[[load_balancer.tls.certificates]]\ncertificate = \"{cert}\"\nkey = \"{key}\"\n")
    };
    let (code, stdout, stderr) = check_in(&dir, &with(""));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The tables must come after the [load_balancer.tls] keys: appended at the end.
    let (code, _, stderr) = check_in(&dir, &format!("{}{}", with(""), more("api.pem", "api.key")));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = check_in(
        &dir,
        &format!("{}{}", with(""), more("gone.pem", "api.key")),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("site.toml: key `load_balancer.tls`: ") && stderr.contains("gone.pem"),
        "{stderr}"
    );
    // A key that is not the certificate's.
    let (code, _, stderr) = check_in(&dir, &format!("{}{}", with(""), more("api.pem", "www.key")));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("api.pem with") && stderr.contains("www.key"),
        "{stderr}"
    );
}

#[test]
fn the_error_pages_named_are_read_and_a_missing_one_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("503.html"), "<h1>Back soon</h1>").unwrap();
    let with = |file: &str| format!("{FOOBAR}\n[load_balancer.error_pages]\n503 = \"{file}\"\n");
    let (code, stdout, stderr) = check_in(&dir, &with("503.html"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, stderr) = check_in(&dir, &with("gone.html"));
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("site.toml: key `load_balancer.error_pages.503`: ")
            && stderr.contains("gone.html"),
        "{stderr}"
    );
}

#[test]
fn every_stack_command_takes_t_and_s_anywhere_on_its_line() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();
    let t = "../../topologies/foobar.toml";
    let lines: [&[&str]; 8] = [
        &["db", "status", "-s", s, "-t", t],
        &["db", "-s", s, "status", "-t", t],
        &["stop", "server-01/web", "-t", t, "-s", s],
        &["start", "-t", t, "server-01", "-s", s],
        &["down", "-s", s, "-t", t],
        &["status", "-s", s, "-t", t],
        &["lb", "drain", "server-01", "-s", s, "-t", t],
        &["reload", "-s", s, "-t", t],
    ];
    for args in lines {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("WEBINFRA_TOPOLOGY")
            .env_remove("WEBINFRA_STATE_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // No stack runs from that dir: a run-time failure (1), not a usage error (2).
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("unexpected argument"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn run_help_lists_every_role() {
    let out = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for role in ["load-balancer", "web", "app", "database", "db-monitor"] {
        assert!(help.contains(role), "{role} missing from:\n{help}");
    }
}

#[test]
fn check_warns_about_a_certificate_that_expires_within_14_days() {
    let dir = tempfile::tempdir().unwrap();
    let make = |stem: &str, days: i64| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["www.foobar.com".into()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(400);
        params.not_after = now + time::Duration::days(days);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join(format!("{stem}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.path().join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    };
    make("soon", 5);
    make("later", 60);
    let with = |stem: &str| {
        FOOBAR.replace(
            "[load_balancer.tls]\n",
            &format!("[load_balancer.tls]\ncertificate = \"{stem}.pem\"\nkey = \"{stem}.key\"\n"),
        )
    };
    let (code, _, stderr) = check_in(&dir, &with("soon"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("soon.pem expires on")
            && stderr.contains("in 4 days")
            || stderr.contains("in 5 days"),
        "{stderr}"
    );
    let (code, _, stderr) = check_in(&dir, &with("later"));
    assert_eq!(code, 0);
    assert!(!stderr.contains("warning"), "{stderr}");
}
