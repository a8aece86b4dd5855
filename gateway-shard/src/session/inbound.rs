//! The session's side of the transport: each websocket message goes through the session's own
//! [`Decoder`], whose whole life the session runs. It starts anew with each connection, ends each
//! payload once handled, and gives back what large payloads needed once the connection has been
//! quiet for a second. Then the payload's envelope decides: sequence, heartbeat ACK, HELLO,
//! dispatch.

use std::time::{Duration, Instant};

use gateway_codec::{DecodeError, Decoder};
use gateway_model::{DispatchEvent, EventTypes, GatewayEvent, Payload};
use rand::Rng;

use super::{EVENT_OVERHEAD, Phase, Session};
use crate::{Reconnect, ShardEvent};

/// How long the connection goes without a message before it counts as quiet, and the decoder
/// gives back what large payloads needed ([`Decoder::release`]).
const QUIET: Duration = Duration::from_secs(1);

/// When the connection goes quiet: the last message read, and when to look again. The check is
/// moved only when it comes due, not with every message, so that a busy connection does not move
/// the driver's timer per message.
#[derive(Debug, Default)]
struct Quiet {
    last_read: Option<Instant>,
    /// When to check for quiet; `None` once released and nothing read since.
    check: Option<Instant>,
}

impl Quiet {
    /// A message was read at `t`.
    fn read(&mut self, t: Instant) {
        self.last_read = Some(t);
        self.check.get_or_insert(t + QUIET);
    }

    /// Whether the connection went quiet by `t` (then it is not again until the next read); if
    /// the check is due but a message came meanwhile, it moves to a second after that message.
    fn is_quiet(&mut self, t: Instant) -> bool {
        match (self.check, self.last_read) {
            (Some(check), Some(last)) if check <= t => {
                if t.duration_since(last) >= QUIET {
                    self.check = None;
                    true
                } else {
                    self.check = Some(last + QUIET);
                    false
                }
            }
            _ => false,
        }
    }
}

/// The decoder and what the session knows of the transport's messages.
#[derive(Debug)]
pub(super) struct Inbound {
    /// `None` only if it could not be built (the session is stopped), and while a message is
    /// being handled.
    decoder: Option<Decoder>,
    quiet: Quiet,
    /// The websocket's limit on one message, as the decoder's.
    max_message: usize,
    /// The `d` bytes of every payload decoded so far.
    data_bytes: u64,
}

impl Inbound {
    pub(super) fn new(decoder: Option<Decoder>, max_message: usize) -> Self {
        Self {
            decoder,
            quiet: Quiet::default(),
            max_message,
            data_bytes: 0,
        }
    }

    /// A new connection: a fresh decompression context, nothing pending, and the room the last
    /// connection's large payloads needed given back (its quiet check may not have come).
    pub(super) fn new_stream(&mut self) -> Result<(), DecodeError> {
        self.quiet = Quiet::default();
        match &mut self.decoder {
            Some(decoder) => {
                decoder.reset()?;
                decoder.release();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// When the quiet check is due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.quiet.check
    }

    /// Releases the decoder's large buffers if the connection went quiet.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if self.quiet.is_quiet(now)
            && let Some(decoder) = &mut self.decoder
        {
            decoder.release();
        }
    }
}

impl Session {
    /// One websocket message (text or binary), as it came off the connection. The session
    /// decodes it: a payload is handled; an error is handled as
    /// [`the decode rules`](Self::handle_decode_error) say; part of a payload split over several
    /// messages waits for the rest. The events it yields are counted as its `d`'s bytes.
    pub fn handle_message(&mut self, now: Instant, message: &[u8]) {
        if !self.connection_open {
            return;
        }
        let Some(mut decoder) = self.inbound.decoder.take() else {
            return;
        };
        self.inbound.quiet.read(now);
        let before = self.events.len();
        let mut cost = EVENT_OVERHEAD;
        match decoder.push(message) {
            Ok(Some(payload)) => {
                let data = payload.data.map_or(0, str::len);
                cost += data;
                self.inbound.data_bytes += data as u64;
                self.handle_payload(now, &payload);
            }
            Ok(None) => {}
            Err(e) => self.handle_decode_error(now, &e),
        }
        decoder.trim();
        self.inbound.decoder = Some(decoder);
        // The payload's own event (its first) holds its `d`.
        if let Some((_, c)) = self.events.get_mut(before) {
            *c = cost;
        }
    }

    /// The `d` bytes of every payload decoded so far (each payload's, whether or not it became
    /// an event), for a driver's metrics.
    #[must_use]
    pub fn data_bytes_decoded(&self) -> u64 {
        self.inbound.data_bytes
    }

