//! What the probe saw, and the contract's five checks derived from it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use twilight_gateway::error::{ReceiveMessageError, ReceiveMessageErrorType};
use twilight_model::gateway::payload::incoming::{GuildCreate, MemberChunk, Ready};
use twilight_model::guild::Guild;

/// Longest detail text on a `CHECK` line.
const MAX_DETAIL: usize = 400;

/// The member request the probe sent.
#[derive(Debug)]
pub(crate) struct ChunkRequest {
    /// The guild asked for (the largest one).
    pub(crate) guild_id: u64,
    /// Its `member_count` from GUILD_CREATE.
    pub(crate) member_count: u64,
    /// The nonce sent with the request.
    pub(crate) nonce: String,
    /// When it was sent.
    pub(crate) at: Instant,
}

/// Everything observed during one run.
#[derive(Debug, Default)]
pub(crate) struct Observations {
    /// Session id and guild ids of the first READY.
    pub(crate) ready: Option<(String, Vec<u64>)>,
    /// When the first READY arrived.
    pub(crate) ready_at: Option<Instant>,
    /// Guilds whose GUILD_CREATE parsed, with their member count.
    pub(crate) guilds: BTreeMap<u64, u64>,
    /// GUILD_CREATEs that did not parse: guild id if known, and the error.
    pub(crate) guild_failures: Vec<(Option<u64>, String)>,
    /// Other events twilight could not parse.
    pub(crate) other_failures: Vec<String>,
    /// Heartbeat ACKs seen.
    pub(crate) heartbeat_acks: u32,
    /// The member request, once sent.
    pub(crate) request: Option<ChunkRequest>,
    /// Why no member request was sent, if so.
    pub(crate) request_skipped: Option<String>,
    /// `chunk_count` of our chunks (the first one seen).
    pub(crate) chunk_count: Option<u32>,
    /// Members per chunk index of our chunks.
    pub(crate) chunks: BTreeMap<u32, usize>,
    /// Problems with our chunks: duplicates, indices out of range, changing counts.
    pub(crate) chunk_problems: Vec<String>,
    /// Result of `POST /testkit/shards/0/reconnect`, and when it was sent.
    pub(crate) reconnect: Option<(Result<String, String>, Instant)>,
    /// RESUMED seen after the reconnect.
    pub(crate) resumed: bool,
    /// READY seen after the reconnect (a new session instead of a resume).
    pub(crate) ready_after_reconnect: bool,
    /// Close frames, invalid sessions and connection errors, in order.
    pub(crate) connection_log: Vec<String>,
    /// Why the event loop stopped.
    pub(crate) end: Option<String>,
}

impl Observations {
    /// Records a READY.
    pub(crate) fn on_ready(&mut self, ready: &Ready) {
        if self.reconnect.is_some() {
            self.ready_after_reconnect = true;
        }
        if self.ready.is_none() {
            let guilds = ready.guilds.iter().map(|g| g.id.get()).collect();
            self.ready = Some((ready.session_id.clone(), guilds));
            self.ready_at = Some(Instant::now());
        }
    }

    /// Records a parsed GUILD_CREATE.
    pub(crate) fn on_guild_create(&mut self, guild: &GuildCreate) {
        let count = match guild {
            GuildCreate::Available(g) => g.member_count.unwrap_or(g.members.len() as u64),
            GuildCreate::Unavailable(_) => 0,
        };
        self.guilds.insert(guild.id().get(), count);
    }

    /// Records a member chunk (ignoring those of other requests).
    pub(crate) fn on_member_chunk(&mut self, chunk: &MemberChunk) {
        let Some(request) = &self.request else { return };
        if chunk.nonce.as_deref() != Some(request.nonce.as_str()) {
            return;
        }
        if chunk.guild_id.get() != request.guild_id {
            self.chunk_problems
                .push(format!("chunk for guild {} with our nonce", chunk.guild_id));
        }
        match self.chunk_count {
            None => self.chunk_count = Some(chunk.chunk_count),
            Some(n) if n != chunk.chunk_count => self.chunk_problems.push(format!(
                "chunk_count changed from {n} to {}",
                chunk.chunk_count
            )),
            Some(_) => {}
        }
        if chunk.chunk_index >= chunk.chunk_count {
            self.chunk_problems.push(format!(
                "chunk_index {} >= chunk_count {}",
                chunk.chunk_index, chunk.chunk_count
            ));
        }
        if self
            .chunks
            .insert(chunk.chunk_index, chunk.members.len())
            .is_some()
        {
            self.chunk_problems
                .push(format!("chunk_index {} twice", chunk.chunk_index));
        }
    }

