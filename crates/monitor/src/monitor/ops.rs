//! Operator requests: planned switchover, forced failover, letting a
//! diverged node rejoin. Each takes the same lock as the control loop.

use super::{now_ms, Monitor};
use crate::actions;
use crate::gtid::Position;
use crate::state::Failover;
use std::time::Instant;

impl Monitor {
    fn primary_index(&self, st: &crate::state::ClusterState) -> Result<usize, String> {
        st.primary
            .as_deref()
            .and_then(|n| self.index(n))
            .ok_or_else(|| "no primary".to_string())
    }

    /// Moves the primary role to `to` (or the best replica) with no lost writes.
    pub async fn switchover(&self, to: Option<&str>) -> Result<Failover, String> {
        let _tick = self.ops.lock().await;
        let started = Instant::now();
        let mut st = self.state();
        let p = self.primary_index(&st)?;
        let probes = self.probe_all().await;
        probes[p]
            .as_ref()
            .map_err(|e| format!("the primary is unreachable ({e}): use `webinfra db failover`"))?;
        let t = match to {
            Some(name) => self
                .index(name)
                .ok_or(format!("no database node named {name}"))?,
            None => (0..self.nodes.len())
                .filter(|i| *i != p && probes[*i].as_ref().is_ok_and(|r| r.slave.is_some()))
                .max_by_key(|i| {
                    probes[*i]
                        .as_ref()
                        .map(|r| Position::parse(&r.gtid_current_pos).total())
                        .unwrap_or(0)
                })
                .ok_or("no replica to switch over to")?,
        };
        if t == p {
            return Err(format!(
                "{} is already the primary",
                self.nodes[p].spec.name
            ));
        }
        let tp = probes[t]
            .as_ref()
            .map_err(|e| format!("{} is unreachable: {e}", self.nodes[t].spec.name))?;
        if !tp
            .slave
            .as_ref()
            .is_some_and(|s| s.io_running == "Yes" && s.sql_running == "Yes")
        {
            return Err(format!(
                "{} is not replicating from the primary",
                self.nodes[t].spec.name
            ));
        }
        // Writes pause here: the old primary turns read-only.
        let mut old = self.conn(p).await?;
        actions::fence(&mut old).await.map_err(|e| e.to_string())?;
        let paused = Instant::now();
        let pos: Option<String> =
            mysql_async::prelude::Queryable::query_first(&mut old, "SELECT @@gtid_binlog_pos")
                .await
                .map_err(|e| e.to_string())?;
        let pos = pos.unwrap_or_default();
        let mut new = self.conn(t).await?;
        let caught_up = actions::wait_applied(&mut new, &pos, 5.0)
            .await
            .map_err(|e| e.to_string())?;
        if !caught_up {
            let _ =
                mysql_async::prelude::Queryable::query_drop(&mut old, "SET GLOBAL read_only = OFF")
                    .await;
            return Err(format!(
                "{} did not catch up to {pos} in 5 s; switchover cancelled",
                self.nodes[t].spec.name
            ));
        }
        actions::promote(&mut new)
            .await
            .map_err(|e| e.to_string())?;
        let pause = paused.elapsed();
        let record = Failover {
            at_ms: now_ms(),
            kind: "switchover".into(),
            from: self.nodes[p].spec.name.clone(),
            to: self.nodes[t].spec.name.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            reason: format!("requested; writes paused {} ms", pause.as_millis()),
            writes_paused_ms: Some(pause.as_millis() as u64),
        };
        st.primary = Some(self.nodes[t].spec.name.clone());
        st.changes += 1;
        st.last_failover = Some(record.clone());
        self.save(st);
        let addr = self.nodes[t].spec.sql;
        let _ = actions::replicate_from(&mut old, addr, &self.repl_password, true).await;
        let probes = self.probe_all().await;
        self.publish(&probes, &self.state(), None);
        tracing::warn!(from = %record.from, to = %record.to, pause_ms = pause.as_millis() as u64, "switchover done");
        Ok(record)
    }

    /// Promotes the best replica now, fencing the primary first if it answers.
    pub async fn force_failover(&self) -> Result<Failover, String> {
        let reachable = {
            let st = self.state();
            let p = st
                .primary
                .as_deref()
                .and_then(|n| self.index(n))
                .ok_or("no primary")?;
            self.conn(p).await.is_ok()
        };
        if reachable {
            return self.switchover(None).await;
        }
        let _tick = self.ops.lock().await;
        let mut st = self.state();
        let p = self.primary_index(&st)?;
        let probes = self.probe_all().await;
        let started = Instant::now();
        self.promote_best(
            p,
            &probes,
            &mut st,
            "forced",
            "requested by the operator",
            started,
            None,
        )
        .await
        .ok_or_else(|| "no replica could be promoted".to_string())?;
        st.last_failover
            .clone()
            .ok_or_else(|| "no record".to_string())
    }

    /// Lets a diverged node try to rejoin (after an operator fixed its data).
    pub fn rejoin(&self, name: &str) -> Result<(), String> {
        self.index(name)
            .ok_or(format!("no database node named {name}"))?;
        let mut st = self.state();
        st.diverged.retain(|n| n != name);
        self.save(st);
        Ok(())
    }
}
