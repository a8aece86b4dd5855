//! The proxy's world: the core, an upstream shard sending dispatches, and clients that read,
//! lag, drop, resume, flood and fall silent, on one agenda.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use gateway_codec::scan_envelope;
use gateway_model::{Intents, Token};
use gateway_proxy::{ClientId, ProxyConfig, ProxyCore, ProxyOutput, UpstreamReady, intents};
use gateway_server::{Frame, Transmit, ends_session};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ProxySimConfig, ProxySimReport};
use crate::Failure;
use crate::faults::exponential;
use crate::net::Agenda;

const TOKEN: &str = "sim-token";
const GUILD: u64 = 41_771_983_423_143_936;
/// What the upstream has: each client asks for some of it.
const UPSTREAM: Intents = Intents::GUILDS
    .union(Intents::GUILD_MESSAGES)
    .union(Intents::DIRECT_MESSAGES)
    .union(Intents::GUILD_PRESENCES)
    .union(Intents::GUILD_MESSAGE_TYPING);
const HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum Ev {
    CoreTimer(u64),
    Traffic,
    Fault,
    Heartbeat(usize),
    Connect(usize),
    LagEnd(usize),
}

/// What a client is doing wrong, so its close is the one expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaving {
    Flood,
    Silent(Instant),
    Lag(Instant),
}

#[derive(Debug)]
struct SimClient {
    intents: Intents,
    conn: Option<ClientId>,
    session: Option<String>,
    seq: u64,
    /// The next upstream dispatch (an index into `World::sent`) the oracle expects.
    next: usize,
    /// Frames its socket holds, unread (while it lags).
    unread: VecDeque<Frame>,
    misbehaving: Option<Misbehaving>,
    /// It got op 9: the close that follows is 4007.
    invalidated: bool,
    identified: bool,
}

pub(super) struct World {
    config: ProxySimConfig,
    rng: ChaCha8Rng,
    agenda: Agenda<Ev>,
    core: ProxyCore,
    timer: (Option<Instant>, u64),
    /// Every upstream dispatch after the start: `(n, name, in a guild)`.
    sent: Vec<(u64, &'static str, bool)>,
    clients: Vec<SimClient>,
    conns: BTreeMap<ClientId, usize>,
    next_conn: ClientId,
    trace: VecDeque<String>,
    report: ProxySimReport,
}

impl World {
    pub(super) fn new(config: ProxySimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        // The simulator's one clock: virtual time from an instant read once.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut proxy = ProxyConfig::new(Token::new(TOKEN), 1, UPSTREAM, "ws://proxy.sim");
        proxy.log.max_bytes = 256 << 10;
        proxy.log.max_age = Duration::from_secs(300);
        proxy.session_ttl = Duration::from_secs(60);
        proxy.send_window = 8 << 10;
        proxy.stall_timeout = Duration::from_secs(15);
        proxy.connection.heartbeat_interval = HEARTBEAT;
        proxy.connection.heartbeat_timeout = Some(HEARTBEAT + HEARTBEAT / 2);
        proxy.seed = config.seed;
        let clients = (0..config.clients)
            .map(|_| SimClient {
                intents: Intents::from_bits_truncate(rng.random::<u64>()) & UPSTREAM,
                conn: None,
                session: None,
                seq: 0,
                next: 0,
                unread: VecDeque::new(),
                misbehaving: None,
                invalidated: false,
                identified: false,
            })
            .collect();
        Self {
            report: ProxySimReport {
                seed: config.seed,
                ..ProxySimReport::default()
            },
            config,
            rng,
            agenda: Agenda::new(start),
            core: ProxyCore::new(proxy),
            timer: (None, 0),
            sent: Vec::new(),
            clients,
            conns: BTreeMap::new(),
            next_conn: 0,
            trace: VecDeque::new(),
        }
    }

    pub(super) fn run(mut self) -> Result<ProxySimReport, Failure> {
        let now = self.agenda.now();
        let ready = format!(
            r#"{{"v":10,"user":{{"id":"1","username":"sim","mfa_enabled":false}},"guilds":[{{"id":"{GUILD}","unavailable":true}}],"session_id":"up","resume_gateway_url":"wss://up","shard":[0,1],"application":{{"id":"1","flags":0}}}}"#
        );
        self.core
            .handle_upstream_ready(now, 0, UpstreamReady { data: ready });
        let guild = format!(
            r#"{{"id":"{GUILD}","name":"sim","member_count":1,"channels":[{{"id":"10","type":0}}],"members":[],"presences":[]}}"#
        );
        self.core
            .handle_upstream_dispatch(now, 0, "GUILD_CREATE", &guild);
        self.drain()?;
        for i in 0..self.clients.len() {
            let at = Duration::from_millis(self.rng.random_range(0..2_000));
            self.agenda.after(at, Ev::Connect(i));
            self.agenda.after(at + HEARTBEAT, Ev::Heartbeat(i));
        }
        self.agenda.after(Duration::ZERO, Ev::Traffic);
        self.agenda.after(self.fault_mean(), Ev::Fault);
        let end = now + self.config.duration + self.config.settle;
        while let Some(ev) = self.agenda.pop(end) {
            self.handle(ev)?;
            self.drain()?;
            self.arm_timer();
        }
        self.finish()
    }

