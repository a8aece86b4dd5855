//! One simulated shard: its session and its side of the network.

use std::collections::VecDeque;
use std::time::Instant;

use gateway_codec::Limits;
use gateway_model::{Intents, ShardId, Token};
use gateway_shard::identify::Ticket;
use gateway_shard::{Output, Session, ShardConfig};

use crate::SimConfig;
use crate::check::Stream;
use crate::faults::MAX_MESSAGE;

/// The token every simulated shard and the simulated gateway share.
pub(crate) const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.sim.gateway-sim";

/// One simulated shard: its session (which decodes its messages itself, as the driver's does) and
/// its side of the network.
pub(crate) struct Client {
    pub(crate) session: Session,
    /// The open connection.
    pub(crate) conn: Option<u64>,
    /// The connection being opened.
    pub(crate) opening: Option<u64>,
    /// The connection the session just closed, whose close frame has yet to go out.
    pub(crate) closing: Option<u64>,
    /// Outputs polled while reading a message, acted on when the shard is drained.
    pub(crate) outbox: VecDeque<Output>,
    pub(crate) ticket: Option<Ticket>,
    pub(crate) timer: Option<Instant>,
    pub(crate) timer_generation: u64,
    pub(crate) stream: Stream,
}

impl Client {
    /// Shard `id` of the run, its session started at `start`.
    pub(crate) fn new(config: &SimConfig, id: u32, start: Instant) -> Self {
        let shards = config.shards;
        let intents = Intents::GUILDS | Intents::GUILD_MEMBERS;
        let limits = Limits {
            max_message_size: MAX_MESSAGE,
            ..Limits::default()
        };

        let compression = config.compressions[id as usize % config.compressions.len().max(1)];
        let mut shard = ShardConfig::new(Token::new(TOKEN), intents)
            .with_gateway_url("ws://gateway.sim")
            .with_compression(compression)
            .with_limits(limits)
            .with_seed(config.seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if let Ok(s) = ShardId::new(id, shards) {
            shard = shard.with_shard(s);
        }
        Self {
            session: Session::new(&shard, start),
            conn: None,
            opening: None,
            closing: None,
            outbox: VecDeque::new(),
            ticket: None,
            timer: None,
            timer_generation: 0,
            stream: Stream::default(),
        }
    }
}
