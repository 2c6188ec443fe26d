//! The failover rules, table by table, without MariaDB.

use super::*;
use crate::probe::SlaveStatus;

const PRIMARY: &str = "127.0.0.21";

fn nodes() -> Vec<SocketAddr> {
    ["127.0.0.21:3306", "127.0.0.22:3306", "127.0.0.23:3306"]
        .map(|a| a.parse().unwrap())
        .to_vec()
}

fn names() -> Vec<String> {
    ["db-01", "db-02", "db-03"].map(String::from).to_vec()
}

fn state() -> ClusterState {
    ClusterState {
        primary: Some("db-01".into()),
        ..Default::default()
    }
}

/// A node's probe: read-only or not, its binlog, its replication (from `PRIMARY` or none).
fn node(
    read_only: bool,
    binlog: &str,
    streaming: Option<bool>,
    uptime_s: u64,
) -> Result<Probe, String> {
    Ok(Probe {
        read_only,
        gtid_current_pos: binlog.into(),
        gtid_binlog_pos: binlog.into(),
        slave: streaming.map(|yes| SlaveStatus {
            master_host: PRIMARY.into(),
            master_port: 3306,
            io_running: if yes { "Yes" } else { "Connecting" }.into(),
            sql_running: "Yes".into(),
            gtid_io_pos: binlog.into(),
            last_io_errno: 0,
            last_error: String::new(),
            seconds_behind: Some(0),
        }),
        semi_sync_active: true,
        semi_sync_clients: 1,
        semi_sync_yes_tx: 0,
        semi_sync_no_tx: 0,
        uptime_s,
    })
}

fn primary_up() -> Result<Probe, String> {
    node(false, "0-1-10", None, 100)
}

fn down() -> Result<Probe, String> {
    Err("connection refused".into())
}

fn round(probes: &[Result<Probe, String>], st: &ClusterState, mem: &mut Memory) -> Vec<Action> {
    decide(&nodes(), &names(), probes, st, mem)
}

fn failovers(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Failover { .. }))
        .collect()
}

#[test]
fn a_primary_that_answers_is_kept_and_replicas_streaming_from_it_are_left_alone() {
    let mut mem = Memory::default();
    let probes = [
        primary_up(),
        node(true, "0-1-10", Some(true), 50),
        node(true, "0-1-10", Some(true), 60),
    ];
    let actions = round(&probes, &state(), &mut mem);
    assert_eq!(actions, [Action::Heartbeat(0), Action::Publish(None)]);
    assert_eq!(mem.in_sync, [(1, 50), (2, 60)]);
}

#[test]
fn a_dead_primary_is_failed_over_after_three_failed_probes_not_before() {
    let mut mem = Memory::default();
    let replicas = |streaming| {
        [
            node(true, "0-1-10", Some(streaming), 50),
            node(true, "0-1-9", Some(streaming), 60),
        ]
    };
    let [a, b] = replicas(true);
    round(&[primary_up(), a, b], &state(), &mut mem);
    for n in 1..SUSPECT_AFTER {
        let [a, b] = replicas(false);
        let actions = round(&[down(), a, b], &state(), &mut mem);
        assert!(failovers(&actions).is_empty(), "round {n}: {actions:?}");
    }
    let [a, b] = replicas(false);
    let actions = round(&[down(), a, b], &state(), &mut mem);
    assert_eq!(
        failovers(&actions),
        [&Action::Failover {
            from: 0,
            eligible: vec![1, 2],
            reason: "db-01 unreachable for 3 probes: connection refused".into()
        }]
    );
}

#[test]
fn a_slow_primary_a_replica_still_streams_from_is_not_failed_over() {
    let mut mem = Memory::default();
    round(
        &[primary_up(), node(true, "0-1-10", Some(true), 50), down()],
        &state(),
        &mut mem,
    );
    for _ in 0..10 {
        // It does not answer the monitor, but db-02's IO thread still reads from it.
        let actions = round(
            &[down(), node(true, "0-1-10", Some(true), 50), down()],
            &state(),
            &mut mem,
        );
        assert!(failovers(&actions).is_empty(), "{actions:?}");
    }
}

#[test]
fn only_replicas_in_sync_when_the_primary_was_last_seen_are_promoted() {
    let mut mem = Memory::default();
    // db-03 was not streaming (disconnected) when the primary was last seen.
    round(
        &[
            primary_up(),
            node(true, "0-1-10", Some(true), 50),
            node(true, "0-1-7", Some(false), 60),
        ],
        &state(),
        &mut mem,
    );
    let mut last = Vec::new();
    for _ in 0..SUSPECT_AFTER {
        last = round(
            &[
                down(),
                node(true, "0-1-10", Some(false), 50),
                node(true, "0-1-7", Some(false), 60),
            ],
            &state(),
            &mut mem,
        );
    }
    assert!(
        matches!(failovers(&last)[..], [Action::Failover { eligible, .. }] if eligible == &[1])
    );
}

