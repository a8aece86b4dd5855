//! Discord's 64-bit unique ids.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The first millisecond of 2015, in milliseconds since the Unix epoch: snowflake time zero.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A Discord id: 42 bits of milliseconds since [`DISCORD_EPOCH_MS`], then worker, process and
/// increment.
///
/// Read from a JSON string or a JSON number (Discord echoes ids it did not issue as numbers),
/// always written as a string.
///
/// ```
/// use gateway_model::Snowflake;
/// let id: Snowflake = "175928847299117063".parse().unwrap();
/// assert_eq!(id.timestamp_ms(), 1_462_015_105_796);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Snowflake(u64);

impl Snowflake {
    /// Wraps a raw id.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The smallest snowflake created at `timestamp_ms` (Unix milliseconds); useful as a bound for
    /// range queries. Times before the Discord epoch give id 0.
    pub const fn from_timestamp_ms(timestamp_ms: u64) -> Self {
        Self(timestamp_ms.saturating_sub(DISCORD_EPOCH_MS) << 22)
    }

    /// Creation time in milliseconds since the Unix epoch.
    pub const fn timestamp_ms(self) -> u64 {
        (self.0 >> 22) + DISCORD_EPOCH_MS
    }

    /// Creation time.
    pub fn created_at(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.timestamp_ms())
    }

    /// Internal worker id (bits 21..17).
    pub const fn worker_id(self) -> u8 {
        ((self.0 & 0x3E_0000) >> 17) as u8
    }

    /// Internal process id (bits 16..12).
    pub const fn process_id(self) -> u8 {
        ((self.0 & 0x1_F000) >> 12) as u8
    }

    /// Per-process increment (bits 11..0).
    pub const fn increment(self) -> u16 {
        (self.0 & 0xFFF) as u16
    }

    /// The shard that receives this guild's events: `(guild_id >> 22) % shard_count`.
    ///
    /// A `shard_count` of 0 is treated as 1.
    pub const fn shard_index(self, shard_count: u32) -> u32 {
        let count = if shard_count == 0 {
            1
        } else {
            shard_count as u64
        };
        ((self.0 >> 22) % count) as u32
    }
}

impl fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Snowflake({})", self.0)
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for Snowflake {
    fn from(id: u64) -> Self {
        Self(id)
    }
}

impl From<Snowflake> for u64 {
    fn from(id: Snowflake) -> Self {
        id.0
    }
}

impl FromStr for Snowflake {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl Serialize for Snowflake {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SnowflakeVisitor;

        impl Visitor<'_> for SnowflakeVisitor {
            type Value = Snowflake;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a snowflake as a string or a non-negative integer")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Snowflake, E> {
                Ok(Snowflake(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Snowflake, E> {
                u64::try_from(v)
                    .map(Snowflake)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Snowflake, E> {
                v.parse()
                    .map(Snowflake)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_any(SnowflakeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_and_number_writes_string() {
        let a: Snowflake = sonic_rs::from_str("\"41771983444115456\"").unwrap();
        let b: Snowflake = sonic_rs::from_str("41771983444115456").unwrap();
        assert_eq!(a, b);
        assert_eq!(sonic_rs::to_string(&a).unwrap(), "\"41771983444115456\"");
        assert!(sonic_rs::from_str::<Snowflake>("-1").is_err());
        assert!(sonic_rs::from_str::<Snowflake>("\"12a\"").is_err());
        assert!(sonic_rs::from_str::<Snowflake>("\"18446744073709551616\"").is_err());
    }

    #[test]
    fn parts_match_the_reference_example() {
        // The docs' example: 175928847299117063 = 2016-04-30 11:18:25.796 UTC, worker 1, process 0, increment 7.
        let id = Snowflake::new(175_928_847_299_117_063);
        assert_eq!(id.timestamp_ms(), 1_462_015_105_796);
        assert_eq!(id.worker_id(), 1);
        assert_eq!(id.process_id(), 0);
        assert_eq!(id.increment(), 7);
        assert_eq!(
            Snowflake::from_timestamp_ms(id.timestamp_ms()).timestamp_ms(),
            id.timestamp_ms()
        );
        assert_eq!(
            id.created_at()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            1_462_015_105_796
        );
    }

    #[test]
    fn shard_index_follows_the_formula() {
        let id = Snowflake::new(41_771_983_444_115_456);
        assert_eq!(id.shard_index(1), 0);
        assert_eq!(
            id.shard_index(16),
            ((41_771_983_444_115_456u64 >> 22) % 16) as u32
        );
        assert_eq!(id.shard_index(0), 0);
    }

    proptest::proptest! {
        #[test]
        fn round_trips(id: u64) {
            let s = Snowflake::new(id);
            let json = sonic_rs::to_string(&s).unwrap();
            proptest::prop_assert_eq!(sonic_rs::from_str::<Snowflake>(&json).unwrap(), s);
            proptest::prop_assert_eq!(sonic_rs::from_str::<Snowflake>(&id.to_string()).unwrap(), s);
        }
    }
}
