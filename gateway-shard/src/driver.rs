//! The tokio driver: a thin loop that runs a [`Session`] over a real websocket.

use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use std::task::Poll;

use async_tungstenite::tungstenite::Error as WsError;
use futures_util::{SinkExt, StreamExt};
use gateway_codec::Decoder;
use gateway_model::{Command, Snowflake};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tracing::Instrument;

use crate::connect::{Socket, connect};
use std::sync::Arc;

use crate::identify::{BoxFuture, IdentifyError, IdentifyQueue};
use crate::outbox::{Outbox, SMALL_EVENT};
use crate::{
    Action, CommandError, PresenceUpdate, ResumeInfo, Session, SessionState, ShardError, ShardEvent,
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

/// What the handles can see of the shard.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) state: SessionState,
    pub(crate) alive: bool,
    pub(crate) connected: bool,
    pub(crate) ready_once: bool,
    pub(crate) latency: Option<Duration>,
    pub(crate) user_id: Option<Snowflake>,
    pub(crate) queue_depth: usize,
    pub(crate) permits: usize,
    pub(crate) buffered_bytes: usize,
    pub(crate) peak_buffered_bytes: usize,
    pub(crate) last_failure: Option<String>,
    pub(crate) resume: Option<ResumeInfo>,
    pub(crate) outcome: Option<Result<(), ShardError>>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            state: SessionState::Disconnected,
            alive: true,
            connected: false,
            ready_once: false,
            latency: None,
            user_id: None,
            queue_depth: 0,
            permits: 0,
            buffered_bytes: 0,
            peak_buffered_bytes: 0,
            last_failure: None,
            resume: None,
            outcome: None,
        }
    }
}

/// The driver's fixed settings.
pub(crate) struct Settings {
    pub(crate) identify_queue: Arc<dyn IdentifyQueue>,
    pub(crate) max_concurrency: u32,
    pub(crate) connect_limit: Option<Arc<Semaphore>>,
    pub(crate) proxy: Option<String>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) decoder: Decoder,
    pub(crate) max_message: usize,
    /// Bytes of undelivered events past which the socket is not read.
    pub(crate) event_budget: usize,
    /// The TLS connector when extra roots are trusted.
    pub(crate) tls: Option<tokio_rustls::TlsConnector>,
}

/// `Instant::now()` as tokio sees it, so that tests can pause the clock.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What the socket did: a message came (or the stream ended), a frame went out, or sending
/// failed.
enum Io {
    Received(Option<Result<Message, WsError>>),
    Sent,
    SendFailed(WsError),
}

/// The socket's half of the loop, in one future so that reading and sending share the socket
/// without splitting it: moves the pending frame into the socket and flushes it, and reads when
/// `reading`. Cancel-safe: a frame stays in `outgoing` until the socket took it, and `flushing`
/// says a flush is owed.
async fn socket_io(
    socket: &mut Option<Socket>,
    outgoing: &mut Option<Message>,
    flushing: &mut bool,
    reading: bool,
) -> Io {
    let Some(socket) = socket else {
        return std::future::pending().await;
    };
    std::future::poll_fn(|cx| {
        if outgoing.is_some() {
            match socket.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(frame) = outgoing.take() {
                        if let Err(e) = socket.start_send_unpin(frame) {
                            return Poll::Ready(Io::SendFailed(e));
                        }
                        *flushing = true;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Io::SendFailed(e)),
                Poll::Pending => {}
            }
        }
        if *flushing {
            match socket.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    *flushing = false;
                    return Poll::Ready(Io::Sent);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Io::SendFailed(e)),
                Poll::Pending => {}
            }
        }
        if reading && let Poll::Ready(message) = socket.poll_next_unpin(cx) {
            return Poll::Ready(Io::Received(message));
        }
        Poll::Pending
    })
    .await
}

/// Waits for an optional future; never completes while there is none.
async fn wait<T>(slot: &mut Option<BoxFuture<'static, T>>) -> T {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The steps of opening a websocket.
enum Opening {
    /// A handshake slot is ours (or none is needed): the attempt's clock starts now.
    Slot(Option<OwnedSemaphorePermit>),
    /// The websocket is open, or why not (boxed: a socket is large, and this is once per
    /// connection).
    Opened(Result<Box<Socket>, String>),
}

/// Waits for a handshake slot, so that a group's mass reconnect goes a few at a time.
fn slot(limit: Option<Arc<Semaphore>>) -> BoxFuture<'static, Opening> {
    Box::pin(async move {
        match limit {
            Some(limit) => match limit.acquire_owned().await {
                Ok(permit) => Opening::Slot(Some(permit)),
                Err(e) => Opening::Opened(Err(e.to_string())),
            },
            None => Opening::Slot(None),
        }
    })
}

