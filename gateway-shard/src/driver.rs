//! The tokio driver: a thin loop that runs a [`Session`] over a real websocket. Every wait is a
//! branch of its one `select!`; the session decides everything else (the decoder's life, the
//! identify wait, retries): the driver only carries outputs out and inputs in.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt as _;
use gateway_model::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::drive::{Timer, now, wait};
use crate::identify::{BoxFuture, IdentifyError, IdentifyQueue};
use crate::link::{Dialer, Io, Link, Opening, Received, shut};
use crate::outbox::Outbox;
use crate::sink::EventSink;
use crate::status::{Status, publish};
use crate::{Action, CommandError, Output, PresenceUpdate, ResumeInfo, Session};

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
    /// Bytes of undelivered events past which the socket is not read.
    pub(crate) event_budget: usize,
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

/// What woke the driver's select.
enum Wake {
    Io(Io),
    Opening(Opening),
    Closed,
    Delivered,
    Control(Option<Control>),
    Timer,
    Turn(Result<(), IdentifyError>),
}

/// One shard's driver: the session, and the IO it asks for.
struct Driver {
    session: Session,
    settings: Settings,
    events: EventSink,
    control: mpsc::Receiver<Control>,
    control_open: bool,
    status: watch::Sender<Status>,
    link: Option<Link>,
    connecting: Option<BoxFuture<'static, Opening>>,
    connect_to: Option<String>,
    closing: Option<BoxFuture<'static, ()>>,
    turn: Option<BoxFuture<'static, Result<(), IdentifyError>>>,
    outbox: Outbox,
    close_replies: Vec<oneshot::Sender<Option<ResumeInfo>>>,
    /// The session's timer, moved only when its deadline moves.
    timer: Timer,
    burst: usize,
    #[cfg(feature = "metrics")]
    waiting_since: Option<Instant>,
}

/// Runs the session until it stops and every event it produced reached the user (or the user
/// went away). Every wait is a branch of the one `select!`: reading and sending, connecting,
/// closing, the identify turn, timers, handle requests and event delivery, so that heartbeats and
/// commands go on whatever else is slow.
pub(crate) async fn run(
    session: Session,
    settings: Settings,
    events: EventSink,
    control: mpsc::Receiver<Control>,
    status: watch::Sender<Status>,
) {
    let shard = session.shard();
    let span = tracing::info_span!("shard", id = shard.number(), count = shard.total());
    let mut driver = Driver {
        outbox: Outbox::new(settings.event_budget),
        session,
        settings,
        events,
        control,
        control_open: true,
        status,
        link: None,
        connecting: None,
        connect_to: None,
        closing: None,
        turn: None,
        close_replies: Vec::new(),
        timer: Timer::new(),
        burst: 0,
        #[cfg(feature = "metrics")]
        waiting_since: None,
    };
    async move {
        loop {
            // One reading of the clock for the loop's bookkeeping (inputs read it again).
            let t = now();
            driver.drain(t);
            if driver.finished() {
                break;
            }
            // Read once per turn: nothing reaches the session between here and the select.
            let deadline = driver.session.poll_timeout();
            if driver.read_buffered(t, deadline) {
                continue;
            }
            driver.step(deadline).await;
        }
        if let Some(closing) = driver.closing.take() {
            closing.await;
        }
        tracing::info!(outcome = ?driver.session.outcome(), "shard stopped");
    }
    .instrument(span)
    .await;
}

