//! The tokio driver: a thin loop that runs a [`Session`] over a real websocket. Every wait is a
//! branch of its one `select!`; the session decides everything else.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt as _;
use gateway_codec::Decoder;
use gateway_model::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::identify::{BoxFuture, IdentifyError, IdentifyQueue};
use crate::link::{Dialer, Io, Link, Opening, now, receive, shut};
use crate::outbox::{Outbox, SMALL_EVENT};
use crate::sink::EventSink;
use crate::status::{Status, publish};
use crate::{
    Action, CommandError, Output, PresenceUpdate, ResumeInfo, Session, SessionState, ShardEvent,
};

/// A request from a [`Shard`](crate::Shard) handle to its driver.
pub(crate) enum Control {
    // Boxed: the channel allocates its slots a block at a time for every shard, idle or not, and
    // commands are rare.
    Command(Box<Command>, oneshot::Sender<Result<(), CommandError>>),
    Presence(
        Box<PresenceUpdate>,
        oneshot::Sender<Result<(), CommandError>>,
    ),
    Close(bool, oneshot::Sender<Option<ResumeInfo>>),
}

/// The driver's fixed settings.
pub(crate) struct Settings {
    pub(crate) identify_queue: Arc<dyn IdentifyQueue>,
    pub(crate) max_concurrency: u32,
    pub(crate) dialer: Dialer,
    pub(crate) decoder: Decoder,
    /// Bytes of undelivered events past which the socket is not read.
    pub(crate) event_budget: usize,
}

