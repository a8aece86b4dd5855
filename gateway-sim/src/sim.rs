//! The simulation: N shard sessions, one chunk tracker, one identify schedule and the fake
//! gateway's core, wired through the in-memory network on virtual time and one seeded RNG.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use gateway_chunking::{Tracker, TrackerConfig, TrackerOutput};
use gateway_model::{Command, Intents, OpCode};
use gateway_shard::identify::{Grant, IDENTIFY_WINDOW, IdentifySchedule, Ticket, spacing};
use gateway_shard::{Action, Output, SessionState, ShardEvent};
use gateway_testkit::core::{Frame, GatewayCore, Output as ServerOutput};
use gateway_testkit::{Fault, GatewayConfig, Trigger, WorldConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check::{Chunking, Identifies};
use crate::client::{Client, TOKEN};
use crate::faults::MAX_MESSAGE;
use crate::faults::{self, Planned};
use crate::net::{Agenda, Event};
use crate::{Failure, Report, SimConfig};

/// Events at one virtual instant past which a component is taken to spin.
const SPIN: u64 = 1_000_000;

/// The whole world of one run.
pub(crate) struct Sim {
    pub(crate) config: SimConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) agenda: Agenda,
    pub(crate) core: GatewayCore,
    clients: Vec<Client>,
    tracker: Tracker,
    schedule: IdentifySchedule,
    tickets: BTreeMap<Ticket, u32>,
    /// Each connection's shard and latency, while the gateway knows it.
    conns: BTreeMap<u64, (u32, Duration)>,
    next_conn: u64,
    timers: [(Option<Instant>, u64); 3],
    dirty: BTreeSet<u32>,
    tracker_dirty: bool,
    schedule_dirty: bool,
    trace: VecDeque<String>,
    identifies: Identifies,
    chunking: Chunking,
    pub(crate) faults: BTreeMap<&'static str, u64>,
    pub(crate) restarted: bool,
    events: u64,
    same_instant: (Instant, u64),
    peak_sessions: usize,
    peak_requests: usize,
}

