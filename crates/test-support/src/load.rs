//! Bounded write load through the site: a few threads POSTing messages until
//! told to stop (or a hard cap of requests and time), recording what the
//! client was told about each write.

use crate::http;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Hard caps so a forgotten writer stops by itself.
const MAX_REQUESTS_PER_THREAD: usize = 20_000;
const MAX_DURATION: Duration = Duration::from_secs(180);

/// One write as the client saw it.
#[derive(Debug, Clone)]
pub struct Write {
    /// The unique text posted.
    pub text: String,
    /// When the request was sent.
    pub sent: Instant,
    /// When the answer came.
    pub answered: Instant,
    /// HTTP status, or 0 when the connection failed.
    pub status: u16,
}

/// Writer threads.
pub struct Writers {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Write>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    /// Starts `n` threads writing to `site`; texts start with `tag`.
    pub fn start(site: SocketAddr, n: usize, tag: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let begun = Instant::now();
        let threads = (0..n)
            .map(|t| {
                let (stop, log, tag) = (stop.clone(), log.clone(), tag.to_string());
                std::thread::spawn(move || {
                    for i in 0..MAX_REQUESTS_PER_THREAD {
                        if stop.load(Ordering::Relaxed) || begun.elapsed() > MAX_DURATION {
                            return;
                        }
                        let text = format!("{tag}-{t}-{i}");
                        let sent = Instant::now();
                        let body = serde_json::json!({ "author": "load", "text": text });
                        let status = http::post_json(site, "/api/messages", &body)
                            .map(|r| r.status)
                            .unwrap_or(0);
                        log.lock().unwrap().push(Write {
                            text,
                            sent,
                            answered: Instant::now(),
                            status,
                        });
                    }
                })
            })
            .collect();
        Writers { stop, log, threads }
    }

    /// How many writes were acknowledged (201) so far.
    pub fn acknowledged(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.status == 201)
            .count()
    }

    /// A copy of the log so far.
    pub fn log(&self) -> Vec<Write> {
        self.log.lock().unwrap().clone()
    }

    /// Stops the threads and returns every write.
    pub fn stop(mut self) -> Vec<Write> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
