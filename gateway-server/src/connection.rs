//! One client connection's side of the protocol, as Discord speaks it: the query it opened with,
//! HELLO, heartbeats and their deadline (a client that stops is a zombie, closed with 4009), the
//! command budget (4008), the order of IDENTIFY and RESUME (4003, 4005), client payloads read as
//! Discord reads them, and what goes out, compressed as the connection asked.
//!
//! What a session is, who may identify, and what to answer are the server's ([`Inbound`] says
//! what came; the server answers with [`Connection::send`], [`Connection::close`] or
//! [`Connection::refuse`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gateway_codec::Compression;
use gateway_model::{CloseAction, CloseCode, Command};

use crate::envelope;
use crate::frame::Frame;
use crate::inbound::{self, Rejection, close_reason};
use crate::outbound::Encoder;
use crate::query::parse_query;

/// The rules one connection keeps, the same for every connection of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// HELLO's heartbeat interval. Discord's: 41.25 s.
    pub heartbeat_interval: Duration,
    /// A connection with no heartbeat for this long is closed with 4009 (`None`: never).
    /// Discord's: about 1.5 × the interval.
    pub heartbeat_timeout: Option<Duration>,
    /// Payloads a client may send per 60 s before close 4008. Discord's: 120.
    pub commands_per_minute: usize,
    /// The largest payload a client may send (else close 4002). Discord's: 4096 bytes.
    pub max_payload: usize,
    /// The server's name in HELLO's `_trace`.
    pub name: &'static str,
    /// zlib-stream's deflate level (0–9). Discord's: 6.
    pub zlib_level: u32,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(41_250),
            heartbeat_timeout: Some(Duration::from_millis(41_250 * 3 / 2)),
            commands_per_minute: 120,
            max_payload: 4096,
            name: "gateway-server",
            zlib_level: gateway_codec::Compressor::ZLIB_LEVEL,
        }
    }
}

/// What the connection asks of its driver, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the driver must act on every output"]
pub enum Transmit {
    /// Send these frames (one payload).
    Frames(Vec<Frame>),
    /// Close with this code and Discord's words for it. Nothing follows.
    Close {
        /// The close code.
        code: u16,
        /// The close frame's reason.
        reason: &'static str,
    },
    /// Drop the connection without a close frame. Nothing follows.
    Drop,
}

/// What a client's frame was, for the server to act on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Inbound {
    /// A command the server must judge: IDENTIFY or RESUME on a connection not yet
    /// authenticated, or any other command on one that is. A heartbeat comes here too, already
    /// answered (unless [`Connection::set_answer_heartbeats`] turned that off).
    Command {
        /// The command, read as Discord reads it.
        command: Command,
        /// IDENTIFY asked for payload compression (`compress: true`).
        payload_compression: bool,
    },
    /// The frame was refused: the connection is closing with the rejection's code.
    Refused {
        /// Why.
        rejection: Rejection,
        /// The payload with its token blanked, cut to the payload limit, for a record.
        redacted: String,
    },
    /// Nothing for the server (the connection is already closed).
    Ignored,
}

/// One client connection, sans-IO: inputs are `handle_*(now, ..)`, outputs
/// [`poll_transmit`](Self::poll_transmit), and [`poll_timeout`](Self::poll_timeout) says when to
/// call [`handle_timeout`](Self::handle_timeout).
#[derive(Debug)]
pub struct Connection {
    config: ConnectionConfig,
    encoder: Option<Encoder>,
    compression: Compression,
    /// When each payload of the last 60 s came.
    received: VecDeque<Instant>,
    /// The last heartbeat (or HELLO); `None` before HELLO, when no heartbeat is due.
    last_heartbeat: Option<Instant>,
    answer_heartbeats: bool,
    authenticated: bool,
    closed: bool,
    out: VecDeque<Transmit>,
}