const CORE: usize = 0;
const TRACKER: usize = 1;
const SCHEDULE: usize = 2;

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Self {
        // The virtual clock's origin: any instant will do, nothing is measured by the wall clock.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let shards = config.shards;
        let guilds = (shards as usize * config.guilds_per_shard).max(1);
        let guild_sizes = (0..guilds)
            .map(|i| {
                if i % 10 == 3 {
                    rng.random_range(1_200..2_600)
                } else {
                    rng.random_range(5..120)
                }
            })
            .collect();
        let gateway = GatewayConfig {
            token: TOKEN.to_owned(),
            max_concurrency: config.max_concurrency,
            recommended_shards: shards,
            identify_window: IDENTIFY_WINDOW,
            history_limit: 256,
            session_start_limit: u32::MAX,
            world: WorldConfig {
                seed: config.seed,
                guild_sizes,
                unavailable: 0,
            },
            ..GatewayConfig::default()
        };
        let core = GatewayCore::new(gateway, "ws://gateway.sim", start);
        let intents = Intents::GUILDS | Intents::GUILD_MEMBERS;
        let clients = (0..shards)
            .map(|id| Client::new(&config, id, start))
            .collect();
        let mut tracker_config = TrackerConfig::new(shards, 0..shards, intents);
        tracker_config.auto_chunk = true;
        // Missed chunks are asked for again, so that re-requests meet RATE_LIMITED.
        tracker_config.rerequest_missed = true;
        tracker_config.seed = config.seed;
        let identifies = Identifies::new(IDENTIFY_WINDOW, config.max_concurrency);
        Self {
            rng,
            agenda: Agenda::new(start),
            core,
            clients,
            tracker: Tracker::new(tracker_config),
            schedule: IdentifySchedule::new(spacing(IDENTIFY_WINDOW)),
            tickets: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            timers: [(None, 0); 3],
            dirty: (0..shards).collect(),
            tracker_dirty: true,
            schedule_dirty: true,
            trace: VecDeque::new(),
            identifies,
            chunking: Chunking::default(),
            faults: BTreeMap::new(),
            restarted: false,
            events: 0,
            same_instant: (start, 0),
            peak_sessions: 0,
            peak_requests: 0,
            config,
        }
    }

    /// Runs to the end and checks what must hold once everything settled.
    pub(crate) fn run(mut self) -> Result<Report, Failure> {
        let start = self.agenda.now();
        let faults_end = start + self.config.duration;
        let end = faults_end + self.config.settle;
        self.settle()?;
        self.schedule_first();
        while let Some(event) = self.agenda.pop(end) {
            self.events += 1;
            let now = self.agenda.now();
            if self.same_instant.0 == now {
                self.same_instant.1 += 1;
                if self.same_instant.1 > SPIN {
                    return Err(self.fail(format!("over {SPIN} events at one instant: a spin")));
                }
            } else {
                self.same_instant = (now, 0);
            }
            let injecting = now < faults_end;
            self.handle(event, injecting)?;
            self.settle()?;
            self.peak_sessions = self.peak_sessions.max(self.core.state_counts().sessions);
            self.peak_requests = self.peak_requests.max(self.tracker.open_requests());
        }
        self.finish()
    }

    fn handle(&mut self, event: Event, injecting: bool) -> Result<(), Failure> {
        let now = self.agenda.now();
        match event {
            Event::ShardTimer { shard, generation } => {
                let client = &mut self.clients[shard as usize];
                if client.timer_generation == generation {
                    client.timer = None;
                    client.session.handle_timeout(now);
                    self.dirty.insert(shard);
                }
            }
            Event::CoreTimer { generation } => {
                if self.timers[CORE].1 == generation {
                    self.timers[CORE].0 = None;
                    self.core.handle_timeout(now);
                }
            }
            Event::TrackerTimer { generation } => {
                if self.timers[TRACKER].1 == generation {
                    self.timers[TRACKER].0 = None;
                    self.tracker.handle_timeout(now);
                    self.tracker_dirty = true;
                }
            }
            Event::ScheduleTimer { generation } => {
                if self.timers[SCHEDULE].1 == generation {
                    self.timers[SCHEDULE].0 = None;
                    self.schedule.handle_timeout(now);
                    self.schedule_dirty = true;
                }
            }
            Event::Opened {
                shard,
                conn,
                query,
                refused,
            } => self.opened(shard, conn, &query, refused),
            Event::ToServer { conn, frame } => {
                if let Frame::Text(text) = &frame
                    && self.core.is_open(conn)
                    && gateway_codec::scan_envelope(text.as_bytes())
                        .is_ok_and(|p| p.op == OpCode::Identify)
                    && let Some((shard, _)) = self.conns.get(&conn)
                {
                    let shard = *shard;
                    self.trace(format!("shard {shard} conn {conn}: IDENTIFY arrives"));
                    if let Err(e) = self.identifies.arrived(shard, now) {
                        return Err(self.fail(e));
                    }
                }
                self.core.handle_frame(now, conn, frame);
            }
            Event::ClientClosed { conn, code } => {
                self.trace(format!("conn {conn}: the client's close {code} arrives"));
                self.core.handle_close_frame(now, conn, Some(code));
            }
            Event::ServerLost { conn } => {
                self.core.handle_disconnected(now, conn);
                self.conns.remove(&conn);
                self.agenda.forget_link(conn);
            }
            Event::ToClient {
                shard,
                conn,
                frames,
            } => self.frames_arrive(shard, conn, frames),
            Event::ClientLost { shard, conn, code } => {
                let client = &mut self.clients[shard as usize];
                if client.conn == Some(conn) {
                    client.conn = None;
                    client.session.handle_closed(now, code);
                    self.dirty.insert(shard);
                    self.trace(format!("shard {shard} conn {conn}: lost ({code:?})"));
                }
            }
            Event::Fault => {
                if injecting {
                    self.inject();
                }
            }
            Event::Traffic => {
                if injecting {
                    self.traffic();
                }
            }
            Event::Restart => {
                if injecting {
                    self.trace("the gateway restarts: every session is forgotten".to_owned());
                    self.restarted = true;
                    self.core.handle_restart(now);
                }
            }
        }
        Ok(())
    }

    fn opened(&mut self, shard: u32, conn: u64, query: &str, refused: bool) {
        let now = self.agenda.now();
        let client = &mut self.clients[shard as usize];
        if client.opening != Some(conn) {
            // The session gave up on this attempt meanwhile.
            return;
        }
        client.opening = None;
        self.dirty.insert(shard);
        if refused {
            client
                .session
                .handle_connect_failed(now, "connection refused (simulated)");
            self.conns.remove(&conn);
            return;
        }
        client.conn = Some(conn);
        client.session.handle_connected(now);
        self.core
            .handle_open(now, conn, query, Some("gateway-sim".to_owned()));
        self.trace(format!("shard {shard} conn {conn}: open"));
    }

    fn frames_arrive(&mut self, shard: u32, conn: u64, frames: Vec<Frame>) {
        let now = self.agenda.now();
        let client = &mut self.clients[shard as usize];
        self.dirty.insert(shard);
        for frame in frames {
            if client.conn != Some(conn) {
                return;
            }
            let bytes: &[u8] = match &frame {
                Frame::Text(t) => t.as_bytes(),
                Frame::Binary(b) => b,
            };
            // The websocket refuses a message over its limit before anyone reads it, as
            // tungstenite's `max_message_size` does under the shard's driver.
            if bytes.len() > MAX_MESSAGE {
                client.session.handle_message_too_large(now);
            } else {
                client.session.handle_message(now, bytes);
            }
            // A session that closed (a decode error, an oversize message) reads no more of it.
            while let Some(output) = client.session.poll_output(now) {
                if let Output::Action(Action::Close { .. } | Action::Connect { .. }) = &output {
                    client.conn = None;
                    client.closing = Some(conn);
                }
                client.outbox.push_back(output);
            }
        }
    }

    /// Brings every component to rest: each output acted on, until none has any.
    fn settle(&mut self) -> Result<(), Failure> {
        loop {
            self.drain_core()?;
            while let Some(shard) = self.dirty.pop_first() {
                self.drain_shard(shard)?;
            }
            if std::mem::take(&mut self.schedule_dirty) {
                self.drain_schedule();
            }
            if std::mem::take(&mut self.tracker_dirty) {
                self.drain_tracker()?;
            }
            if self.dirty.is_empty() && !self.schedule_dirty && !self.tracker_dirty {
                break;
            }
        }
        let core = self.core.poll_timeout();
        self.rearm(CORE, core);
        let tracker = self.tracker.poll_timeout();
        self.rearm(TRACKER, tracker);
        let schedule = self.schedule.poll_timeout();
        self.rearm(SCHEDULE, schedule);
        Ok(())
    }

    fn rearm(&mut self, which: usize, at: Option<Instant>) {
        if self.timers[which].0 == at {
            return;
        }
        self.timers[which].0 = at;
        self.timers[which].1 += 1;
        let generation = self.timers[which].1;
        if let Some(at) = at {
            let event = match which {
                CORE => Event::CoreTimer { generation },
                TRACKER => Event::TrackerTimer { generation },
                _ => Event::ScheduleTimer { generation },
            };
            self.agenda.at(at, event);
        }
    }

    fn latency(&self, conn: u64) -> Duration {
        self.conns
            .get(&conn)
            .map_or(Duration::from_millis(1), |(_, l)| *l)
    }

    fn drain_core(&mut self) -> Result<(), Failure> {
        let now = self.agenda.now();
        while let Some(output) = self.core.poll_output(now) {
            let (conn, code) = match &output {
                ServerOutput::Frames { conn, .. } => (*conn, None),
                ServerOutput::Close { conn, code, .. } => (*conn, Some(Some(*code))),
                ServerOutput::Drop { conn } => (*conn, Some(None)),
            };
            let Some(&(shard, latency)) = self.conns.get(&conn) else {
                continue;
            };
            match output {
                ServerOutput::Frames { frames, .. } => {
                    let event = Event::ToClient {
                        shard,
                        conn,
                        frames,
                    };
                    self.agenda.send(conn, false, latency, event);
                }
                _ => {
                    let code = code.flatten();
                    self.trace(format!(
                        "shard {shard} conn {conn}: the gateway closes ({code:?})"
                    ));
                    if code == Some(4008) {
                        return Err(self.fail(format!(
                            "shard {shard} was closed with 4008: over the rate limit"
                        )));
                    }
                    self.agenda.send(
                        conn,
                        false,
                        latency,
                        Event::ClientLost { shard, conn, code },
                    );
                    self.conns.remove(&conn);
                }
            }
        }
        Ok(())
    }

    fn drain_shard(&mut self, shard: u32) -> Result<(), Failure> {
        let now = self.agenda.now();
        loop {
            let client = &mut self.clients[shard as usize];
            let output = match client.outbox.pop_front() {
                Some(output) => output,
                None => match client.session.poll_output(now) {
                    Some(output) => output,
                    None => break,
                },
            };
            match output {
                Output::Action(Action::Connect { url }) => self.connect(shard, &url),
                Output::Action(Action::Close { code }) => {
                    let client = &mut self.clients[shard as usize];
                    client.opening = None;
                    if let Some(conn) = client.conn.take().or(client.closing.take()) {
                        let latency = self.latency(conn);
                        self.trace(format!("shard {shard} conn {conn}: closes with {code}"));
                        self.agenda
                            .send(conn, true, latency, Event::ClientClosed { conn, code });
                    }
                }
                Output::Action(Action::AwaitIdentify) => {
                    let ticket =
                        self.schedule
                            .handle_request(now, shard, self.config.max_concurrency);
                    self.tickets.insert(ticket, shard);
                    self.clients[shard as usize].ticket = Some(ticket);
                    self.schedule_dirty = true;
                }
                Output::Transmit(frame) => {
                    if let Some(conn) = self.clients[shard as usize].conn {
                        let latency = self.latency(conn);
                        let event = Event::ToServer {
                            conn,
                            frame: Frame::Text(frame),
                        };
                        self.agenda.send(conn, true, latency, event);
                    }
                }
                Output::Action(Action::CancelConnect) => {
                    // A connection that opens now is dropped when it does (`opened`).
                    self.clients[shard as usize].opening = None;
                }
                Output::Action(Action::CancelIdentify) => {
                    let client = &mut self.clients[shard as usize];
                    if let Some(ticket) = client.ticket.take() {
                        self.tickets.remove(&ticket);
                        self.schedule.handle_cancel(now, ticket);
                        self.schedule_dirty = true;
                    }
                }
                Output::Event { event, .. } => self.deliver(shard, &event)?,
            }
        }
        let client = &mut self.clients[shard as usize];
        let at = client.session.poll_timeout();
        if client.timer != at {
            client.timer = at;
            client.timer_generation += 1;
            let generation = client.timer_generation;
            if let Some(at) = at {
                self.agenda.at(at, Event::ShardTimer { shard, generation });
            }
        }
        Ok(())
    }

    /// The session opens a websocket: the old one (if any) is gone, and the handshake takes a
    /// round trip (or is refused, now and then).
    fn connect(&mut self, shard: u32, url: &str) {
        let now = self.agenda.now();
        let (low, high) = self.config.latency_ms;
        let latency = Duration::from_millis(self.rng.random_range(low..=high.max(low)));
        let refused = self.rng.random_bool(0.01);
        self.next_conn += 1;
        let conn = self.next_conn;
        let client = &mut self.clients[shard as usize];
        let old = client.conn.take().or(client.closing.take());
        client.opening = Some(conn);
        client.session.handle_connect_started(now);
        if let Some(old) = old {
            let l = self.latency(old);
            self.agenda
                .send(old, true, l, Event::ServerLost { conn: old });
        }
        self.conns.insert(conn, (shard, latency));
        let query = url.split_once('?').map_or("", |(_, q)| q).to_owned();
        self.trace(format!(
            "shard {shard} conn {conn}: connecting ({latency:?})"
        ));
        self.agenda.after(
            latency * 2,
            Event::Opened {
                shard,
                conn,
                query,
                refused,
            },
        );
    }

    /// An event reaches the shard's user: checked, and fed to the chunk tracker.
    fn deliver(&mut self, shard: u32, event: &ShardEvent) -> Result<(), Failure> {
        if let Err(e) = self.clients[shard as usize].stream.see(event) {
            return Err(self.fail(format!("shard {shard}: {e}")));
        }
        match event {
            ShardEvent::Dispatch(_) | ShardEvent::HeartbeatAck { .. } => {}
            other => {
                let line = format!("shard {shard}: {}", short(other));
                self.trace(line);
            }
        }
        let now = self.agenda.now();
        self.tracker.handle_shard_event(now, shard, event);
        self.tracker_dirty = true;
        Ok(())
    }

    fn drain_schedule(&mut self) {
        let now = self.agenda.now();
        while let Some(grant) = self.schedule.poll_output(now) {
            let (ticket, refused) = match grant {
                Grant::Granted(ticket) => (ticket, None),
                Grant::Refused { ticket, retry_in } => (ticket, Some(retry_in)),
            };
            let Some(shard) = self.tickets.remove(&ticket) else {
                continue;
            };
            let client = &mut self.clients[shard as usize];
            client.ticket = None;
            match refused {
                None => client.session.handle_identify_permitted(now),
                Some(retry_in) => {
                    client
                        .session
                        .handle_identify_refused(now, retry_in, "the budget is spent");
                }
            }
            self.dirty.insert(shard);
        }
    }

    fn drain_tracker(&mut self) -> Result<(), Failure> {
        let now = self.agenda.now();
        while let Some(output) = self.tracker.poll_output(now) {
            match output {
                TrackerOutput::Send { shard, request } => {
                    self.chunking.sent(request.nonce());
                    let Some(client) = self.clients.get_mut(shard as usize) else {
                        continue;
                    };
                    let command = Command::RequestGuildMembers(request);
                    if let Err(e) = client.session.handle_command(now, command) {
                        // The request stays tracked and times out.
                        self.trace(format!("shard {shard}: member request refused: {e}"));
                    }
                    self.dirty.insert(shard);
                }
                TrackerOutput::Event(event) => {
                    if let Err(e) = self.chunking.see(&event) {
                        return Err(self.fail(e));
                    }
                }
            }
        }
        Ok(())
    }

    /// The final checks, once the world settled with no fault for a while.
    fn finish(self) -> Result<Report, Failure> {
        for (shard, client) in self.clients.iter().enumerate() {
            if client.session.state() != SessionState::Connected {
                let state = client.session.state();
                return Err(self.fail(format!("shard {shard} is {state:?} after settling")));
            }
            let Some(session) = client.stream.session.as_deref() else {
                return Err(self.fail(format!("shard {shard} never got READY")));
            };
            match self.core.session_seq(session) {
                Some(sent) if sent == client.stream.last => {}
                Some(sent) => {
                    let got = client.stream.last;
                    return Err(self.fail(format!(
                        "shard {shard}: the gateway sent up to #{sent} in session {session}, the user got up to #{got}"
                    )));
                }
                None => {
                    return Err(self.fail(format!(
                        "shard {shard}: its user is in session {session}, which the gateway does not know"
                    )));
                }
            }
        }
        let unresolved = self.chunking.unresolved();
        if let Some(nonce) = unresolved.first() {
            let n = unresolved.len();
            return Err(self.fail(format!("{n} member requests never resolved, e.g. {nonce}")));
        }
        for (shard, client) in self.clients.iter().enumerate() {
            let finished = self
                .chunking
                .shard_finished
                .get(&(shard as u32))
                .copied()
                .unwrap_or(0);
            if finished != client.stream.readies {
                let readies = client.stream.readies;
                return Err(self.fail(format!(
                    "shard {shard}: \"shard finished chunking\" {finished} times for {readies} READYs"
                )));
            }
        }
        if self.chunking.finished != 1 {
            let n = self.chunking.finished;
            return Err(self.fail(format!("\"finished chunking\" {n} times in one start")));
        }
        let sessions = 2 * self.clients.len() + 16;
        if self.peak_sessions > sessions {
            let peak = self.peak_sessions;
            return Err(self.fail(format!(
                "the gateway held {peak} sessions at once (bound {sessions})"
            )));
        }
        let guilds = self.clients.len() * self.config.guilds_per_shard;
        if self.peak_requests > guilds {
            let peak = self.peak_requests;
            return Err(self.fail(format!(
                "{peak} member requests open at once for {guilds} guilds"
            )));
        }
        let bound = 64 * self.clients.len() + 4096;
        if self.agenda.peak > bound {
            let peak = self.agenda.peak;
            return Err(self.fail(format!("{peak} events waited at once (bound {bound})")));
        }
        let streams = self.clients.iter().map(|c| &c.stream);
        Ok(Report {
            seed: self.config.seed,
            shards: self.config.shards,
            simulated: self.agenda.elapsed(),
            events: self.events,
            dispatches: streams.clone().map(|s| s.dispatches).sum(),
            readies: streams.clone().map(|s| s.readies).sum(),
            resumes: streams.map(|s| s.resumes).sum(),
            identifies: self.identifies.count,
            faults: self.faults.clone(),
            chunk_requests: self.chunking.requests(),
            chunk_outcomes: self.chunking.outcomes.clone(),
            restarted: self.restarted,
            peak_agenda: self.agenda.peak,
            peak_server_sessions: self.peak_sessions,
            peak_open_requests: self.peak_requests,
        })
    }

    /// Notes an event for a failure report, keeping the last few.
    pub(crate) fn trace(&mut self, line: String) {
        if self.trace.len() >= self.config.trace.max(1) {
            self.trace.pop_front();
        }
        let at = self.agenda.elapsed();
        self.trace
            .push_back(format!("{:>10.3}s {line}", at.as_secs_f64()));
    }

    pub(crate) fn fail(&self, violation: String) -> Failure {
        Failure {
            seed: self.config.seed,
            at: self.agenda.elapsed(),
            violation,
            trace: self.trace.iter().cloned().collect(),
        }
    }

    /// The live connection of `shard`, as the gateway knows it.
    pub(crate) fn live_conn(&self, shard: u32) -> Option<u64> {
        self.clients[shard as usize]
            .conn
            .filter(|c| self.core.is_open(*c))
    }

    /// Cuts `shard`'s connection on both sides, as a network failure does.
    pub(crate) fn cut(&mut self, shard: u32, conn: u64) {
        let latency = self.latency(conn);
        self.agenda.after(
            latency,
            Event::ClientLost {
                shard,
                conn,
                code: None,
            },
        );
        self.agenda
            .send(conn, true, latency, Event::ServerLost { conn });
    }
}