    /// Records an error from `next_event`.
    pub(crate) fn on_error(&mut self, error: &ReceiveMessageError) {
        match error.kind() {
            ReceiveMessageErrorType::Deserializing { event } => {
                let value: Option<serde_json::Value> = serde_json::from_str(event).ok();
                let kind = value.as_ref().and_then(|v| v["t"].as_str()).unwrap_or("?");
                let cause = chain(error);
                if kind == "GUILD_CREATE" {
                    let data = value.as_ref().map(|v| &v["d"]);
                    let id = data
                        .and_then(|d| d["id"].as_str())
                        .and_then(|s| s.parse().ok());
                    let precise = data.and_then(guild_error).unwrap_or(cause);
                    self.guild_failures.push((id, precise));
                } else {
                    let op = value.as_ref().and_then(|v| v["op"].as_u64());
                    let snippet: String = event.chars().take(120).collect();
                    self.other_failures
                        .push(format!("op {op:?} {kind}: {cause} ({snippet})"));
                }
            }
            _ => self.connection_log.push(chain(error)),
        }
    }

    /// Whether GUILD_CREATE (parsed or not) has arrived for every guild of READY.
    pub(crate) fn all_guilds_seen(&self) -> bool {
        let Some((_, ids)) = &self.ready else {
            return false;
        };
        let failed: BTreeSet<u64> = self
            .guild_failures
            .iter()
            .filter_map(|(id, _)| *id)
            .collect();
        ids.iter()
            .all(|id| self.guilds.contains_key(id) || failed.contains(id))
    }

    /// Whether every chunk of our request arrived.
    pub(crate) fn chunks_complete(&self) -> bool {
        self.chunk_count
            .is_some_and(|n| (0..n).all(|i| self.chunks.contains_key(&i)))
    }

    /// The five checks, in the contract's order: `(name, Ok(detail) | Err(why))`.
    pub(crate) fn verdicts(&self) -> Vec<(&'static str, Result<String, String>)> {
        vec![
            ("ready", self.ready_verdict()),
            ("guilds_typed", self.guilds_verdict()),
            ("heartbeat_acks", self.acks_verdict()),
            ("member_chunks", self.chunks_verdict()),
            ("resume", self.resume_verdict()),
        ]
    }

    fn ready_verdict(&self) -> Result<String, String> {
        match &self.ready {
            Some((session, guilds)) => Ok(format!(
                "session {session}, {} guilds in READY, compression {}",
                guilds.len(),
                crate::BUILT_COMPRESSION
            )),
            None => Err(format!("no READY: {}", self.why_stopped())),
        }
    }

    fn guilds_verdict(&self) -> Result<String, String> {
        let parsed = self.guilds.len();
        let failed = self.guild_failures.len();
        let expected = self.ready.as_ref().map_or(0, |(_, ids)| ids.len());
        if let Some((id, error)) = self.guild_failures.first() {
            let id = id.map_or_else(|| "?".to_owned(), |id| id.to_string());
            return Err(format!(
                "{failed} of {} GUILD_CREATE failed to parse; first: guild {id}: {error}",
                parsed + failed
            ));
        }
        if parsed == 0 {
            return Err(format!("no GUILD_CREATE received: {}", self.why_stopped()));
        }
        Ok(format!(
            "{parsed} GUILD_CREATE parsed as twilight_model Guild ({expected} guilds in READY)"
        ))
    }

    fn acks_verdict(&self) -> Result<String, String> {
        let n = self.heartbeat_acks;
        if n >= 2 {
            Ok(format!("{n} Event::GatewayHeartbeatAck"))
        } else {
            Err(format!("{n} heartbeat ACK(s): {}", self.why_stopped()))
        }
    }

    fn chunks_verdict(&self) -> Result<String, String> {
        let Some(request) = &self.request else {
            let why = self
                .request_skipped
                .clone()
                .unwrap_or_else(|| self.why_stopped());
            return Err(format!("no member request sent: {why}"));
        };
        let members: usize = self.chunks.values().sum();
        let summary = format!(
            "guild {}: {} of {} chunks, {members} members (member_count {}), nonce {}",
            request.guild_id,
            self.chunks.len(),
            self.chunk_count
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            request.member_count,
            request.nonce
        );
        if !self.chunk_problems.is_empty() {
            return Err(format!("{summary}; {}", self.chunk_problems.join("; ")));
        }
        if self.chunks_complete() {
            Ok(summary)
        } else {
            Err(format!("incomplete: {summary}"))
        }
    }

    fn resume_verdict(&self) -> Result<String, String> {
        let Some((result, _)) = &self.reconnect else {
            return Err(format!("reconnect not requested: {}", self.why_stopped()));
        };
        if let Err(e) = result {
            return Err(e.clone());
        }
        if self.ready_after_reconnect {
            return Err(
                "a new READY after op 7 RECONNECT (identified instead of resuming)".to_owned(),
            );
        }
        if self.resumed {
            Ok("RESUMED after op 7 RECONNECT via POST /testkit/shards/0/reconnect".to_owned())
        } else {
            Err(format!(
                "no RESUMED after op 7 RECONNECT: {}",
                self.why_stopped()
            ))
        }
    }