/// Connects within the handshake timeout, holding the slot until the handshake ends.
fn open(
    url: String,
    settings: &Settings,
    slot: Option<OwnedSemaphorePermit>,
) -> BoxFuture<'static, Opening> {
    let proxy = settings.proxy.clone();
    let (timeout, max_message) = (settings.handshake_timeout, settings.max_message);
    let tls = settings.tls.clone();
    Box::pin(async move {
        let _slot = slot;
        let connecting = connect(&url, proxy.as_deref(), max_message, tls);
        Opening::Opened(match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(socket)) => Ok(Box::new(socket)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("websocket handshake timed out".to_owned()),
        })
    })
}

/// Sends a close frame and waits (2 s at most) for the close to finish.
fn shut(mut socket: Socket, code: u16) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let frame = CloseFrame {
            code: code.into(),
            reason: "".into(),
        };
        match tokio::time::timeout(Duration::from_secs(2), socket.close(Some(frame))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "close frame not delivered"),
            Err(_) => tracing::debug!("close handshake timed out"),
        }
    })
}

/// Runs the session until it stops and every event it produced reached the user (or the user
/// went away). Every wait is a branch of the one `select!`: reading and sending, connecting,
/// closing, the identify turn, timers, handle requests and event delivery, so that heartbeats and
/// commands go on whatever else is slow.
pub(crate) async fn run(
    mut session: Session,
    mut settings: Settings,
    events: mpsc::Sender<ShardEvent>,
    mut control: mpsc::Receiver<Control>,
    status: watch::Sender<Status>,
) {
    let span = tracing::info_span!(
        "shard",
        id = session.shard().number(),
        count = session.shard().total()
    );
    async move {
        let mut socket: Option<Socket> = None;
        // The frame on its way into the socket, and whether the socket owes a flush.
        let mut outgoing: Option<Message> = None;
        let mut flushing = false;
        let mut connecting: Option<BoxFuture<'static, Opening>> = None;
        let mut connect_to: Option<String> = None;
        let mut closing: Option<BoxFuture<'static, ()>> = None;
        let mut turn: Option<BoxFuture<'static, Result<(), IdentifyError>>> = None;
        let mut outbox = Outbox::new(settings.event_budget);
        let mut close_replies: Vec<oneshot::Sender<Option<ResumeInfo>>> = Vec::new();
        let mut control_open = true;
        let mut size = SMALL_EVENT;
        loop {
            while let Some(action) = session.poll_action() {
                match action {
                    Action::Connect { url } => {
                        socket = None;
                        (outgoing, flushing) = (None, false);
                        turn = None;
                        if let Err(e) = settings.decoder.reset() {
                            tracing::error!(error = %e, "decoder reset failed");
                        }
                        connect_to = Some(url);
                        connecting = Some(slot(settings.connect_limit.clone()));
                    }
                    Action::Close { code } => {
                        if let Some(s) = socket.take() {
                            closing = Some(shut(s, code));
                        }
                    }
                    Action::AwaitIdentify => {
                        // Wait in the identify queue while the loop keeps heartbeating.
                        let queue = Arc::clone(&settings.identify_queue);
                        let (id, buckets) = (session.shard().number(), settings.max_concurrency);
                        turn = Some(Box::pin(async move { queue.acquire(id, buckets).await }));
                    }
                }
            }
            // A frame is taken from the session only when there is a socket to send it on and
            // the one before it went out; the select moves it into the socket. A frame on its
            // way when the connection ended is lost with it, as on any transport.
            if socket.is_none() {
                (outgoing, flushing) = (None, false);
            } else if outgoing.is_none() && !flushing {
                outgoing = session.poll_transmit(now()).map(Message::text);
            }
            while let Some(event) = session.poll_event() {
                outbox.push(event, std::mem::replace(&mut size, SMALL_EVENT));
            }
            outbox.deliver_ready(&events);
            // Past the budget, stop reading (the session decides when that may be): the
            // gateway's TCP window fills and it waits; heartbeats go on.
            session.set_reading_paused(now(), outbox.is_full());
            if session.state() != SessionState::WaitingToIdentify {
                // The connection that waited is gone: give the place in the queue up.
                turn = None;
            }
            publish(&status, &mut session, &outbox);
            if !session.is_alive() {
                // Whoever asked to close hears back now, even while events still wait for the user.
                let resume = session.resume_info();
                for reply in close_replies.drain(..) {
                    // A handle that stopped waiting needs no answer.
                    drop(reply.send(resume.clone()));
                }
                if outbox.is_empty() || events.is_closed() {
                    // Actions were drained above, the final close frame included.
                    break;
                }
            }
            let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
            let reading = socket.is_some() && !session.is_reading_paused();
            let io = socket.is_some() && (reading || outgoing.is_some() || flushing);
            tokio::select! {
                io = socket_io(&mut socket, &mut outgoing, &mut flushing, reading), if io => match io {
                    Io::Sent => {}
                    Io::SendFailed(e) => {
                        tracing::debug!(error = %e, "send failed");
                        socket = None;
                        session.handle_closed(now(), None);
                    }
                    Io::Received(message) => match message {
                    Some(Ok(Message::Text(text))) => size = decode(&mut session, &mut settings.decoder, text.as_bytes()),
                    Some(Ok(Message::Binary(bytes))) => size = decode(&mut session, &mut settings.decoder, &bytes),
                    Some(Ok(Message::Close(frame))) => {
                        socket = None;
                        session.handle_closed(now(), frame.map(|f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(async_tungstenite::tungstenite::Error::Capacity(e))) => {
                        // The websocket refused a message over the limit before the decoder saw
                        // it: the same as an oversize payload, which a resume would replay.
                        tracing::debug!(error = %e, "message over the limit");
                        socket = None;
                        let limit = settings.max_message;
                        session.handle_decode_error(now(), &gateway_codec::DecodeError::MessageTooLarge { limit });
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "connection lost");
                        socket = None;
                        session.handle_closed(now(), None);
                    }
                    None => {
                        socket = None;
                        session.handle_closed(now(), None);
                    }
                    },
                },
                step = wait(&mut connecting), if connecting.is_some() => {
                    connecting = None;
                    match step {
                        Opening::Slot(permit) => match connect_to.take() {
                            Some(url) if session.awaits_connection() => {
                                // The wait for a slot does not count against the handshake.
                                session.handle_connect_started(now());
                                connecting = Some(open(url, &settings, permit));
                            }
                            _ => {}
                        },
                        // A connection the session gave up on meanwhile is dropped.
                        Opening::Opened(Ok(s)) if session.awaits_connection() => {
                            socket = Some(*s);
                            session.handle_connected(now());
                        }
                        Opening::Opened(Ok(_)) => {}
                        Opening::Opened(Err(reason)) => session.handle_connect_failed(now(), &reason),
                    }
                }
                () = wait(&mut closing), if closing.is_some() => closing = None,
                permit = events.reserve(), if !outbox.is_empty() => {
                    if let (Ok(permit), Some(event)) = (permit, outbox.pop()) {
                        permit.send(event);
                    }
                }
                request = control.recv(), if control_open => match request {
                    Some(Control::Command(command, reply)) => {
                        // A handle that stopped waiting for the answer needs none.
                        drop(reply.send(session.queue_command(*command)));
                    }
                    Some(Control::Presence(update, reply)) => {
                        drop(reply.send(session.update_presence(&update)));
                    }
                    Some(Control::Close(keep_resumable, reply)) => {
                        session.close(now(), keep_resumable);
                        close_replies.push(reply);
                    }
                    None => {
                        // Every handle is gone: end the session.
                        control_open = false;
                        session.close(now(), false);
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => session.handle_timeout(now()),
                granted = wait(&mut turn), if turn.is_some() => {
                    turn = None;
                    match granted {
                        Ok(()) => session.identify_permitted(now()),
                        Err(IdentifyError::BudgetExhausted(wait)) => {
                            session.identify_refused(now(), wait, "the session start budget is down to its reserve");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot identify");
                            session.handle_closed(now(), Some(4000));
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

/// Replaces `*slot` with `value` if they differ; says whether it did.
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    let changed = *slot != value;
    if changed {
        *slot = value;
    }
    changed
}

/// Publishes the session's status to the handles. Runs after every message, so it allocates
/// nothing in the steady state (the exported session is rebuilt only when the session changes)
/// and wakes waiters only for what they wait on: state, readiness, the user id, the outcome.
fn publish(status: &watch::Sender<Status>, session: &mut Session, outbox: &Outbox) {
    let permits = session.permits(now());
    status.send_if_modified(|st| {
        let mut wake = set(&mut st.state, session.state());
        wake |= set(&mut st.alive, session.is_alive());
        wake |= set(&mut st.connected, session.is_connected());
        let ready_once = st.ready_once || session.is_connected();
        wake |= set(&mut st.ready_once, ready_once);
        wake |= set(&mut st.user_id, session.user_id());
        if st.last_failure.as_deref() != session.last_failure() {
            st.last_failure = session.last_failure().map(str::to_owned);
            wake = true;
        }
        if st.outcome.is_none() && session.outcome().is_some() {
            st.outcome = session.outcome().cloned();
            wake = true;
        }
        // Seen through `borrow()` without waking anyone.
        st.latency = session.heartbeat_latency();
        st.queue_depth = session.queue_depth();
        st.permits = permits;
        st.buffered_bytes = outbox.bytes();
        st.peak_buffered_bytes = outbox.peak();
        match (&mut st.resume, session.session_id()) {
            (Some(resume), Some(id)) if resume.session_id == id => {
                resume.sequence = session.sequence().unwrap_or(0);
            }
            (slot, _) => *slot = session.resume_info(),
        }
        wake
    });
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Feeds one websocket message to the session; returns what the event it yields, if any, is
/// counted as in the outbox (the payload's `d`).
fn decode(session: &mut Session, decoder: &mut Decoder, bytes: &[u8]) -> usize {
    let size = match decoder.push(bytes) {
        Ok(Some(payload)) => {
            let size = payload.data.map_or(0, str::len) + SMALL_EVENT;
            session.handle_payload(now(), &payload);
            size
        }
        Ok(None) => SMALL_EVENT,
        Err(e) => {
            session.handle_decode_error(now(), &e);
            SMALL_EVENT
        }
    };
    decoder.trim();
    size
}
