//! Where everything lives in Redis. Every key of one application starts with `{app}:`, the
//! application as a hash tag, so that with Redis Cluster all of them are on one node and a script
//! may touch several at once.

/// The keys of one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    app: String,
}

impl Keys {
    /// The keys of application `app` (a name without braces).
    pub fn new(app: impl Into<String>) -> Self {
        Self { app: app.into() }
    }

    /// The application's name.
    pub fn app(&self) -> &str {
        &self.app
    }

    fn key(&self, suffix: std::fmt::Arguments<'_>) -> String {
        format!("{{{}}}:{suffix}", self.app)
    }

    /// Shard `shard`'s lease: `{node}/{token}`, with a TTL.
    pub fn lease(&self, shard: u32) -> String {
        self.key(format_args!("lease:{shard}"))
    }

    /// Shard `shard`'s fencing counter: each lease taken gets the next token.
    pub fn fence(&self, shard: u32) -> String {
        self.key(format_args!("fence:{shard}"))
    }

    /// Shard `shard`'s stored session: `session_id`, `seq`, `resume_url`, `token`.
    pub fn session(&self, shard: u32) -> String {
        self.key(format_args!("session:{shard}"))
    }

    /// Shard `shard`'s event stream.
    pub fn stream(&self, shard: u32) -> String {
        self.key(format_args!("events:{shard}"))
    }

    /// Shard `shard`'s current session start: a hash of the READY entry's stream `id`, its
    /// `session` and its `d`, written with the entry. A reader starts there, and READY's `d`
    /// stays when the stream has trimmed the entry itself.
    pub fn ready(&self, shard: u32) -> String {
        self.key(format_args!("ready:{shard}"))
    }

    /// Shard `shard`'s command stream: what readers of the events (a proxy's clients) ask the
    /// shard to send, read by whichever node holds the shard.
    pub fn commands(&self, shard: u32) -> String {
        self.key(format_args!("commands:{shard}"))
    }

    /// Board `name`: notes every process of the application reads whole ([`Board`](crate::Board)).
    pub fn board(&self, name: &str) -> String {
        self.key(format_args!("board:{name}"))
    }

    /// The channel a node publishes a shard's number on when it releases the shard's lease, so
    /// that the others take it at once rather than at their next upkeep.
    pub fn released(&self) -> String {
        self.key(format_args!("released"))
    }

    /// The prefix of the application's shared identify queue (it adds its own braces).
    pub fn identify_prefix(&self) -> &str {
        &self.app
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_hash_tag() {
        let keys = Keys::new("bot");
        for key in [
            keys.lease(3),
            keys.fence(3),
            keys.session(3),
            keys.stream(3),
            keys.ready(3),
            keys.commands(3),
            keys.board("sessions"),
        ] {
            assert!(key.starts_with("{bot}:"), "{key}");
        }
    }
}