    /// Why the run stopped short, with the connection events seen.
    fn why_stopped(&self) -> String {
        let mut why = self
            .end
            .clone()
            .unwrap_or_else(|| "still running".to_owned());
        if !self.connection_log.is_empty() {
            let recent = self.connection_log.len().saturating_sub(3);
            why.push_str("; connection: ");
            why.push_str(&self.connection_log[recent..].join(", "));
        }
        if let Some(first) = self.other_failures.first() {
            why.push_str("; unparsed event: ");
            why.push_str(first);
        }
        why
    }
}

/// The deserialization error of a GUILD_CREATE's `d` as a twilight `Guild`, with the field path
/// (twilight's own error only says that no variant of the untagged `GuildCreate` matched).
fn guild_error(data: &serde_json::Value) -> Option<String> {
    let result: Result<Guild, _> = serde_path_to_error::deserialize(data);
    result.err().map(|e| format!("{}: {}", e.path(), e.inner()))
}

/// A receive error and its sources on one line (without the whole event that twilight's Display
/// of a deserializing error prints).
pub(crate) fn chain(error: &ReceiveMessageError) -> String {
    let head = match error.kind() {
        ReceiveMessageErrorType::Deserializing { .. } => {
            "gateway event could not be deserialized".to_owned()
        }
        _ => error.to_string(),
    };
    with_sources(head, error)
}

/// `head` followed by the sources of `error`, `: `-separated.
pub(crate) fn with_sources(mut head: String, error: &dyn std::error::Error) -> String {
    let mut source = error.source();
    while let Some(s) = source {
        head.push_str(": ");
        head.push_str(&s.to_string());
        source = s.source();
    }
    head
}

/// A detail made fit for one `CHECK` line.
pub(crate) fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > MAX_DETAIL {
        let cut: String = flat.chars().take(MAX_DETAIL).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use twilight_gateway::{Event, EventTypeFlags};

    use super::{ChunkRequest, Observations};

    /// twilight's own parse of one gateway payload.
    fn parse(json: &str) -> Result<Option<Event>, twilight_gateway::error::ReceiveMessageError> {
        twilight_gateway::parse(json.to_owned(), EventTypeFlags::all()).map(|e| e.map(Event::from))
    }

    #[test]
    fn a_guild_create_that_does_not_parse_is_counted_with_its_field() {
        let json = r#"{"op":0,"s":2,"t":"GUILD_CREATE","d":{"id":"41","name":"g","roles":"oops"}}"#;
        let Err(error) = parse(json) else {
            panic!("twilight accepted a broken guild")
        };
        let mut observed = Observations::default();
        observed.on_error(&error);
        assert_eq!(observed.guild_failures.len(), 1);
        let (id, why) = &observed.guild_failures[0];
        assert_eq!(*id, Some(41));
        assert!(why.starts_with("roles: invalid type"), "{why}");
        let verdicts = observed.verdicts();
        assert!(
            verdicts[1]
                .1
                .as_ref()
                .is_err_and(|e| e.contains("guild 41: roles")),
            "{verdicts:?}"
        );
    }

    #[test]
    fn chunks_complete_only_with_every_index_once() {
        let mut observed = Observations {
            request: Some(ChunkRequest {
                guild_id: 41,
                member_count: 2,
                nonce: "n".to_owned(),
                at: Instant::now(),
            }),
            ..Observations::default()
        };
        let chunk = |index: u32, nonce: &str| {
            let json = format!(
                r#"{{"op":0,"s":3,"t":"GUILD_MEMBERS_CHUNK","d":{{"guild_id":"41","members":[],"chunk_index":{index},"chunk_count":2,"nonce":"{nonce}"}}}}"#
            );
            match parse(&json) {
                Ok(Some(Event::MemberChunk(chunk))) => chunk,
                other => panic!("not a chunk: {other:?}"),
            }
        };
        observed.on_member_chunk(&chunk(0, "n"));
        observed.on_member_chunk(&chunk(1, "other"));
        assert!(!observed.chunks_complete());
        observed.on_member_chunk(&chunk(1, "n"));
        assert!(observed.chunks_complete());
        assert!(observed.verdicts()[3].1.is_ok());
        observed.on_member_chunk(&chunk(1, "n"));
        assert!(
            observed.verdicts()[3]
                .1
                .as_ref()
                .is_err_and(|e| e.contains("chunk_index 1 twice"))
        );
    }
}