impl Connection {
    /// A connection opened with this URL query string. A query Discord refuses (a `v` other
    /// than 10, an encoding other than JSON, an unknown compression) makes a connection whose
    /// only output is its close, and the rejection comes back beside it.
    pub fn new(config: ConnectionConfig, query: &str) -> (Self, Option<Rejection>) {
        let (compression, refused) = parse_query(query);
        let mut conn = Self {
            config,
            encoder: None,
            compression,
            received: VecDeque::new(),
            last_heartbeat: None,
            answer_heartbeats: true,
            authenticated: false,
            closed: false,
            out: VecDeque::new(),
        };
        if let Some(rejection) = &refused {
            tracing::warn!(code = rejection.code.as_u16(), rule = %rejection.rule, "connection refused");
            conn.close(rejection.code.as_u16());
            return (conn, refused);
        }
        match Encoder::with_zlib_level(compression, conn.config.zlib_level) {
            Ok(encoder) => conn.encoder = Some(encoder),
            Err(e) => {
                tracing::error!(error = %e, "compressor");
                conn.drop_now();
            }
        }
        (conn, None)
    }

    /// The transport compression the query asked for.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Whether IDENTIFY or RESUME was accepted ([`set_authenticated`](Self::set_authenticated)).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Whether the connection is over (its close or drop is among the outputs).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The server accepted IDENTIFY or RESUME (`true`), or forgot the session (`false`: the
    /// client may IDENTIFY again, as after INVALID_SESSION `false`).
    pub fn set_authenticated(&mut self, yes: bool) {
        self.authenticated = yes;
    }

    /// Whether heartbeats are answered with an ACK (a test's zombie gateway turns it off).
    pub fn set_answer_heartbeats(&mut self, yes: bool) {
        self.answer_heartbeats = yes;
    }