impl Sim {
    /// The first fault, the first traffic, and perhaps a server restart.
    fn schedule_first(&mut self) {
        let wait = faults::exponential(&mut self.rng, faults::fault_mean(&self.config));
        self.agenda.after(wait, Event::Fault);
        let wait = faults::exponential(&mut self.rng, faults::traffic_mean(&self.config));
        self.agenda.after(wait, Event::Traffic);
        if self
            .rng
            .random_bool(self.config.restart_chance.clamp(0.0, 1.0))
        {
            let at = self
                .config
                .duration
                .mul_f64(self.rng.random_range(0.2..0.8));
            self.agenda.after(at, Event::Restart);
        }
    }

    /// Sends a dispatch to a random shard's session, and schedules the next.
    fn traffic(&mut self) {
        let shard = self.rng.random_range(0..self.config.shards);
        let data = faults::traffic_data(&mut self.rng);
        if let Some(conn) = self.live_conn(shard) {
            let now = self.agenda.now();
            self.core.handle_dispatch(now, conn, "SIM_EVENT", &data);
        }
        let wait = faults::exponential(&mut self.rng, faults::traffic_mean(&self.config));
        self.agenda.after(wait, Event::Traffic);
    }

    /// Draws one fault, applies it to a random shard, and schedules the next.
    fn inject(&mut self) {
        let shard = self.rng.random_range(0..self.config.shards);
        let planned = faults::draw(&mut self.rng);
        let now = self.agenda.now();
        let conn = self.live_conn(shard);
        let name = match (planned, conn) {
            (Planned::NextConnection(fault), _) => {
                self.core.handle_next_connection_fault(now, fault);
                Some("next connection")
            }
            (_, None) => None,
            (Planned::Now(name, fault), Some(conn)) => {
                self.trace(format!("shard {shard} conn {conn}: fault {fault:?}"));
                self.core.handle_fault(now, conn, Trigger::Now, fault);
                Some(name)
            }
            (Planned::CloseLater(after, code), Some(conn)) => {
                let fault = Fault::Close(code);
                self.core
                    .handle_fault(now, conn, Trigger::After(after), fault);
                Some("close later")
            }
            (Planned::Cut, Some(conn)) => {
                self.trace(format!("shard {shard} conn {conn}: the network fails"));
                self.cut(shard, conn);
                Some("network cut")
            }
            (Planned::CutMidBurst(n), Some(conn)) => {
                for i in 0..n {
                    let data = format!(r#"{{"burst":{i}}}"#);
                    self.core.handle_dispatch(now, conn, "SIM_EVENT", &data);
                }
                self.trace(format!(
                    "shard {shard} conn {conn}: the network fails mid-burst"
                ));
                self.cut(shard, conn);
                Some("cut mid-burst")
            }
        };
        if let Some(name) = name {
            *self.faults.entry(name).or_default() += 1;
        }
        let wait = faults::exponential(&mut self.rng, faults::fault_mean(&self.config));
        self.agenda.after(wait, Event::Fault);
    }
}

/// An event in a few words, for the trace.
fn short(event: &ShardEvent) -> String {
    match event {
        ShardEvent::Ready(ready) => format!("READY {}", ready.session_id),
        ShardEvent::Resumed { replayed, .. } => format!("RESUMED after {replayed} replayed"),
        ShardEvent::Disconnected { code, reason, next } => {
            format!("disconnected ({code:?}, {reason}), then {next:?}")
        }
        ShardEvent::ConnectFailed { reason, retry_in } => {
            format!("connect failed ({reason}), retry in {retry_in:?}")
        }
        other => format!("{other:?}").chars().take(120).collect(),
    }
}