impl Driver {
    /// Acts on every output of the session, then hands events over and publishes the status.
    fn drain(&mut self, t: Instant) {
        while let Some(output) = self.session.poll_output(t) {
            match output {
                Output::Action(action) => self.act(action, t),
                Output::Transmit(frame) => match self.link.as_mut() {
                    Some(l) => l.send(frame),
                    None => tracing::debug!("a frame for a connection that is gone"),
                },
                Output::Event { event, cost } => self.outbox.push(event, cost),
            }
        }
        // Published before the events go, so that a handle sees what an event it reads implies.
        publish(&self.status, &mut self.session, &self.outbox, t);
        self.outbox.deliver_ready(&self.events);
        // Past the budget, stop reading (the session decides when that may be): the gateway's
        // TCP window fills and it waits; heartbeats go on.
        self.session.handle_reading_paused(t, self.outbox.is_full());
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn act(&mut self, action: Action, t: Instant) {
        match action {
            Action::Connect { url } => {
                self.link = None;
                self.turn = None;
                self.connect_to = Some(url);
                self.connecting = Some(self.settings.dialer.slot());
            }
            Action::Close { code } => {
                if let Some(l) = self.link.take() {
                    self.closing = Some(shut(l.into_socket(), code));
                }
            }
            Action::AwaitIdentify => {
                #[cfg(feature = "metrics")]
                {
                    self.waiting_since = Some(t);
                }
                // Wait in the identify queue while the loop keeps heartbeating.
                let queue = Arc::clone(&self.settings.identify_queue);
                let (id, buckets) = (self.session.shard().number(), self.settings.max_concurrency);
                self.turn = Some(Box::pin(async move { queue.acquire(id, buckets).await }));
            }
            Action::CancelConnect => {
                self.connecting = None;
                self.connect_to = None;
            }
            Action::CancelIdentify => self.turn = None,
        }
    }

    /// Whether the driver is done: the session stopped and its events reached the user (or the
    /// user went away). Whoever asked to close hears back as soon as the session stops.
    fn finished(&mut self) -> bool {
        if self.session.is_alive() {
            return false;
        }
        let resume = self.session.resume_info();
        for reply in self.close_replies.drain(..) {
            // A handle that stopped waiting needs no answer.
            drop(reply.send(resume.clone()));
        }
        self.outbox.is_empty() || self.events.is_closed()
    }

    /// Handles a message already in the socket's buffer without the select (a few in a row, then
    /// the select gets its turn): one wake-up per burst, not per message. Not when a timer is
    /// due. Says whether it did.
    fn read_buffered(&mut self, t: Instant, deadline: Option<Instant>) -> bool {
        let due = deadline.is_some_and(|d| d <= t);
        if self.session.is_reading_paused() || self.burst >= BURST || due {
            self.burst = 0;
            return false;
        }
        let Some(io) = self.link.as_mut().and_then(|l| l.io(true).now_or_never()) else {
            self.burst = 0;
            return false;
        };
        self.burst += 1;
        self.feed(io);
        true
    }

    /// Waits for the next input, whichever comes first, and hands it to the session.
    async fn step(&mut self, deadline: Option<Instant>) {
        self.timer.set(deadline);
        let reading = !self.session.is_reading_paused();
        let busy = self.link.as_ref().is_some_and(|l| l.busy(reading));
        let woke = tokio::select! {
            io = link_io(&mut self.link, reading), if busy => Wake::Io(io),
            step = wait(&mut self.connecting) => Wake::Opening(step),
            () = wait(&mut self.closing) => Wake::Closed,
            permit = self.events.reserve(), if !self.outbox.is_empty() => {
                if let (Ok(permit), Some(event)) = (permit, self.outbox.pop()) {
                    permit.send(event);
                }
                Wake::Delivered
            }
            request = self.control.recv(), if self.control_open => Wake::Control(request),
            () = self.timer.fired(), if self.timer.is_set() => Wake::Timer,
            granted = wait(&mut self.turn) => Wake::Turn(granted),
        };
        match woke {
            Wake::Io(io) => self.feed(io),
            Wake::Opening(step) => self.opened(step),
            Wake::Closed => self.closing = None,
            Wake::Delivered => {}
            Wake::Control(request) => self.request(request),
            Wake::Timer => self.session.handle_timeout(now()),
            Wake::Turn(granted) => self.granted(granted),
        }
    }

    /// Hands what the socket did to the session; the link goes once the transport ended.
    fn feed(&mut self, io: Io) {
        let received = match io {
            Io::Sent => return,
            Io::SendFailed(e) => {
                tracing::debug!(error = %e, "send failed");
                Received::Closed(None)
            }
            Io::Received(message) => Received::from(message),
        };
        match received {
            Received::Message(bytes) => self.message(&bytes),
            Received::Nothing => {}
            // The session closes it (`Action::Close`), with a close frame.
            Received::TooLarge => self.session.handle_message_too_large(now()),
            Received::Closed(code) => {
                self.session.handle_closed(now(), code);
                self.link = None;
            }
        }
    }

    /// One message to the session, measured when metrics are on.
    fn message(&mut self, bytes: &[u8]) {
        #[cfg(not(feature = "metrics"))]
        self.session.handle_message(now(), bytes);
        #[cfg(feature = "metrics")]
        {
            let decoded = self.session.data_bytes_decoded();
            // The decode histogram measures real time, not tokio's (which tests pause).
            #[allow(clippy::disallowed_methods)]
            let started = Instant::now();
            self.session.handle_message(now(), bytes);
            metrics::histogram!("gateway_decode_seconds").record(started.elapsed().as_secs_f64());
            metrics::counter!("gateway_bytes_received_total").increment(bytes.len() as u64);
            metrics::counter!("gateway_data_bytes_decoded_total")
                .increment(self.session.data_bytes_decoded() - decoded);
        }
    }

    fn opened(&mut self, step: Opening) {
        self.connecting = None;
        match step {
            // (An attempt the session gave up on was cancelled: its steps never come here.)
            Opening::Slot(permit) => {
                if let Some(url) = self.connect_to.take() {
                    // The wait for a slot does not count against the handshake.
                    self.session.handle_connect_started(now());
                    self.connecting = Some(self.settings.dialer.open(url, permit));
                }
            }
            Opening::Opened(Ok(s)) => {
                self.link = Some(Link::new(*s));
                self.session.handle_connected(now());
            }
            Opening::Opened(Err(reason)) => self.session.handle_connect_failed(now(), &reason),
        }
    }

    fn request(&mut self, request: Option<Control>) {
        match request {
            // A handle that stopped waiting for the answer needs none.
            Some(Control::Command(command, reply)) => {
                drop(reply.send(self.session.handle_command(now(), *command)));
            }
            Some(Control::Presence(update, reply)) => {
                drop(reply.send(self.session.handle_presence(now(), &update)));
            }
            Some(Control::Close(keep_resumable, reply)) => {
                self.session.handle_close(now(), keep_resumable);
                self.close_replies.push(reply);
            }
            None => {
                // Every handle is gone: end the session.
                self.control_open = false;
                self.session.handle_close(now(), false);
            }
        }
    }

    fn granted(&mut self, granted: Result<(), IdentifyError>) {
        self.turn = None;
        match granted {
            Ok(()) => {
                #[cfg(feature = "metrics")]
                if let Some(since) = self.waiting_since.take() {
                    metrics::histogram!("gateway_identify_wait_seconds")
                        .record((now() - since).as_secs_f64());
                }
                self.session.handle_identify_permitted(now());
            }
            Err(IdentifyError::BudgetExhausted(wait)) => self.session.handle_identify_refused(
                now(),
                wait,
                "the session start budget is down to its reserve",
            ),
            Err(e) => self.session.handle_identify_failed(now(), &e.to_string()),
        }
    }
}
