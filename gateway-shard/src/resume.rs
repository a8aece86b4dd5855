//! What it takes to resume a session, and which resume URLs may be followed.

/// A session that can be resumed, by this shard or by a new one in another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeInfo {
    /// The session id from READY.
    pub session_id: String,
    /// The last sequence number received.
    pub sequence: u64,
    /// READY's `resume_gateway_url`.
    pub resume_url: String,
}

/// The resume URL to use, or `None` (resume on the gateway URL) when it would downgrade a `wss://`
/// gateway to `ws://`: following it would send the token in clear.
pub(crate) fn secure_resume_url(gateway_url: &str, resume_url: &str) -> Option<String> {
    let secure = |url: &str| {
        url.get(..6)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"))
    };
    if secure(gateway_url) && !secure(resume_url) {
        tracing::warn!(
            resume_url,
            "resume_gateway_url is not wss:// while the gateway is: ignored, resuming on the gateway URL"
        );
        return None;
    }
    Some(resume_url.to_owned())
}
