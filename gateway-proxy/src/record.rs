//! A client session written down for another proxy process: what it needs to take the session's
//! RESUME. Places are upstream positions (on a cluster, the shard's stream positions), the same
//! in every process that reads the stream; each process maps them onto its own replay log.
//!
//! ```
//! use gateway_proxy::record::SessionRecord;
//! let json = r#"{"id":"s1","shard":0,"intents":1,"seq":7,"upstream":41,"marks":[],
//!     "covered":[],"covered_until":0,"pending":[],"ttl_ms":180000}"#;
//! let record = SessionRecord::from_json(json)?;
//! assert_eq!((record.seq, record.upstream), (7, 41));
//! assert_eq!(SessionRecord::from_json(&record.to_json()?)?, record);
//! # Ok::<(), gateway_proxy::record::RecordError>(())
//! ```

use serde::{Deserialize, Serialize};

/// The most bytes a record may take as JSON; a longer one is refused.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// A client session of one shard, as another proxy process takes it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The session id the client resumes with.
    pub id: String,
    /// Its shard.
    pub shard: u32,
    /// Its intents (bits).
    pub intents: u64,
    /// The last sequence number sent to the client.
    pub seq: u64,
    /// Every upstream entry up to this position has been considered for it.
    pub upstream: u64,
    /// Dispatches it was sent that are not in the log (READY, the start's GUILD_CREATEs).
    pub marks: Vec<RecordMark>,
    /// Guilds whose GUILD_CREATE holds their upstream entries up to a position: `(guild,
    /// upstream)`.
    pub covered: Vec<(u64, u64)>,
    /// The last upstream position `covered` reaches.
    pub covered_until: u64,
    /// Guilds whose GUILD_CREATE is still to be sent at the start.
    pub pending: Vec<u64>,
    /// How long it stays resumable from when the record was written, in milliseconds.
    pub ttl_ms: u64,
    /// The seed of the process that wrote it ([`ProxyConfig::seed`]), which ignores it.
    ///
    /// [`ProxyConfig::seed`]: crate::ProxyConfig::seed
    #[serde(default)]
    pub origin: u64,
    /// The commands it forwarded upstream in the 60 s before the record, as milliseconds
    /// before it: its share of the shard's budget follows it to another process.
    #[serde(default)]
    pub forwarded_ms_ago: Vec<u64>,
}

/// A dispatch sent that is not in the log, at an upstream position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMark {
    /// Its sequence number.
    pub seq: u64,
    /// The upstream position it came after.
    pub upstream: u64,
    /// It cannot be sent again: a RESUME from before it is refused.
    pub essential: bool,
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Longer than [`MAX_RECORD_BYTES`].
    #[error("a session record of {0} bytes (at most {MAX_RECORD_BYTES})")]
    TooLarge(usize),
    /// Not a record.
    #[error("not a session record: {0}")]
    Json(String),
}

impl SessionRecord {
    /// The record as JSON.
    pub fn to_json(&self) -> Result<String, RecordError> {
        let json = sonic_rs::to_string(self).map_err(|e| RecordError::Json(e.to_string()))?;
        if json.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(json.len()));
        }
        Ok(json)
    }

    /// Reads a record, refusing one over [`MAX_RECORD_BYTES`].
    pub fn from_json(json: &str) -> Result<Self, RecordError> {
        if json.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(json.len()));
        }
        sonic_rs::from_str(json).map_err(|e| RecordError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_records_are_refused_with_a_typed_error() {
        assert!(matches!(
            SessionRecord::from_json("{}"),
            Err(RecordError::Json(_))
        ));
        let long = " ".repeat(MAX_RECORD_BYTES + 1);
        assert!(matches!(
            SessionRecord::from_json(&long),
            Err(RecordError::TooLarge(_))
        ));
    }
}
