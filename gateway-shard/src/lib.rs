//! One Discord Gateway shard.
//!
//! stub
mod backoff;
mod config;
mod connect;
mod driver;
mod error;
mod event;
mod presence;
mod ratelimit;
mod session;
mod shard;

pub use backoff::Backoff;
pub use config::{DISCORD_GATEWAY, ShardConfig, Timeouts};
pub use error::{CommandError, ShardError};
pub use event::{Reconnect, ShardEvent};
pub use presence::PresenceUpdate;
pub use ratelimit::{COMMANDS_PER_WINDOW, WINDOW};
pub use session::{Action, ResumeInfo, Session};
pub use shard::{Shard, ShardEvents};
