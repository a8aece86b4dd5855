//! Boards: an application's notes that every process reads whole, in order, as a stream
//! ([`Keys::board`]) with no consumer group. A proxy process posts the client sessions it let
//! go on one, so that any other takes their RESUMEs. A note stays for the board's length
//! (`MAXLEN ~`); a reader that starts reads what is there, then what follows.

use std::time::Duration;

use gateway_shard::{RedisConnection, RedisOptions, RedisTarget};
use redis::streams::{StreamReadOptions, StreamReadReply};

use crate::consume::field;
use crate::error::ClusterError;
use crate::keys::Keys;

/// One note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// When Redis took it: Unix time in milliseconds, by Redis's clock (its stream id).
    pub at_ms: u64,
    /// What it says.
    pub body: String,
}

/// Posts notes on a board.
#[derive(Clone)]
pub struct Board {
    connection: RedisConnection,
    key: String,
    maxlen: usize,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Board {
    /// Application `app`'s board `name`, keeping about `maxlen` notes.
    pub fn new(
        connection: RedisConnection,
        app: impl Into<String>,
        name: &str,
        maxlen: usize,
    ) -> Self {
        Self {
            connection,
            key: Keys::new(app).board(name),
            maxlen: maxlen.max(1),
        }
    }

    /// Posts `body`.
    pub async fn post(&self, body: &str) -> Result<(), ClusterError> {
        self.post_all(&[body]).await
    }

    /// Posts `bodies` in order, in one round trip.
    pub async fn post_all(&self, bodies: &[impl AsRef<str>]) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        for body in bodies {
            (pipe
                .cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.maxlen))
            .arg("*")
            .arg("b")
            .arg(body.as_ref())
            .ignore();
        }
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection).await?;
        Ok(())
    }
}

/// Reads a board from its oldest note on, on a connection of its own.
pub struct BoardReader {
    connection: RedisConnection,
    key: String,
    last: String,
    block: Duration,
}

impl std::fmt::Debug for BoardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardReader")
            .field("key", &self.key)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl BoardReader {
    /// A reader of application `app`'s board `name` on `redis`, whose reads wait up to
    /// `block` for notes.
    pub async fn connect(
        redis: &RedisTarget,
        app: impl Into<String>,
        name: &str,
        block: Duration,
    ) -> Result<Self, ClusterError> {
        let options = RedisOptions::default().with_response_timeout(block + Duration::from_secs(5));
        Ok(Self {
            connection: RedisConnection::connect(redis, options).await?,
            key: Keys::new(app).board(name),
            last: "0-0".to_owned(),
            block,
        })
    }

    /// Goes on after the note with stream id `last` (from another reader, after a reconnect).
    pub fn resume_after(&mut self, last: impl Into<String>) {
        self.last = last.into();
    }

    /// The stream id of the last note read.
    pub fn last(&self) -> &str {
        &self.last
    }

    /// The next notes, in order, waiting up to the block time for some (at most 512).
    pub async fn next(&mut self) -> Result<Vec<Note>, ClusterError> {
        let block = usize::try_from(self.block.as_millis()).unwrap_or(usize::MAX);
        let options = StreamReadOptions::default().count(512).block(block);
        let read = redis::AsyncCommands::xread_options(
            &mut self.connection,
            &[&self.key],
            &[&self.last],
            &options,
        )
        .await;
        let reply: Option<StreamReadReply> = match read {
            Err(e) if e.code() == Some("UNBLOCKED") => None,
            read => read?,
        };
        let mut notes = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let at_ms = entry
                .id
                .split_once('-')
                .and_then(|(ms, _)| ms.parse().ok())
                .ok_or_else(|| ClusterError::Corrupt {
                    what: "board note",
                    detail: format!("id {}", entry.id),
                })?;
            notes.push(Note {
                at_ms,
                body: field(&entry, "b")?,
            });
            self.last = entry.id;
        }
        Ok(notes)
    }
}