    /// Sends HELLO and starts the heartbeat clock.
    pub fn hello(&mut self, now: Instant) {
        let interval =
            u64::try_from(self.config.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
        self.send(&envelope::hello(interval, self.config.name));
        self.last_heartbeat = Some(now);
    }

    /// A frame from the client: text, or JSON in a binary frame (Discord reads both).
    ///
    /// `admit` judges an IDENTIFY or RESUME that came in order (it is called for those only):
    /// the token, the shard, the intents are the server's to check. Its rejection closes the
    /// connection and comes back as [`Inbound::Refused`], with the payload redacted.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        frame: Frame,
        admit: impl FnOnce(&Command) -> Result<(), Rejection>,
    ) -> Inbound {
        if self.closed {
            return Inbound::Ignored;
        }
        let text = match frame {
            Frame::Text(t) => t,
            Frame::Binary(b) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(e) => {
                    let raw = format!("<{} binary bytes, not UTF-8>", e.as_bytes().len());
                    let rejection = Rejection::decode("payload", "a JSON payload must be UTF-8");
                    return self.refused(rejection, raw);
                }
            },
        };
        if !self.within_budget(now) {
            let rule = format!("over {} payloads in 60 s", self.config.commands_per_minute);
            let rejection = Rejection::new(CloseCode::RateLimited, "payload", rule);
            return self.refused(rejection, inbound::redacted(&text));
        }
        let command = match inbound::read_command(&text, self.config.max_payload) {
            Ok(command) => command,
            Err(rejection) => return self.refused(rejection, inbound::redacted(&text)),
        };
        let authenticating = matches!(command, Command::Identify(_) | Command::Resume(_));
        let order = match (&command, self.authenticated) {
            (Command::Heartbeat(_), _) => {
                self.last_heartbeat = Some(now);
                if self.answer_heartbeats {
                    self.send(&envelope::heartbeat_ack());
                }
                None
            }
            (_, true) if authenticating => Some((
                CloseCode::AlreadyAuthenticated,
                "IDENTIFY or RESUME on an authenticated connection",
            )),
            (_, false) if !authenticating => Some((
                CloseCode::NotAuthenticated,
                "a command before IDENTIFY or RESUME",
            )),
            _ => None,
        };
        if let Some((code, rule)) = order {
            return self.refused(Rejection::new(code, "op", rule), inbound::redacted(&text));
        }
        if authenticating && let Err(rejection) = admit(&command) {
            return self.refused(rejection, inbound::redacted(&text));
        }
        let payload_compression =
            matches!(command, Command::Identify(_)) && inbound::asks_payload_compression(&text);
        if payload_compression && let Some(encoder) = &mut self.encoder {
            encoder.set_payload_compression(true);
        }
        Inbound::Command {
            command,
            payload_compression,
        }
    }

    /// The websocket refused a frame before it was read (over its size limit): 4002, as
    /// Discord closes.
    pub fn handle_frame_refused(&mut self, rule: String) -> Inbound {
        if self.closed {
            return Inbound::Ignored;
        }
        self.refused(
            Rejection::decode("frame", rule),
            "<refused frame>".to_owned(),
        )
    }

    /// Time passed: a client whose heartbeat is overdue is closed with 4009.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            tracing::debug!("no heartbeat in time");
            self.close(CloseCode::SessionTimedOut.as_u16());
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        Some(self.last_heartbeat? + self.config.heartbeat_timeout?)
    }

    /// Sends one payload, encoded as the connection asked. A compressor that fails drops the
    /// connection (its stream cannot go on).
    pub fn send(&mut self, json: &str) {
        self.encode_with(|encoder| encoder.encode(json));
    }

    /// [`send`](Self::send), taking the payload: uncompressed, it becomes the frame itself.
    pub fn send_owned(&mut self, json: String) {
        self.encode_with(|encoder| encoder.encode_owned(json));
    }

    fn encode_with(
        &mut self,
        encode: impl FnOnce(&mut Encoder) -> Result<Frame, gateway_codec::CompressError>,
    ) {
        if self.closed {
            return;
        }
        let Some(encoder) = &mut self.encoder else {
            return;
        };
        match encode(encoder) {
            Ok(frame) => self.out.push_back(Transmit::Frames(vec![frame])),
            Err(e) => {
                tracing::error!(error = %e, "compression failed");
                self.drop_now();
            }
        }
    }

    /// Sends a dispatch: `{"t": name, "s": seq, "op": 0, "d": data}`.
    pub fn send_dispatch(&mut self, name: &str, seq: u64, data: &str) {
        self.send_owned(envelope::dispatch(name, seq, data));
    }

    /// Closes with `code` and Discord's words for it. Whether the session lives on is the
    /// server's: [`ends_session`] says what Discord does.
    pub fn close(&mut self, code: u16) {
        if self.closed {
            return;
        }
        tracing::debug!(code, "closing");
        self.closed = true;
        self.out.push_back(Transmit::Close {
            code,
            reason: close_reason(code),
        });
    }

    /// Closes over a command the server refuses (a wrong token, shard or intents), logging the
    /// field and the rule (never the token).
    pub fn refuse(&mut self, rejection: &Rejection) {
        tracing::warn!(
            code = rejection.code.as_u16(),
            field = rejection.field,
            rule = %rejection.rule,
            "client payload refused"
        );
        self.close(rejection.code.as_u16());
    }

    /// Drops the connection without a close frame.
    pub fn drop_now(&mut self) {
        if !self.closed {
            self.closed = true;
            self.out.push_back(Transmit::Drop);
        }
    }

    /// The next thing to do on the socket.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn within_budget(&mut self, now: Instant) -> bool {
        self.received.push_back(now);
        while self
            .received
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.received.pop_front();
        }
        self.received.len() <= self.config.commands_per_minute
    }

    fn refused(&mut self, rejection: Rejection, mut redacted: String) -> Inbound {
        let limit = self.config.max_payload;
        if redacted.len() > limit {
            let mut cut = limit;
            while !redacted.is_char_boundary(cut) {
                cut -= 1;
            }
            redacted.truncate(cut);
            redacted.push('…');
        }
        self.refuse(&rejection);
        Inbound::Refused {
            rejection,
            redacted,
        }
    }
}

/// Whether closing with `code` ends the session (Discord forgets it): every code but those a
/// client may resume after.
pub fn ends_session(code: u16) -> bool {
    CloseCode::from_u16(code).action() != CloseAction::Resume
}
