//! How webinfra keeps its MariaDB connections (the application's and the
//! monitor's): pooled and reused, and closed after any call that failed.
//!
//! mysql_async closes every connection returned above the pool's `min`
//! when `inactive_connection_ttl` is zero (its default), which made every
//! read a new connection that prepared its statement again (8,695
//! `Connections` for 8,620 requests); [`options`] keeps idle connections
//! for [`IDLE_TTL`] and does not reset them on return (a
//! `COM_RESET_CONNECTION` round trip that also drops the prepared-statement
//! cache). That is sound only while no call leaves session state behind,
//! and only if a connection whose call failed, or was given up on, is never
//! reused: it may be mid-reply, on a node that died or was fenced, or hold
//! a lock the call meant to release. [`settle`] is that rule.

use mysql_async::{Conn, PoolConstraints, PoolOpts};
use std::time::Duration;

/// How long an idle pooled connection is kept.
pub const IDLE_TTL: Duration = Duration::from_secs(60);
/// The longest a failed connection's close may take before it is dropped.
const CLOSE_WITHIN: Duration = Duration::from_millis(500);

/// Pool options for up to `max` connections to one node.
pub fn options(max: usize) -> PoolOpts {
    PoolOpts::default()
        .with_constraints(PoolConstraints::new(0, max).expect("0 <= max"))
        .with_inactive_connection_ttl(IDLE_TTL)
        .with_reset_connection(false)
}

/// Gives a connection back after a call: to the pool when `ok`, else
/// closed in the background (a node that hangs holds no caller). Closing
/// marks it disconnected first, so even a close cut short keeps it out of
/// the pool.
pub fn settle(conn: Conn, ok: bool) {
    if ok {
        drop(conn);
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(CLOSE_WITHIN, conn.disconnect()).await;
    });
}
