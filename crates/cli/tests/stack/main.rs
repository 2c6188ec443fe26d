//! The whole foobar.com stack, started once for this test binary on
//! 127.77.1.0/24, exercised through the load balancer like a user would.
//! Tests take a lock so the round-robin order is not disturbed by a neighbour.
//!
//! - [`admin`]: who may change the running stack through admin addresses;
//! - [`front`]: what the load balancer does with requests (balancing,
//!   keep-alive, refusals, request ids, HTTPS and HTTP/2, drain/enable);
//! - [`data`]: writes and reads through the application and the database
//!   tier (primary, replica, credentials, bad input, read-your-writes);
//! - [`site`]: what a user sees (static files, the HTML board) and
//!   `webinfra status`.

mod admin;
mod data;
mod front;
mod site;

use serde_json::json;
use std::sync::{Mutex, MutexGuard, OnceLock};
use webinfra_test_support::{http, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");

fn stack() -> (&'static Stack, MutexGuard<'static, ()>) {
    static STACK: OnceLock<Stack> = OnceLock::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    (
        STACK.get_or_init(|| Stack::start(BIN.as_ref(), 77, 1)),
        guard,
    )
}

fn post(stack: &Stack, author: &str, text: &str) -> http::Response {
    http::post_json(
        stack.site(),
        "/api/messages",
        &json!({ "author": author, "text": text }),
    )
    .unwrap()
}
