//! What the user asks of a session: commands, presence, and closing.

use std::time::Instant;

use gateway_codec::{EncodeError, MAX_OUTBOUND_PAYLOAD, encode};
use gateway_model::Command;

use super::{Phase, Session};
use crate::ratelimit::Priority;
use crate::{CommandError, PresenceUpdate, Reconnect};

/// What a presence adds to an IDENTIFY besides its own JSON.
const PRESENCE_KEY: &str = ",\"presence\":";

impl Session {
    /// Queues a command (presence and voice updates first, then requests).
    pub fn handle_command(&mut self, _now: Instant, command: Command) -> Result<(), CommandError> {
        if self.phase == Phase::Stopped {
            return Err(CommandError::NotRunning);
        }
        if let Command::RequestGuildMembers(request) = &command {
            request.check_intents(self.intents)?;
            let expected = request.guild_id().shard_index(self.shard.total());
            if expected != self.shard.number() {
                return Err(CommandError::WrongShard {
                    guild: request.guild_id(),
                    expected,
                });
            }
        }
        let priority = match command {
            Command::UpdatePresence(_) | Command::UpdateVoiceState(_) => Priority::State,
            _ => Priority::Request,
        };
        self.queue_command(priority, &command)
    }

    /// Encodes a command and queues it.
    fn queue_command(&mut self, priority: Priority, command: &Command) -> Result<(), CommandError> {
        let member_request = matches!(command, Command::RequestGuildMembers(_));
        let frame = encode(command)?;
        self.queue
            .push(priority, frame, member_request)
            .map_err(|_| CommandError::QueueFull(self.queue.len()))
    }

    /// Merges a presence update into the remembered presence and queues it; while disconnected it
    /// is sent once connected (and at the next IDENTIFY).
    ///
    /// A presence that would not fit in an IDENTIFY (4096 bytes with the token and properties) is
    /// refused here, with [`CommandError::Encode`], and the remembered presence is unchanged.
    pub fn handle_presence(
        &mut self,
        _now: Instant,
        update: &PresenceUpdate,
    ) -> Result<(), CommandError> {
        if self.phase == Phase::Stopped {
            return Err(CommandError::NotRunning);
        }
        let presence = self.presence.merged(update);
        // The next IDENTIFY carries it as `,"presence":…` beside what it already holds.
        let size = self.identify_bytes
            + PRESENCE_KEY.len()
            + gateway_model::json::to_string(&presence)
                .map_err(EncodeError::from)?
                .len();
        if size > MAX_OUTBOUND_PAYLOAD {
            return Err(CommandError::Encode(EncodeError::TooLarge {
                size,
                limit: MAX_OUTBOUND_PAYLOAD,
            }));
        }
        let command = Command::UpdatePresence(presence);
        self.queue_command(Priority::State, &command)?;
        if let Command::UpdatePresence(presence) = command {
            self.presence.set(presence);
        }
        Ok(())
    }

    /// Closes the session. With `keep_resumable`, the connection closes with 4000 and the session
    /// can be resumed (see [`resume_info`](Self::resume_info)); otherwise with 1000, which ends it.
    pub fn handle_close(&mut self, now: Instant, keep_resumable: bool) {
        if self.phase == Phase::Stopped {
            return;
        }
        let code = if keep_resumable { 4000 } else { 1000 };
        if !keep_resumable {
            self.forget_session();
        }
        self.outcome.get_or_insert(Ok(()));
        self.lost(now, Some(code), "closed by the user", Reconnect::Stop);
    }
}
