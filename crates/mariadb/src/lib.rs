//! How webinfra talks to MariaDB, for every role that does: connections
//! kept in pools and closed after a failed call ([`pool`]), and what a
//! node is doing, read through the monitoring user ([`probe`]). The
//! application, the database supervisor and the monitor use it; none of
//! them imports another.

pub mod pool;
pub mod probe;
