//! Faults, the end-of-run checks and the trace.

use std::time::Duration;

use rand::Rng;

use super::{Ev, World};
use crate::Failure;
use crate::cluster::ClusterReport;

/// Faults and the end.
impl World {
    pub(super) fn fault(&mut self) {
        let now = self.agenda.now();
        let node = self.rng.random_range(0..self.config.nodes);
        let ttl = self.config.lease_ttl;
        let alive = self.nodes[node].core.is_some() && self.nodes[node].paused_until.is_none();
        let kind = match self.rng.random_range(0..5u32) {
            0 if alive => {
                self.kill(node);
                let wait = Duration::from_millis(self.rng.random_range(1_000..10_000));
                self.agenda.after(wait, Ev::Restart { node });
                "kill"
            }
            1 if alive => {
                let wait = ttl + Duration::from_millis(self.rng.random_range(0..10_000));
                self.nodes[node].paused_until = Some(now + wait);
                self.agenda.after(wait, Ev::Wake { node });
                self.trace(format!("{} pauses for {wait:?}", self.nodes[node].name));
                "pause past the lease"
            }
            2 => {
                let wait = Duration::from_millis(self.rng.random_range(1_000..15_000));
                self.nodes[node].partitioned_until = Some(now + wait);
                self.trace(format!(
                    "{} is cut off from Redis for {wait:?}",
                    self.nodes[node].name
                ));
                "partition"
            }
            3 if alive => {
                self.trace(format!(
                    "{} shuts down (rolling restart)",
                    self.nodes[node].name
                ));
                self.with_core(node, |core| core.handle_shutdown(now));
                "rolling restart"
            }
            4 => {
                let wait = Duration::from_millis(self.rng.random_range(1_000..10_000));
                self.slow_until = Some(now + wait);
                self.trace(format!("Redis is slow for {wait:?}"));
                "redis slow"
            }
            _ => return,
        };
        *self.report.faults.entry(kind).or_default() += 1;
    }

    pub(super) fn finish(mut self) -> Result<ClusterReport, Failure> {
        for shard in 0..self.config.shards {
            let holders: Vec<usize> = (0..self.config.nodes)
                .filter(|n| {
                    (self.nodes[*n].core.as_ref())
                        .is_some_and(|c| c.held().any(|(s, _)| s == shard))
                })
                .collect();
            if holders.len() != 1 {
                return Err(self.fail(format!(
                    "shard {shard} is held by {holders:?} after settling"
                )));
            }
            let g = &self.gateway[shard as usize];
            let connected = g.holder.is_some_and(|(n, _)| n == holders[0]);
            let Some(session) = g.session.clone().filter(|_| connected) else {
                return Err(self.fail(format!("shard {shard} is not connected after settling")));
            };
            let (log, last) = (g.log, self.streams[shard as usize].last(&session));
            if last != Some(log) {
                return Err(self.fail(format!(
                    "shard {shard}: the gateway sent up to #{log} in {session}, the stream holds up to {last:?}"
                )));
            }
        }
        self.report.simulated = self.agenda.elapsed();
        self.report.entries = self.streams.iter().map(|s| s.entries).sum();
        Ok(self.report)
    }

    pub(super) fn trace(&mut self, line: String) {
        if self.trace.len() >= self.config.trace.max(1) {
            self.trace.pop_front();
        }
        let at = self.agenda.elapsed();
        self.trace
            .push_back(format!("{:>10.3}s {line}", at.as_secs_f64()));
    }

    pub(super) fn fail(&self, violation: String) -> Failure {
        Failure {
            seed: self.config.seed,
            at: self.agenda.elapsed(),
            violation,
            trace: self.trace.iter().cloned().collect(),
        }
    }
}