/// Waits for an optional future; never completes while there is none.
async fn wait<T>(slot: &mut Option<BoxFuture<'static, T>>) -> T {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The link's reading and sending; never completes while there is no link.
async fn link_io(link: &mut Option<Link>, reading: bool) -> Io {
    match link {
        Some(l) => l.io(reading).await,
        None => std::future::pending().await,
    }
}

/// Messages handled in a row from the socket's buffer before the driver's select gets a turn.
const BURST: usize = 32;

/// How long the socket stays without a message before the connection counts as quiet and the
/// decoder gives back what large payloads needed ([`Decoder::release`]).
const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

/// When the connection goes quiet: the last message read, and when to look again.
#[derive(Default)]
struct Quiet {
    last_read: Option<Instant>,
    /// When to check for quiet; `None` once released and nothing read since.
    check: Option<Instant>,
}

impl Quiet {
    /// Notes what the socket did at `t` (a message read, or frames sent).
    fn saw(&mut self, io: &Io, t: Instant) {
        if matches!(io, Io::Received(_)) {
            self.last_read = Some(t);
            self.check.get_or_insert(t + QUIET);
        }
    }

    /// Whether the connection went quiet by `t` (then it is not again until the next read); if
    /// it is due but a message came meanwhile, the check moves to a second after that message.
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

/// Runs the session until it stops and every event it produced reached the user (or the user
/// went away). Every wait is a branch of the one `select!`: reading and sending, connecting,
/// closing, the identify turn, timers, handle requests and event delivery, so that heartbeats and
/// commands go on whatever else is slow.
pub(crate) async fn run(
    mut session: Session,
    mut settings: Settings,
    events: EventSink,
    mut control: mpsc::Receiver<Control>,
    status: watch::Sender<Status>,
) {
    let shard = session.shard();
    let span = tracing::info_span!("shard", id = shard.number(), count = shard.total());
    async move {
        let mut link: Option<Link> = None;
        let (mut connecting, mut connect_to) = (None, None);
        let mut closing: Option<BoxFuture<'static, ()>> = None;
        let mut turn: Option<BoxFuture<'static, Result<(), IdentifyError>>> = None;
        let mut outbox = Outbox::new(settings.event_budget);
        let mut close_replies: Vec<oneshot::Sender<Option<ResumeInfo>>> = Vec::new();
        let (mut control_open, mut size) = (true, SMALL_EVENT);
        let mut timer = std::pin::pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
        let (mut armed, mut burst): (Option<Instant>, usize) = (None, 0);
        let mut quiet = Quiet::default();
        #[cfg(feature = "metrics")]
        let mut waiting_since: Option<Instant> = None;
        loop {
            // One reading of the clock for the loop's bookkeeping (inputs read it again).
            let t = now();
            while let Some(output) = session.poll_output(t) {
                match output {
                    Output::Action(Action::Connect { url }) => {
                        link = None;
                        turn = None;
                        if let Err(e) = settings.decoder.reset() {
                            tracing::error!(error = %e, "decoder reset failed");
                        }
                        connect_to = Some(url);
                        connecting = Some(settings.dialer.slot());
                    }
                    Output::Action(Action::Close { code }) => {
                        if let Some(l) = link.take() {
                            closing = Some(shut(l.into_socket(), code));
                        }
                    }
                    Output::Action(Action::AwaitIdentify) => {
                        #[cfg(feature = "metrics")]
                        {
                            waiting_since = Some(t);
                        }
                        // Wait in the identify queue while the loop keeps heartbeating.
                        let queue = Arc::clone(&settings.identify_queue);
                        let (id, buckets) = (shard.number(), settings.max_concurrency);
                        turn = Some(Box::pin(async move { queue.acquire(id, buckets).await }));
                    }
                    Output::Transmit(frame) => match link.as_mut() {
                        Some(l) => l.send(frame),
                        None => tracing::debug!("a frame for a connection that is gone"),
                    },
                    Output::Event(event) => {
                        if matches!(event, ShardEvent::Ready(_)) {
                            // The session drains right after each payload, so its sequence is
                            // READY's own; seen before the event reaches the user (no wake-up).
                            let seq = session.sequence();
                            status.send_if_modified(|st| {
                                st.ready_seq = seq;
                                false
                            });
                        }
                        outbox.push(event, std::mem::replace(&mut size, SMALL_EVENT));
                    }
                }
            }
            outbox.deliver_ready(&events);
            // Past the budget, stop reading (the session decides when that may be): the
            // gateway's TCP window fills and it waits; heartbeats go on.
            session.handle_reading_paused(t, outbox.is_full());
            if session.state() != SessionState::WaitingToIdentify {
                // The connection that waited is gone: give the place in the queue up.
                turn = None;
            }
            publish(&status, &mut session, &outbox, t);
            if !session.is_alive() {
                // Whoever asked to close hears back now, even while events still wait for the user.
                let resume = session.resume_info();
                for reply in close_replies.drain(..) {
                    // A handle that stopped waiting needs no answer.
                    drop(reply.send(resume.clone()));
                }
                if outbox.is_empty() || events.is_closed() {
                    break;
                }
            }
            let deadline = session.poll_timeout();
            let reading = !session.is_reading_paused();
            // A message already in the socket's buffer is handled at once, without the select
            // (a few in a row, then the select gets its turn): one wake-up per burst, not per
            // message. Not when a timer is due.
            if reading && burst < BURST && deadline.is_none_or(|d| d > t)
                && let Some(l) = link.as_mut()
                && let Some(io) = l.io(true).now_or_never()
            {
                burst += 1;
                quiet.saw(&io, t);
                let max = settings.dialer.max_message;
                if !receive(&mut session, &mut settings.decoder, max, io, &mut size) {
                    link = None;
                }
                continue;
            }
            burst = 0;
            // One timer for the driver's life, moved only when the session's deadline or the
            // quiet check moves (not per message).
            let wake = match (deadline, quiet.check) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if wake != armed {
                armed = wake;
                if let Some(d) = wake {
                    timer.as_mut().reset(d.into());
                }
            }
            let busy = link.as_ref().is_some_and(|l| l.busy(reading));
            tokio::select! {
                io = link_io(&mut link, reading), if busy => {
                    quiet.saw(&io, t);
                    let max = settings.dialer.max_message;
                    if !receive(&mut session, &mut settings.decoder, max, io, &mut size) {
                        link = None;
                    }
                }
                step = wait(&mut connecting) => {
                    connecting = None;
                    match step {
                        Opening::Slot(permit) => match connect_to.take() {
                            Some(url) if session.awaits_connection() => {
                                // The wait for a slot does not count against the handshake.
                                session.handle_connect_started(now());
                                connecting = Some(settings.dialer.open(url, permit));
                            }
                            _ => {}
                        },
                        // A connection the session gave up on meanwhile is dropped.
                        Opening::Opened(Ok(s)) if session.awaits_connection() => {
                            link = Some(Link::new(*s));
                            session.handle_connected(now());
                        }
                        Opening::Opened(Ok(_)) => {}
                        Opening::Opened(Err(reason)) => session.handle_connect_failed(now(), &reason),
                    }
                }
                () = wait(&mut closing) => closing = None,
                permit = events.reserve(), if !outbox.is_empty() => {
                    if let (Ok(permit), Some(event)) = (permit, outbox.pop()) {
                        permit.send(event);
                    }
                }
                request = control.recv(), if control_open => match request {
                    // A handle that stopped waiting for the answer needs none.
                    Some(Control::Command(command, reply)) => drop(reply.send(session.handle_command(now(), *command))),
                    Some(Control::Presence(update, reply)) => drop(reply.send(session.handle_presence(now(), &update))),
                    Some(Control::Close(keep_resumable, reply)) => {
                        session.handle_close(now(), keep_resumable);
                        close_replies.push(reply);
                    }
                    None => {
                        // Every handle is gone: end the session.
                        control_open = false;
                        session.handle_close(now(), false);
                    }
                },
                () = &mut timer, if armed.is_some() => {
                    // Fired: armed again above from what is due next.
                    armed = None;
                    let t = now();
                    if quiet.is_quiet(t) {
                        settings.decoder.release();
                    }
                    if deadline.is_some_and(|d| d <= t) {
                        session.handle_timeout(t);
                    }
                }
                granted = wait(&mut turn) => {
                    turn = None;
                    match granted {
                        Ok(()) => {
                            #[cfg(feature = "metrics")]
                            if let Some(since) = waiting_since.take() {
                                metrics::histogram!("gateway_identify_wait_seconds").record((now() - since).as_secs_f64());
                            }
                            session.handle_identify_permitted(now());
                        }
                        Err(IdentifyError::BudgetExhausted(wait)) => session.handle_identify_refused(now(), wait, "the session start budget is down to its reserve"),
                        Err(e) => {
                            // The queue is unreachable: close, say why, and try again shortly.
                            tracing::error!(error = %e, "cannot identify");
                            let reason = format!("the identify queue failed: {e}");
                            session.handle_identify_refused(now(), std::time::Duration::from_secs(5), &reason);
                        }
                    }
                }
            }
        }
        if let Some(closing) = closing {
            closing.await;
        }
        tracing::info!(outcome = ?session.outcome(), "shard stopped");
    }
    .instrument(span)
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quiet_comes_a_second_after_the_last_message_read_and_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut quiet = Quiet::default();
        assert!(!quiet.is_quiet(at(5_000)), "nothing read yet");
        quiet.saw(&Io::Sent, at(0));
        assert_eq!(quiet.check, None, "a send is not a read");
        quiet.saw(&Io::Received(None), at(0));
        quiet.saw(&Io::Received(None), at(800));
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
        quiet.saw(&Io::Received(None), at(10_000));
        assert!(quiet.is_quiet(at(11_000)));
    }
}