#[test]
fn a_replica_that_restarted_since_the_primary_was_seen_is_not_promoted() {
    let mut mem = Memory::default();
    round(
        &[primary_up(), node(true, "0-1-10", Some(true), 500), down()],
        &state(),
        &mut mem,
    );
    let mut all = Vec::new();
    for _ in 0..SUSPECT_AFTER {
        // Its uptime went down: it restarted, and may have lost what it had received.
        all.extend(round(
            &[down(), node(true, "0-1-10", Some(false), 3), down()],
            &state(),
            &mut mem,
        ));
    }
    assert!(failovers(&all).is_empty(), "{all:?}");
    let refusals = all
        .iter()
        .filter(|a| matches!(a, Action::RefusePromotion { .. }))
        .count();
    assert_eq!(refusals, 1, "said once: {all:?}");
}

#[test]
fn a_restarted_monitor_promotes_nothing_until_it_has_seen_the_primary() {
    // Fresh memory (the monitor restarted) while the primary is down.
    let mut mem = Memory::default();
    let mut all = Vec::new();
    for _ in 0..SUSPECT_AFTER + 2 {
        all.extend(round(
            &[down(), node(true, "0-1-10", Some(false), 50), down()],
            &state(),
            &mut mem,
        ));
    }
    assert!(failovers(&all).is_empty(), "{all:?}");
    assert!(all.iter().any(|a| matches!(a, Action::RefusePromotion { problem } if problem.contains("webinfra db failover"))));
}

#[test]
fn nodes_that_diverged_are_kept_out_and_a_second_writable_node_is_fenced() {
    let mut mem = Memory::default();
    let mut refused = node(true, "0-1-10,0-2-3", Some(false), 50).unwrap();
    let slave = refused.slave.as_mut().unwrap();
    slave.last_io_errno = 1236;
    slave.last_error = "the primary lacks 0-2-3".into();
    // db-03: writable, never a replica, its binlog beyond the primary's.
    let probes = [primary_up(), Ok(refused), node(false, "0-1-12", None, 60)];
    let actions = round(&probes, &state(), &mut mem);
    assert_eq!(
        actions,
        [
            Action::Heartbeat(0),
            Action::MarkDiverged {
                node: 1,
                why: "the primary lacks 0-2-3".into()
            },
            Action::Fence(2),
            Action::MarkDiverged {
                node: 2,
                why: "its binlog has 0-1-12 beyond the primary's 0-1-10".into()
            },
            Action::Publish(None),
        ]
    );
    // Once kept out, a diverged node that replicates again is stopped, not pointed.
    let st = ClusterState {
        diverged: vec!["db-02".into()],
        ..state()
    };
    let actions = round(
        &[primary_up(), node(true, "0-1-10", Some(true), 50), down()],
        &st,
        &mut mem,
    );
    assert_eq!(
        actions,
        [
            Action::Heartbeat(0),
            Action::StopReplication(1),
            Action::Publish(None)
        ]
    );
}

#[test]
fn a_returning_former_primary_is_pointed_at_the_primary_from_its_own_binlog() {
    let mut mem = Memory::default();
    // db-02 is the primary now; db-01 came back read-only with no replication, behind it.
    let st = ClusterState {
        primary: Some("db-02".into()),
        ..Default::default()
    };
    let probes = [
        node(true, "0-1-10", None, 5),
        node(false, "0-2-14", None, 100),
        down(),
    ];
    let actions = round(&probes, &st, &mut mem);
    assert_eq!(
        actions,
        [
            Action::Heartbeat(1),
            Action::Replicate {
                node: 0,
                from_own_binlog: true
            },
            Action::Publish(None),
        ]
    );
}

#[test]
fn semi_sync_turning_off_and_on_is_said_once_each_way() {
    let mut mem = Memory::default();
    let alone = || {
        let mut p = primary_up().unwrap();
        p.semi_sync_clients = 0;
        Ok(p)
    };
    let said = |actions: &[Action]| {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SemiSyncChanged { waits, .. } => Some(*waits),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        said(&round(&[alone(), down(), down()], &state(), &mut mem)),
        [false]
    );
    assert!(said(&round(&[alone(), down(), down()], &state(), &mut mem)).is_empty());
    let back = [primary_up(), node(true, "0-1-10", Some(true), 5), down()];
    assert_eq!(said(&round(&back, &state(), &mut mem)), [true]);
}

#[test]
fn with_no_primary_remembered_the_single_writable_node_is_chosen() {
    let mut mem = Memory::default();
    let probes = [
        node(true, "", None, 5),
        node(false, "0-2-1", None, 5),
        down(),
    ];
    let actions = round(&probes, &ClusterState::default(), &mut mem);
    assert_eq!(actions[0], Action::ChoosePrimary(1));
}
