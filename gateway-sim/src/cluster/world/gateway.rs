//! The gateway's side: connections, sessions, replay and traffic.

use std::time::Duration;

use gateway_model::{
    Dispatch, DispatchEvent, PartialApplication, RawDispatch, RawJson, Ready, Snowflake, User,
};
use gateway_shard::ShardEvent;
use rand::Rng;

use super::{Ev, World};
use crate::Failure;

/// The gateway's side.
impl World {
    pub(super) fn connected(&mut self, node: usize, shard: u32, conn: u64) -> Result<(), Failure> {
        let Some(slot) = self.nodes[node]
            .slots
            .get(&shard)
            .filter(|s| s.conn == conn)
        else {
            return Ok(());
        };
        let resuming = slot.session.clone();
        let from = slot.seq;
        if let Some((other, _)) = (self.conns.iter())
            .map(|(_, (n, s))| (*n, *s))
            .find(|(n, s)| *s == shard && *n != node && self.is_running(*n))
        {
            let name = &self.nodes[other].name;
            return Err(self.fail(format!(
                "shard {shard}: {} connects while {name} is connected",
                self.nodes[node].name
            )));
        }
        self.conns.insert(conn, (node, shard));
        let g = &mut self.gateway[shard as usize];
        // A RESUME moves the session to this connection; the old one is closed.
        if let Some((_, old)) = g.holder.replace((node, conn)) {
            self.conns.remove(&old);
        }
        let life = self.nodes[node].life;
        let g = &mut self.gateway[shard as usize];
        if resuming.is_some() && resuming == g.session {
            self.report.resumes += 1;
            g.log += 1;
            let (log, replayed) = (g.log, g.log - 1 - from.min(g.log - 1));
            for seq in from + 1..log {
                let event = dispatch(seq);
                self.send(node, life, shard, conn, event);
            }
            let event = ShardEvent::Resumed { replayed, seq: log };
            self.send(node, life, shard, conn, event);
        } else {
            if let Some(handed) = self.handed.get(&shard)
                && g.session.as_ref() == Some(handed)
            {
                return Err(self.fail(format!(
                    "shard {shard}: IDENTIFY after a graceful handoff of live session {handed}"
                )));
            }
            self.report.identifies += 1;
            g.sessions += 1;
            let session = format!("s{shard}-{}", g.sessions);
            g.session = Some(session.clone());
            g.log = 1;
            self.send(node, life, shard, conn, ready(&session));
        }
        Ok(())
    }

    pub(super) fn is_running(&self, node: usize) -> bool {
        let n = &self.nodes[node];
        n.core.is_some() && n.paused_until.is_none()
    }

    pub(super) fn send(
        &mut self,
        node: usize,
        life: u64,
        shard: u32,
        conn: u64,
        event: ShardEvent,
    ) {
        let latency = Duration::from_millis(self.rng.random_range(1..60));
        let ev = Ev::Deliver {
            node,
            life,
            shard,
            conn,
            event,
        };
        self.agenda.send(conn, false, latency, ev);
    }

    /// An event reaches a node's shard, and its user: the core.
    pub(super) fn deliver(&mut self, node: usize, shard: u32, conn: u64, event: ShardEvent) {
        let now = self.agenda.now();
        let Some(slot) = self.nodes[node]
            .slots
            .get_mut(&shard)
            .filter(|s| s.conn == conn)
        else {
            return;
        };
        match &event {
            ShardEvent::Ready(r) => {
                slot.session = Some(r.session_id.clone());
                slot.seq = 1;
            }
            ShardEvent::Resumed { seq, .. } => slot.seq = *seq,
            ShardEvent::Dispatch(d) => slot.seq = d.seq,
            _ => {}
        }
        self.with_core(node, |core| core.handle_shard_event(now, shard, event));
    }

    /// The gateway sends a dispatch in a random shard's session (kept for a RESUME if no one is
    /// connected).
    pub(super) fn traffic(&mut self) {
        let shard = self.rng.random_range(0..self.config.shards);
        let g = &mut self.gateway[shard as usize];
        if g.session.is_none() {
            return;
        }
        g.log += 1;
        self.report.dispatches += 1;
        let seq = g.log;
        if let Some((node, conn)) = g.holder {
            let life = self.nodes[node].life;
            self.send(node, life, shard, conn, dispatch(seq));
        }
    }
}

pub(super) fn dispatch(seq: u64) -> ShardEvent {
    let data = RawJson::from_string(format!(r#"{{"n":{seq}}}"#));
    ShardEvent::Dispatch(Dispatch {
        seq,
        event: DispatchEvent::Other(RawDispatch {
            name: "SIM_EVENT".into(),
            data: data.unwrap_or_else(|_| unreachable!("a number is JSON")),
        }),
    })
}

pub(super) fn ready(session: &str) -> ShardEvent {
    ShardEvent::Ready(Box::new(Ready {
        v: Some(10),
        user: User {
            id: Snowflake::new(1),
            username: "sim".into(),
            discriminator: None,
            global_name: None,
            avatar: None,
            bot: true,
        },
        guilds: vec![],
        session_id: session.into(),
        resume_gateway_url: "ws://gateway.sim".into(),
        shard: None,
        application: PartialApplication {
            id: Snowflake::new(2),
            flags: 0,
        },
        raw: None,
    }))
}
