//! The bounds on every buffer fed from the network.

/// How much a [`Decoder`](crate::Decoder) may hold.
///
/// Discord documents no receive-size limit, and READY or GUILD_CREATE routinely pass 64 KiB (a
/// GUILD_CREATE of a 25,000-member guild with presences is about 4 MB), so the defaults are
/// generous; lower them when memory per shard matters more than the largest guild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest decompressed payload, in bytes. Default: 64 MiB.
    pub max_message_size: usize,
    /// The most compressed bytes buffered while waiting for a zlib-stream payload to end.
    /// Default: 16 MiB.
    pub max_buffered_compressed: usize,
    /// The largest zstd window, as a power of two. Default: 23 (8 MiB); Discord's streams use 18
    /// (256 KiB). A stream asking for a larger window is an error, not an allocation.
    pub zstd_window_log_max: u32,
}

impl Limits {
    /// The defaults above.
    pub const DEFAULT: Self = Self {
        max_message_size: 64 * 1024 * 1024,
        max_buffered_compressed: 16 * 1024 * 1024,
        zstd_window_log_max: 23,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
