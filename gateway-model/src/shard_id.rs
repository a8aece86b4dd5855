//! A shard's place among the bot's shards.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[shard_id, num_shards]`: always valid, `number < total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId {
    number: u32,
    total: u32,
}

/// A shard id that is not below the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard {number} is not below the shard count {total}")]
pub struct InvalidShardId {
    /// The shard's number.
    pub number: u32,
    /// The shard count.
    pub total: u32,
}

impl ShardId {
    /// The one shard of an unsharded bot, `[0, 1]`.
    pub const ONE: Self = Self {
        number: 0,
        total: 1,
    };

    /// Shard `number` of `total`.
    pub const fn new(number: u32, total: u32) -> Result<Self, InvalidShardId> {
        if number < total {
            Ok(Self { number, total })
        } else {
            Err(InvalidShardId { number, total })
        }
    }

    /// This shard's number, from 0.
    pub const fn number(self) -> u32 {
        self.number
    }

    /// How many shards the bot runs.
    pub const fn total(self) -> u32 {
        self.total
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.number, self.total)
    }
}

impl Serialize for ShardId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        [self.number, self.total].serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShardId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [number, total] = <[u32; 2]>::deserialize(deserializer)?;
        Self::new(number, total).map_err(serde::de::Error::custom)
    }
}
