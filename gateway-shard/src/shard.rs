//! The `Shard` handle: start, commands, properties, events.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_codec::connect_url;
use gateway_model::{
    ChannelInfoField, Command, Intents, RequestChannelInfo, RequestGuildMembers,
    RequestSoundboardSounds, ShardId, Snowflake, UpdateVoiceState,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::{self, Control, Settings};
use crate::link::Dialer;
use crate::sink::EventSink;
use crate::status::Status;
use crate::{
    CommandError, PresenceUpdate, ResumeInfo, Session, ShardConfig, ShardError, ShardEvent,
};

/// One running shard: a handle on its driver task.
///
/// Dropping every handle closes the shard (with 1000, ending the session).
#[derive(Debug)]
pub struct Shard {
    shard: ShardId,
    intents: Intents,
    control: mpsc::Sender<Control>,
    pub(crate) status: watch::Receiver<Status>,
}

/// Sends commands on a shard without keeping it alive ([`Shard::commander`]).
#[derive(Debug, Clone)]
pub struct Commander {
    id: u32,
    control: mpsc::WeakSender<Control>,
}

impl Commander {
    /// The shard's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Queues any command, as [`Shard::send`] does.
    pub async fn send(&self, command: impl Into<Command>) -> Result<(), CommandError> {
        let control = self.control.upgrade().ok_or(CommandError::NotRunning)?;
        let (tx, rx) = oneshot::channel();
        control
            .send(Control::Command(Box::new(command.into()), tx))
            .await
            .map_err(|_| CommandError::NotRunning)?;
        rx.await.map_err(|_| CommandError::NotRunning)?
    }
}

/// The shard's events, as a [`Stream`](futures_util::Stream). Reading slowly holds the shard back
/// (the buffer is [`ShardConfig::event_buffer`]): events are never dropped.
#[derive(Debug)]
pub struct ShardEvents {
    rx: mpsc::Receiver<ShardEvent>,
}

impl ShardEvents {
    /// The next event; `None` once the shard stopped and every event was read.
    pub async fn next(&mut self) -> Option<ShardEvent> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for ShardEvents {
    type Item = ShardEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ShardEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Shard {
    /// Starts the shard and waits until it is READY (or resumed), the shard stops with an error,
    /// or [`ShardConfig::start_timeout`] passes.
    pub async fn start(config: ShardConfig) -> Result<(Self, ShardEvents), ShardError> {
        let timeout = config.start_timeout;
        let (shard, events) = Self::spawn(config)?;
        let mut status = shard.status.clone();
        let ready = status.wait_for(|s| s.ready_once || s.outcome.is_some());
        let outcome = match timeout {
            Some(t) => match tokio::time::timeout(t, ready).await {
                Ok(r) => r.map(|s| s.outcome.clone()),
                Err(_) => {
                    shard.close(false).await;
                    return Err(ShardError::StartTimeout(t));
                }
            },
            None => ready.await.map(|s| s.outcome.clone()),
        };
        match outcome {
            Ok(None) | Ok(Some(Ok(()))) => Ok((shard, events)),
            Ok(Some(Err(e))) => Err(e),
            Err(_) => Err(ShardError::Closed),
        }
    }

    /// Starts the shard without waiting for READY.
    pub fn spawn(config: ShardConfig) -> Result<(Self, ShardEvents), ShardError> {
        let (events_tx, events_rx) = mpsc::channel(config.event_buffer.max(1));
        let shard = Self::spawn_into(config, EventSink::Shard(events_tx))?;
        Ok((shard, ShardEvents { rx: events_rx }))
    }

    /// Starts the shard without waiting for READY, its events going into `events` tagged with the
    /// shard's number, as a group's shards do: one channel for many shards, with no channel and
    /// no forwarding task per shard. Reading `events` slowly holds every shard on it back.
    pub fn spawn_tagged(
        config: ShardConfig,
        events: mpsc::Sender<(u32, ShardEvent)>,
    ) -> Result<Self, ShardError> {
        let shard = config.shard.number();
        Self::spawn_into(config, EventSink::Group { shard, tx: events })
    }

    /// Starts the shard, its events going to `sink` (a group's channel, for one).
    pub(crate) fn spawn_into(config: ShardConfig, sink: EventSink) -> Result<Self, ShardError> {
        connect_url(&config.gateway_url, config.compression)
            .map_err(|e| ShardError::Config(e.to_string()))?;
        let session = Session::new(&config, crate::drive::now());
        if let Some(Err(e)) = session.outcome() {
            // The session could not start (its decoder could not be built).
            return Err(e.clone());
        }
        let (control_tx, control_rx) = mpsc::channel(64);
        let (status_tx, status_rx) = watch::channel(Status {
            alive: true,
            ..Status::default()
        });
        let settings = Settings {
            identify_queue: std::sync::Arc::clone(&config.identify_queue),
            max_concurrency: config.max_concurrency,
            dialer: Dialer {
                connect_limit: config.connect_limit.clone(),
                proxy: config.proxy.clone(),
                handshake_timeout: config.timeouts.handshake,
                max_message: config.limits.max_message_size,
                tls: crate::connect::tls_connector(&config.tls_roots)
                    .map_err(|e| ShardError::Config(format!("TLS root: {e}")))?,
            },
            event_budget: config.event_buffer_bytes,
        };
        tokio::spawn(driver::run(session, settings, sink, control_rx, status_tx));
        Ok(Self {
            shard: config.shard,
            intents: config.intents,
            control: control_tx,
            status: status_rx,
        })
    }

    /// Waits until the shard stops: `Ok` after [`close`](Self::close), the error after a fatal one.
    pub async fn join(&self) -> Result<(), ShardError> {
        let mut status = self.status.clone();
        match status.wait_for(|s| s.outcome.is_some() && !s.alive).await {
            Ok(s) => s.outcome.clone().unwrap_or(Ok(())),
            Err(_) => self
                .status
                .borrow()
                .outcome
                .clone()
                .unwrap_or(Err(ShardError::Closed)),
        }
    }

    /// Closes the shard. With `keep_resumable`, the connection closes with 4000 (not 1000) and the
    /// session is returned, for this or another process to [`ShardConfig::with_resume`] it.
    pub async fn close(&self, keep_resumable: bool) -> Option<ResumeInfo> {
        let (tx, rx) = oneshot::channel();
        if self
            .control
            .send(Control::Close(keep_resumable, tx))
            .await
            .is_err()
        {
            return if keep_resumable {
                self.status.borrow().resume.clone()
            } else {
                None
            };
        }
        match rx.await {
            Ok(resume) => resume,
            // The driver ended before it answered: the last published session, if kept.
            Err(_) if keep_resumable => self.status.borrow().resume.clone(),
            Err(_) => None,
        }
    }

    /// A handle that sends commands on this shard from elsewhere (another task, in order of
    /// its own), without keeping the shard alive: once every [`Shard`] handle is gone, its
    /// sends fail with [`CommandError::NotRunning`].
    pub fn commander(&self) -> Commander {
        Commander {
            id: self.shard.number(),
            control: self.control.downgrade(),
        }
    }

    /// This shard's id.
    pub fn id(&self) -> u32 {
        self.shard.number()
    }

    /// The bot's shard count.
    pub fn shard_count(&self) -> u32 {
        self.shard.total()
    }

    /// The intents.
    pub fn intents(&self) -> Intents {
        self.intents
    }

    /// Where the shard stands: connecting, waiting to identify, resuming, connected…
    pub fn state(&self) -> crate::SessionState {
        self.status.borrow().state
    }

    /// How the shard stopped, once it has.
    pub fn outcome(&self) -> Option<Result<(), ShardError>> {
        self.status.borrow().outcome.clone()
    }

    /// Whether the shard has not stopped.
    pub fn is_alive(&self) -> bool {
        self.status.borrow().alive
    }

    /// Whether it is connected with a live session.
    pub fn is_connected(&self) -> bool {
        self.status.borrow().connected
    }

    /// The latest heartbeat latency; `None` before the first ACK.
    pub fn heartbeat_latency(&self) -> Option<Duration> {
        self.status.borrow().latency
    }

    /// The bot's user id, from READY.
    pub fn user_id(&self) -> Option<Snowflake> {
        self.status.borrow().user_id
    }

    /// The sequence number the latest READY came with (Discord's is 1; other gateways may
    /// start at 0), set before that READY reaches the events; `None` before the first READY or
    /// when it carried none. [`ShardEvent::Ready`](crate::ShardEvent::Ready) does not carry it,
    /// and [`resume_info`](Self::resume_info) has the last sequence received, which moves on.
    pub fn ready_sequence(&self) -> Option<u64> {
        self.status.borrow().ready_seq
    }

    /// The session as it would be exported now.
    pub fn resume_info(&self) -> Option<ResumeInfo> {
        self.status.borrow().resume.clone()
    }

    /// Bytes of events waiting for the user beyond the channel now, and the most that ever
    /// waited (see [`ShardConfig::event_buffer_bytes`](crate::ShardConfig::event_buffer_bytes)).
    pub fn buffered_event_bytes(&self) -> (usize, usize) {
        let status = self.status.borrow();
        (status.buffered_bytes, status.peak_buffered_bytes)
    }

    /// Commands waiting to be sent.
    pub fn queue_depth(&self) -> usize {
        self.status.borrow().queue_depth
    }

    /// Rate-limit slots left for commands on this connection.
    pub fn permits(&self) -> usize {
        self.status.borrow().permits
    }

    async fn request(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), CommandError>>) -> Control,
    ) -> Result<(), CommandError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(make(tx))
            .await
            .map_err(|_| CommandError::NotRunning)?;
        rx.await.map_err(|_| CommandError::NotRunning)?
    }

    /// Queues any command.
    pub async fn send(&self, command: impl Into<Command>) -> Result<(), CommandError> {
        let command = Box::new(command.into());
        self.request(|tx| Control::Command(command, tx)).await
    }

    /// Requests guild members (checked against the intents and this shard's guilds).
    pub async fn request_guild_members(
        &self,
        request: RequestGuildMembers,
    ) -> Result<(), CommandError> {
        self.send(request).await
    }

    /// Updates the presence; fields left `None` keep their value. Remembered while disconnected.
    pub async fn update_presence(&self, update: PresenceUpdate) -> Result<(), CommandError> {
        let update = Box::new(update);
        self.request(|tx| Control::Presence(update, tx)).await
    }

    /// Joins, moves between or (with `channel: None`) leaves voice channels.
    pub async fn update_voice_state(
        &self,
        guild: Snowflake,
        channel: Option<Snowflake>,
        self_mute: bool,
        self_deaf: bool,
    ) -> Result<(), CommandError> {
        self.send(UpdateVoiceState {
            guild_id: guild,
            channel_id: channel,
            self_mute,
            self_deaf,
        })
        .await
    }

    /// Requests ephemeral channel information (op 43).
    pub async fn request_channel_info(
        &self,
        guild: Snowflake,
        fields: Vec<ChannelInfoField>,
    ) -> Result<(), CommandError> {
        self.send(RequestChannelInfo {
            guild_id: guild,
            fields,
        })
        .await
    }

    /// Requests soundboard sounds (op 31).
    pub async fn request_soundboard_sounds(
        &self,
        guilds: Vec<Snowflake>,
    ) -> Result<(), CommandError> {
        self.send(RequestSoundboardSounds { guild_ids: guilds })
            .await
    }
}
