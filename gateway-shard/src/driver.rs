//! The tokio driver: a thin loop that runs a [`Session`] over a real websocket.

use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use futures_util::StreamExt;
use gateway_codec::Decoder;
use gateway_model::{Command, Snowflake};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::connect::{Socket, connect};
use std::sync::Arc;

use crate::identify::{BoxFuture, IdentifyError, IdentifyQueue};
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
            resume: None,
            outcome: None,
        }
    }
}

/// The driver's fixed settings.
pub(crate) struct Settings {
    pub(crate) identify_queue: Arc<dyn IdentifyQueue>,
    pub(crate) max_concurrency: u32,
    pub(crate) connect_limit: Option<Arc<tokio::sync::Semaphore>>,
    pub(crate) proxy: Option<String>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) decoder: Decoder,
    pub(crate) max_message: usize,
}

/// `Instant::now()` as tokio sees it, so that tests can pause the clock.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn next_message(
    socket: &mut Option<Socket>,
) -> Option<Result<Message, async_tungstenite::tungstenite::Error>> {
    match socket {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

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
        let mut close_replies: Vec<oneshot::Sender<Option<ResumeInfo>>> = Vec::new();
        let mut control_open = true;
        let mut turn: Option<BoxFuture<'static, Result<(), IdentifyError>>> = None;
        loop {
            while let Some(action) = session.poll_action() {
                match action {
                    Action::Connect { url } => {
                        socket = None;
                        turn = None;
                        let _handshake_slot = match &settings.connect_limit {
                            Some(limit) => Arc::clone(limit).acquire_owned().await.ok(),
                            None => None,
                        };
                        if let Err(e) = settings.decoder.reset() {
                            tracing::error!(error = %e, "decoder reset failed");
                        }
                        let attempt = tokio::time::timeout(
                            settings.handshake_timeout,
                            connect(&url, settings.proxy.as_deref(), settings.max_message),
                        )
                        .await;
                        match attempt {
                            Ok(Ok(s)) => {
                                socket = Some(s);
                                session.handle_connected(now());
                            }
                            Ok(Err(e)) => session.handle_connect_failed(now(), &e.to_string()),
                            Err(_) => session.handle_connect_failed(now(), "websocket handshake timed out"),
                        }
                    }
                    Action::Close { code } => {
                        if let Some(mut s) = socket.take() {
                            let frame = CloseFrame { code: code.into(), reason: "".into() };
                            let _ = tokio::time::timeout(Duration::from_secs(2), s.close(Some(frame))).await;
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
            while let Some(frame) = session.poll_transmit(now()) {
                let Some(s) = socket.as_mut() else { break };
                if let Err(e) = s.send(Message::text(frame)).await {
                    tracing::debug!(error = %e, "send failed");
                    socket = None;
                    session.handle_closed(now(), None);
                    break;
                }
            }
            while let Some(event) = session.poll_event() {
                // Backpressure: a full event buffer holds the loop until the user reads.
                let _ = events.send(event).await;
            }
            if session.state() != SessionState::WaitingToIdentify {
                // The connection that waited is gone: give the place in the queue up.
                turn = None;
            }
            publish(&status, &mut session);
            if !session.is_alive() {
                // Actions were drained above, the final close frame included.
                break;
            }
            let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                message = next_message(&mut socket) => match message {
                    Some(Ok(Message::Text(text))) => decode(&mut session, &mut settings.decoder, text.as_bytes()),
                    Some(Ok(Message::Binary(bytes))) => decode(&mut session, &mut settings.decoder, &bytes),
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
                request = control.recv(), if control_open => match request {
                    Some(Control::Command(command, reply)) => {
                        let _ = reply.send(session.queue_command(*command));
                    }
                    Some(Control::Presence(update, reply)) => {
                        let _ = reply.send(session.update_presence(&update));
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
                granted = wait_turn(&mut turn), if turn.is_some() => {
                    turn = None;
                    match granted {
                        Ok(()) => session.identify_permitted(now()),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot identify");
                            session.handle_closed(now(), Some(4000));
                        }
                    }
                }
            }
        }
        let resume = session.resume_info();
        for reply in close_replies {
            let _ = reply.send(resume.clone());
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
fn publish(status: &watch::Sender<Status>, session: &mut Session) {
    let permits = session.permits(now());
    status.send_if_modified(|st| {
        let mut wake = set(&mut st.state, session.state());
        wake |= set(&mut st.alive, session.is_alive());
        wake |= set(&mut st.connected, session.is_connected());
        let ready_once = st.ready_once || session.is_connected();
        wake |= set(&mut st.ready_once, ready_once);
        wake |= set(&mut st.user_id, session.user_id());
        if st.outcome.is_none() && session.outcome().is_some() {
            st.outcome = session.outcome().cloned();
            wake = true;
        }
        // Seen through `borrow()` without waking anyone.
        st.latency = session.heartbeat_latency();
        st.queue_depth = session.queue_depth();
        st.permits = permits;
        match (&mut st.resume, session.session_id()) {
            (Some(resume), Some(id)) if resume.session_id == id => {
                resume.sequence = session.sequence().unwrap_or(0);
            }
            (slot, _) => *slot = session.resume_info(),
        }
        wake
    });
}

async fn wait_turn(
    turn: &mut Option<BoxFuture<'static, Result<(), IdentifyError>>>,
) -> Result<(), IdentifyError> {
    match turn {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn decode(session: &mut Session, decoder: &mut Decoder, bytes: &[u8]) {
    match decoder.push(bytes) {
        Ok(Some(payload)) => session.handle_payload(now(), &payload),
        Ok(None) => {}
        Err(e) => session.handle_decode_error(now(), &e),
    }
    decoder.trim();
}
