//! The replication settings webinfra gives every MariaDB node, shared by
//! the code that writes them (`webinfra-db`) and the code whose safety
//! rests on them (the application servers' writes).

use std::time::Duration;

/// How long a primary waits for a replica to acknowledge a commit before
/// it commits without (`rpl_semi_sync_master_timeout`). A commit that took
/// longer may be on no replica.
pub const SEMI_SYNC_TIMEOUT: Duration = Duration::from_millis(2000);

/// How long a replica hears nothing from its primary before it drops the
/// connection (`slave_net_timeout`; heartbeats come every half of it). The
/// monitor fails over only once no replica is connected to the primary,
/// so no failover starts sooner than this after a primary stops answering.
pub const REPLICA_NET_TIMEOUT: Duration = Duration::from_secs(4);