    /// The websocket refused a message over its limit before the session saw it: the same as a
    /// payload over the decoder's limit, which a resume would replay, so a new session starts.
    pub fn handle_message_too_large(&mut self, now: Instant) {
        if !self.connection_open {
            return;
        }
        let limit = self.inbound.max_message;
        self.handle_decode_error(now, &DecodeError::MessageTooLarge { limit });
    }

    /// Whether a dispatch numbered `seq` comes next in the session. A gap
    /// means a dispatch was lost (an unreadable payload, a frame the transport lost): the shard
    /// resumes from the last one it delivered, and the gateway replays the rest. If the same gap
    /// comes back after that resume, the lost dispatch cannot be read even when replayed, and a
    /// new session starts (as after an oversize message), marked by READY.
    ///
    /// A dispatch other than READY before any READY means READY itself was lost: the session
    /// is unknown, so a new one starts.
    ///
    /// READY and RESUMED are not checked: they start and end a session's handshake, and some
    /// gateways number RESUMED loosely.
    fn in_sequence(&mut self, now: Instant, seq: u64, name: Option<&str>) -> bool {
        if matches!(name, Some("READY" | "RESUMED")) {
            return true;
        }
        if self.session_id.is_none() {
            tracing::warn!(
                shard = self.shard.number(),
                seq,
                "a dispatch before READY: READY was lost; identifying again"
            );
            self.lost(now, Some(4000), "READY was lost", Reconnect::Reidentify);
            return false;
        }
        let Some(last) = self.seq else {
            return true;
        };
        if seq <= last.saturating_add(1) {
            // A number at or below the last is not Discord's way, but is taken as it comes.
            if self.gap_after.is_some_and(|g| seq > g.saturating_add(1)) {
                self.gap_after = None;
            }
            return true;
        }
        tracing::warn!(shard = self.shard.number(), seq, last, "a sequence gap");
        self.lost_after_dispatch(now, last);
        false
    }

    /// A dispatch after `last` was lost (a gap, or a payload that could not be read): resume
    /// from `last`, so that the gateway replays it; if that already happened at `last`, the
    /// dispatch cannot be read even when replayed, and a new session starts.
    fn lost_after_dispatch(&mut self, now: Instant, last: u64) {
        if self.gap_after == Some(last) {
            tracing::error!(
                shard = self.shard.number(),
                last,
                "a dispatch is lost even when replayed; starting a new session"
            );
            self.gap_after = None;
            self.forget_session();
            self.lost(
                now,
                Some(4000),
                "a dispatch could not be read",
                Reconnect::Reidentify,
            );
        } else {
            tracing::warn!(
                shard = self.shard.number(),
                last,
                "resuming from the last dispatch delivered"
            );
            self.gap_after = Some(last);
            self.lost(now, Some(4000), "a dispatch was lost", Reconnect::Resume);
        }
    }

    /// Delivers a dispatch raw, `d` as the codec found it (READY and RESUMED are typed, for the
    /// session's own use). False if it is not one to deliver raw.
    fn deliver_raw(&mut self, payload: &Payload<'_>) -> bool {
        let (Some(seq), Some(name)) = (payload.seq, payload.event_name.as_deref()) else {
            return false;
        };
        if payload.op != gateway_model::OpCode::Dispatch || matches!(name, "READY" | "RESUMED") {
            return false;
        }
        let kind = EventTypes::from_event_name(name);
        if !self.event_types.intersects(kind) {
            return true;
        }
        // The same rule as a typed dispatch that stays raw: `d` as the envelope scan found it.
        let data = gateway_model::RawJson::from_payload_data(payload);
        let event = DispatchEvent::Other(gateway_model::RawDispatch::with_kind(name, kind, data));
        self.emit(ShardEvent::Dispatch(gateway_model::Dispatch { seq, event }));
        true
    }

