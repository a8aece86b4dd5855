//! What the session asks its driver to do with the connection.

/// What the driver must do with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a websocket to this URL (query string included), then call
    /// [`Session::handle_connected`] or [`Session::handle_connect_failed`].
    Connect {
        /// The URL.
        url: String,
    },
    /// Close the connection with this code. The session already counts it as gone: events from
    /// it must not be fed back.
    Close {
        /// The close code (never 1000 or 1001 unless the session is meant to end).
        code: u16,
    },
    /// Wait for this shard's turn to identify, then call [`Session::identify_permitted`].
    AwaitIdentify,
}
