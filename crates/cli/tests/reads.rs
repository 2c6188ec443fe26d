//! Reads with more than one replica: spread over the replicas, and never
//! failing while the primary fails over (only writes wait for it).
//! Own block: 127.77.13.0/24 (db-01 primary, db-02 and db-03 replicas).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use webinfra_test_support::{http, kill9, poll, topology_with_replicas, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");

/// Which node served each of `n` plain reads (`X-DB-Node`), by count.
fn served_by(stack: &Stack, n: usize) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for _ in 0..n {
        let r = http::get(stack.site(), "/api/messages").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        *count
            .entry(r.header("x-db-node").unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    count
}

/// Reader threads recording every answer's status, until stopped (or capped).
struct Readers {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(u16, String)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Readers {
    fn start(stack: &Stack, n: usize) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (site, begun) = (stack.site(), Instant::now());
        let threads = (0..n)
            .map(|_| {
                let (stop, log) = (stop.clone(), log.clone());
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        if stop.load(Ordering::Relaxed) || begun.elapsed() > Duration::from_secs(90)
                        {
                            return;
                        }
                        let answer = match http::get(site, "/api/messages") {
                            Ok(r) => (r.status, r.text()),
                            Err(e) => (0, e.to_string()),
                        };
                        log.lock().unwrap().push(answer);
                    }
                })
            })
            .collect();
        Readers { stop, log, threads }
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn stop(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}

#[test]
fn reads_are_spread_over_the_replicas_and_none_fails_while_the_primary_fails_over() {
    let stack = Stack::start_with(BIN.as_ref(), 77, 13, &topology_with_replicas(77, 13, 2));
    let r = http::post_json(
        stack.site(),
        "/api/messages",
        &serde_json::json!({"author": "ann", "text": "three nodes"}),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    // Both replicas take reads, in turn (not all to the first one).
    poll(
        "both replicas to be in the application's read set",
        Duration::from_secs(30),
        || {
            let c = served_by(&stack, 10);
            (c.contains_key("db-02") && c.contains_key("db-03")).then_some(())
        },
    );
    let c = served_by(&stack, 40);
    assert!(
        c.get("db-02").copied().unwrap_or(0) >= 12 && c.get("db-03").copied().unwrap_or(0) >= 12,
        "reads not spread over the replicas: {c:?}"
    );

    // Kill the primary under read load: reads go on on the replicas.
    let readers = Readers::start(&stack, 2);
    poll("reads to be flowing", Duration::from_secs(10), || {
        (readers.count() >= 50).then_some(())
    });
    assert!(kill9(stack.mariadbd_pid("db-01")));
    let new = poll("a new primary", Duration::from_secs(10), || {
        stack.primary().filter(|p| p != "db-01")
    });
    let after = readers.count();
    poll("reads after the promotion", Duration::from_secs(10), || {
        (readers.count() >= after + 200).then_some(())
    });
    let answers = readers.stop();
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} reads failed while {new} replaced db-01, e.g. {:?}",
        failed.len(),
        answers.len(),
        failed.first()
    );
}