    /// A payload arrived (decoded from a message by [`handle_message`](Self::handle_message)).
    pub(crate) fn handle_payload(&mut self, now: Instant, payload: &Payload<'_>) {
        if !self.connection_open {
            return;
        }
        // Whatever it is, the connection is alive (see the zombie rule in `heartbeat`).
        self.heartbeats.heard();
        let previous = self.seq;
        if payload.op == gateway_model::OpCode::Dispatch {
            if let Some(seq) = payload.seq {
                if !self.in_sequence(now, seq, payload.event_name.as_deref()) {
                    return;
                }
                self.seq = Some(seq);
            }
            if let Phase::Handshaking {
                replayed,
                resuming: true,
                deadline,
            } = self.phase
                && payload.event_name.as_deref() != Some("RESUMED")
            {
                self.phase = Phase::Handshaking {
                    replayed: replayed + 1,
                    resuming: true,
                    deadline,
                };
            }
        }
        if self.raw_dispatches && self.deliver_raw(payload) {
            return;
        }
        let wanted = self.event_types | EventTypes::READY | EventTypes::RESUMED;
        let event = match GatewayEvent::from_payload(payload, wanted) {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(gateway_model::EventError::UnexpectedOpcode(op)) => {
                tracing::debug!(
                    shard = self.shard.number(),
                    op = op.value(),
                    "ignoring unknown opcode"
                );
                return;
            }
            Err(e) => {
                if matches!(payload.event_name.as_deref(), Some("READY")) {
                    tracing::warn!(shard = self.shard.number(), error = %e, "invalid READY");
                    self.lost(now, Some(4000), "invalid READY", Reconnect::Reidentify);
                } else if let Some(event) = crate::event::untyped(self.shard, payload, &e) {
                    self.emit(event);
                } else if let (Some(_), Some(last)) = (payload.seq, previous) {
                    // A dispatch that is not JSON at all is unreadable, as an envelope that is
                    // not: its number is taken back, and a resume has the gateway replay it.
                    self.seq = Some(last);
                    self.lost_after_dispatch(now, last);
                }
                return;
            }
        };
        match event {
            GatewayEvent::Hello(hello) => {
                self.hello(now, Duration::from_millis(hello.heartbeat_interval))
            }
            GatewayEvent::HeartbeatAck => {
                if let Some(latency) = self.heartbeats.acked(now) {
                    self.emit(ShardEvent::HeartbeatAck { latency });
                }
            }
            GatewayEvent::HeartbeatRequest => self.heartbeats.request(),
            GatewayEvent::Reconnect => self.lost(
                now,
                Some(4000),
                "the gateway asked to reconnect",
                Reconnect::Resume,
            ),
            GatewayEvent::InvalidSession { resumable } => {
                // Wait 1–5 s, as Discord used to document, so identifies do not stampede.
                let wait = Duration::from_millis(self.rng.random_range(1000..=5000));
                if resumable {
                    self.lost_after(
                        now,
                        Some(4000),
                        "invalid session (resumable)",
                        Reconnect::Resume,
                        wait,
                    );
                } else {
                    self.forget_session();
                    self.lost_after(
                        now,
                        Some(4000),
                        "invalid session",
                        Reconnect::Reidentify,
                        wait,
                    );
                }
            }
            GatewayEvent::Dispatch(dispatch) => self.dispatch(now, dispatch),
            _ => {}
        }
    }

    /// A message could not be decoded. A payload over the decoder's limits cannot be received at
    /// all, and a resume would replay it, so the session starts anew; any other loss of the stream
    /// (corrupt compression) reconnects and resumes; a bad payload on an intact stream is skipped.
    pub(crate) fn handle_decode_error(&mut self, now: Instant, error: &DecodeError) {
        match error {
            DecodeError::MessageTooLarge { .. } | DecodeError::CompressedTooLarge { .. } => {
                tracing::error!(shard = self.shard.number(), %error, "payload over the limit; starting a new session");
                self.forget_session();
                self.lost(
                    now,
                    Some(4000),
                    "payload over the size limit",
                    Reconnect::Reidentify,
                );
            }
            e if e.is_fatal() => {
                tracing::warn!(shard = self.shard.number(), error = %e, "inbound stream lost; reconnecting");
                self.lost(
                    now,
                    Some(4000),
                    "undecodable inbound stream",
                    Reconnect::Resume,
                );
            }
            e => {
                // It may have been a dispatch: a resume replays it, as after a gap.
                tracing::warn!(shard = self.shard.number(), error = %e, "unreadable payload");
                match self.seq.filter(|_| self.session_id.is_some()) {
                    Some(last) => self.lost_after_dispatch(now, last),
                    None if matches!(
                        self.phase,
                        Phase::Handshaking {
                            resuming: false,
                            ..
                        }
                    ) =>
                    {
                        // READY itself may be what could not be read.
                        self.lost(
                            now,
                            Some(4000),
                            "READY was unreadable",
                            Reconnect::Reidentify,
                        );
                    }
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_comes_a_second_after_the_last_message_read_and_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut quiet = Quiet::default();
        assert!(!quiet.is_quiet(at(5_000)), "nothing read yet");
        quiet.read(at(0));
        quiet.read(at(800));
        assert_eq!(
            quiet.check,
            Some(at(1_000)),
            "the first read sets the check"
        );
        assert!(!quiet.is_quiet(at(500)));
        assert!(!quiet.is_quiet(at(1_000)), "a message came 200 ms before");
        assert_eq!(quiet.check, Some(at(1_800)));
        assert!(quiet.is_quiet(at(1_800)));
        assert!(!quiet.is_quiet(at(9_000)), "once per quiet spell");
        quiet.read(at(10_000));
        assert!(quiet.is_quiet(at(11_000)));
    }
}