    fn fault_mean(&self) -> Duration {
        let per_minute = self.config.faults_per_client_minute * self.config.clients as f64;
        Duration::from_secs(60).div_f64(per_minute.max(0.01))
    }

    fn faulting(&self) -> bool {
        self.agenda.elapsed() < self.config.duration
    }

    fn handle(&mut self, ev: Ev) -> Result<(), Failure> {
        let now = self.agenda.now();
        match ev {
            Ev::CoreTimer(generation) if generation == self.timer.1 => {
                self.timer.0 = None;
                self.core.handle_timeout(now);
            }
            Ev::CoreTimer(_) => {}
            Ev::Traffic => {
                self.traffic();
                let mean = Duration::from_secs(1).div_f64(self.config.dispatches_per_second);
                if self.faulting() {
                    let next = exponential(&mut self.rng, mean);
                    self.agenda.after(next, Ev::Traffic);
                }
            }
            Ev::Fault => {
                if self.faulting() {
                    self.fault();
                    let mean = self.fault_mean();
                    let next = exponential(&mut self.rng, mean);
                    self.agenda.after(next, Ev::Fault);
                }
            }
            Ev::Heartbeat(i) => {
                let silent = matches!(self.clients[i].misbehaving, Some(Misbehaving::Silent(until)) if until > now);
                if !silent {
                    self.send(i, r#"{"op":1,"d":null}"#.to_owned());
                }
                self.agenda.after(HEARTBEAT, Ev::Heartbeat(i));
            }
            Ev::Connect(i) => self.connect(i),
            Ev::LagEnd(i) => self.lag_end(i)?,
        }
        Ok(())
    }

    /// One upstream dispatch, numbered.
    fn traffic(&mut self) {
        let n = self.sent.len() as u64 + 1;
        let (name, in_guild, d) = match self.rng.random_range(0..5u32) {
            0 => (
                "MESSAGE_CREATE",
                true,
                format!(
                    r#"{{"n":{n},"id":"{n}","channel_id":"10","guild_id":"{GUILD}","content":"x"}}"#
                ),
            ),
            1 => (
                "MESSAGE_CREATE",
                false,
                format!(r#"{{"n":{n},"id":"{n}","channel_id":"20","content":"dm"}}"#),
            ),
            2 => (
                "CHANNEL_UPDATE",
                true,
                format!(r#"{{"n":{n},"id":"10","guild_id":"{GUILD}","type":0}}"#),
            ),
            3 => (
                "PRESENCE_UPDATE",
                true,
                format!(
                    r#"{{"n":{n},"user":{{"id":"5"}},"guild_id":"{GUILD}","status":"online","activities":[]}}"#
                ),
            ),
            _ => (
                "TYPING_START",
                true,
                format!(r#"{{"n":{n},"channel_id":"10","guild_id":"{GUILD}","user_id":"5"}}"#),
            ),
        };
        self.sent.push((n, name, in_guild));
        self.report.upstream += 1;
        let now = self.agenda.now();
        self.core.handle_upstream_dispatch(now, 0, name, &d);
    }

    fn fault(&mut self) {
        let now = self.agenda.now();
        let i = self.rng.random_range(0..self.clients.len());
        if self.clients[i].conn.is_none() || self.clients[i].misbehaving.is_some() {
            return;
        }
        let kind = match self.rng.random_range(0..5u32) {
            0 => {
                let conn = self.clients[i].conn.take();
                if let Some(conn) = conn {
                    self.conns.remove(&conn);
                    self.core.handle_disconnected(now, conn);
                }
                self.clients[i].unread.clear();
                let away = Duration::from_millis(self.rng.random_range(100..120_000));
                self.agenda.after(away, Ev::Connect(i));
                "drop"
            }
            1 => {
                let lag = Duration::from_millis(self.rng.random_range(1_000..30_000));
                self.clients[i].misbehaving = Some(Misbehaving::Lag(now + lag));
                self.agenda.after(lag, Ev::LagEnd(i));
                "lag"
            }
            2 => {
                self.clients[i].misbehaving = Some(Misbehaving::Flood);
                for _ in 0..130 {
                    self.send(i, r#"{"op":1,"d":null}"#.to_owned());
                }
                "flood"
            }
            3 => {
                self.clients[i].misbehaving = Some(Misbehaving::Silent(now + HEARTBEAT * 3));
                "silent"
            }
            _ => {
                if let Some(conn) = self.clients[i].conn.take() {
                    self.conns.remove(&conn);
                    self.core.handle_client_close(now, conn, Some(1000));
                }
                let c = &mut self.clients[i];
                (c.session, c.seq) = (None, 0);
                c.unread.clear();
                self.agenda.after(Duration::from_secs(1), Ev::Connect(i));
                "close 1000"
            }
        };
        self.trace(format!("client {i}: {kind}"));
        *self.report.faults.entry(kind).or_default() += 1;
    }

    fn connect(&mut self, i: usize) {
        if self.clients[i].conn.is_some() {
            return;
        }
        self.next_conn += 1;
        let conn = self.next_conn;
        self.clients[i].conn = Some(conn);
        self.conns.insert(conn, i);
        let now = self.agenda.now();
        self.core.handle_open(now, conn, "v=10&encoding=json");
    }

    /// A frame from client `i`, if it is connected.
    fn send(&mut self, i: usize, text: String) {
        if let Some(conn) = self.clients[i].conn {
            let now = self.agenda.now();
            self.core.handle_frame(now, conn, Frame::Text(text));
        }
    }

    fn lag_end(&mut self, i: usize) -> Result<(), Failure> {
        if matches!(self.clients[i].misbehaving, Some(Misbehaving::Lag(_))) {
            self.clients[i].misbehaving = None;
        }
        while let Some(frame) = self.clients[i].unread.pop_front() {
            self.read(i, &frame)?;
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), Failure> {
        let now = self.agenda.now();
        while let Some(output) = self.core.poll_output(now) {
            match output {
                ProxyOutput::Client { client, transmit } => self.transmit(client, transmit)?,
                ProxyOutput::Abort { client, code } => self.closed(client, code)?,
                ProxyOutput::Upstream { .. }
                | ProxyOutput::SessionSaved(_)
                | ProxyOutput::SessionEnded { .. }
                | ProxyOutput::MembersAsked { .. } => {}
            }
        }
        Ok(())
    }

    fn transmit(&mut self, conn: ClientId, transmit: Transmit) -> Result<(), Failure> {
        let Some(&i) = self.conns.get(&conn) else {
            return Ok(());
        };
        match transmit {
            Transmit::Frames(frames) => {
                let lagging = matches!(self.clients[i].misbehaving, Some(Misbehaving::Lag(_)));
                for frame in frames {
                    if lagging {
                        self.clients[i].unread.push_back(frame);
                    } else {
                        self.read(i, &frame)?;
                    }
                }
                Ok(())
            }
            Transmit::Close { code, .. } => self.closed(conn, code),
            Transmit::Drop => self.closed(conn, 1006),
        }
    }

    /// The client reads one frame (its socket took it: the proxy hears so).
    fn read(&mut self, i: usize, frame: &Frame) -> Result<(), Failure> {
        let Frame::Text(text) = frame else {
            return Err(self.fail(format!("client {i}: a binary frame without compression")));
        };
        if let Some(conn) = self.clients[i].conn {
            let now = self.agenda.now();
            self.core.handle_sent(now, conn, text.len());
        }
        let payload = scan_envelope(text.as_bytes())
            .map_err(|e| self.fail(format!("client {i}: unreadable payload: {e}")))?;
        match payload.op.value() {
            10 => {
                let c = &self.clients[i];
                let text = match &c.session {
                    Some(session) => format!(
                        r#"{{"op":6,"d":{{"token":"{TOKEN}","session_id":"{session}","seq":{}}}}}"#,
                        c.seq
                    ),
                    None => format!(
                        r#"{{"op":2,"d":{{"token":"{TOKEN}","properties":{{}},"intents":{},"shard":[0,1]}}}}"#,
                        c.intents.bits()
                    ),
                };
                let identifying = c.session.is_none();
                self.send(i, text);
                if identifying {
                    // The session starts at the log's head as the IDENTIFY is read.
                    let c = &mut self.clients[i];
                    c.next = self.sent.len();
                    if c.identified {
                        self.report.reidentifies += 1;
                    }
                    c.identified = true;
                } else {
                    self.report.resumes += 1;
                }
            }
            9 => {
                let c = &mut self.clients[i];
                (c.session, c.seq, c.invalidated) = (None, 0, true);
            }
            0 => self.dispatch(i, payload.seq, payload.event_name.as_deref(), payload.data)?,
            _ => {}
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        i: usize,
        seq: Option<u64>,
        name: Option<&str>,
        data: Option<&str>,
    ) -> Result<(), Failure> {
        let c = &self.clients[i];
        if seq != Some(c.seq + 1) {
            return Err(self.fail(format!("client {i}: seq {seq:?} after #{}", c.seq)));
        }
        self.clients[i].seq += 1;
        match name {
            Some("READY") => {
                let session = data
                    .and_then(|d| d.split(r#""session_id":""#).nth(1))
                    .and_then(|rest| rest.split('"').next())
                    .map(str::to_owned);
                self.clients[i].session = session;
                return Ok(());
            }
            Some("GUILD_CREATE" | "RESUMED") => return Ok(()),
            _ => {}
        }
        let n = data
            .and_then(|d| d.strip_prefix(r#"{"n":"#))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse::<u64>().ok());
        let intents = self.clients[i].intents;
        let mut next = self.clients[i].next;
        while next < self.sent.len() && !self.gets(intents, next) {
            next += 1;
        }
        let expected = self.sent.get(next).map(|(n, _, _)| *n);
        if n.is_none() || n != expected {
            return Err(self.fail(format!(
                "client {i}: got #{n:?} ({name:?}), expected #{expected:?}"
            )));
        }
        self.clients[i].next = next + 1;
        self.report.delivered += 1;
        Ok(())
    }

    fn gets(&self, intents: Intents, index: usize) -> bool {
        let (_, name, in_guild) = self.sent[index];
        intents::delivers(intents, intents::required(name, in_guild))
    }

    /// Connection `conn` was closed (or aborted) by the proxy with `code`: it must be the
    /// close the client earned.
    fn closed(&mut self, conn: ClientId, code: u16) -> Result<(), Failure> {
        let Some(i) = self.conns.remove(&conn) else {
            return Ok(());
        };
        *self.report.closes.entry(code).or_default() += 1;
        let now = self.agenda.now();
        let c = &mut self.clients[i];
        let earned = match (code, c.misbehaving) {
            (4007, _) => std::mem::take(&mut c.invalidated),
            (4008, Some(Misbehaving::Flood)) => true,
            (4009, Some(Misbehaving::Silent(_))) => true,
            (4000, Some(Misbehaving::Lag(_))) => true,
            _ => false,
        };
        if !earned {
            let misbehaving = c.misbehaving;
            return Err(self.fail(format!("client {i} closed with {code} ({misbehaving:?})")));
        }
        self.trace(format!("client {i}: closed with {code}"));
        let c = &mut self.clients[i];
        c.conn = None;
        c.unread.clear();
        if !matches!(c.misbehaving, Some(Misbehaving::Lag(_))) {
            c.misbehaving = None;
        }
        if ends_session(code) {
            (c.session, c.seq) = (None, 0);
        }
        self.core.handle_disconnected(now, conn);
        let back = Duration::from_millis(self.rng.random_range(100..5_000));
        self.agenda.after(back, Ev::Connect(i));
        Ok(())
    }

    fn arm_timer(&mut self) {
        let at = self.core.poll_timeout();
        if at.is_some() && at != self.timer.0 {
            self.timer.1 += 1;
            self.timer.0 = at;
            if let Some(at) = at {
                self.agenda.at(at, Ev::CoreTimer(self.timer.1));
            }
        }
    }

    /// After settling, every client is connected and has every dispatch its intents ask for.
    fn finish(mut self) -> Result<ProxySimReport, Failure> {
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            if c.conn.is_none() || c.session.is_none() {
                return Err(self.fail(format!("client {i} has no session after settling")));
            }
            let intents = c.intents;
            let missing = (c.next..self.sent.len())
                .filter(|j| self.gets(intents, *j))
                .count();
            if missing > 0 {
                return Err(self.fail(format!("client {i}: {missing} dispatches never arrived")));
            }
        }
        self.report.simulated = self.agenda.elapsed();
        Ok(self.report)
    }

    fn trace(&mut self, line: String) {
        if self.trace.len() >= self.config.trace.max(1) {
            self.trace.pop_front();
        }
        let at = self.agenda.elapsed();
        self.trace
            .push_back(format!("{:>10.3}s {line}", at.as_secs_f64()));
    }

    fn fail(&self, violation: String) -> Failure {
        Failure {
            seed: self.config.seed,
            at: self.agenda.elapsed(),
            violation,
            trace: self.trace.iter().cloned().collect(),
        }
    }
}
