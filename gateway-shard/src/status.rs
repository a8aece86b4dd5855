//! What a shard's handles can see of its driver, published through a watch channel.

use std::time::{Duration, Instant};

use gateway_model::Snowflake;
use tokio::sync::watch;

use crate::outbox::Outbox;
use crate::{ResumeInfo, Session, SessionState, ShardError};

/// What the handles can see of the shard.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) state: SessionState,
    pub(crate) alive: bool,
    pub(crate) connected: bool,
    pub(crate) ready_once: bool,
    pub(crate) latency: Option<Duration>,
    pub(crate) user_id: Option<Snowflake>,
    /// The sequence number the latest READY came with.
    pub(crate) ready_seq: Option<u64>,
    pub(crate) queue_depth: usize,
    pub(crate) permits: usize,
    pub(crate) buffered_bytes: usize,
    pub(crate) peak_buffered_bytes: usize,
    pub(crate) last_failure: Option<String>,
    pub(crate) resume: Option<ResumeInfo>,
    pub(crate) outcome: Option<Result<(), ShardError>>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            state: SessionState::Disconnected,
            alive: true,
            connected: false,
            ready_once: false,
            latency: None,
            user_id: None,
            ready_seq: None,
            queue_depth: 0,
            permits: 0,
            buffered_bytes: 0,
            peak_buffered_bytes: 0,
            last_failure: None,
            resume: None,
            outcome: None,
        }
    }
}

/// Replaces `*slot` with `value` if they differ; says whether it did.
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    let changed = *slot != value;
    if changed {
        *slot = value;
    }
    changed
}

/// Publishes the session's status to the handles. Runs after every message, so it allocates
/// nothing in the steady state (the exported session is rebuilt only when the session changes)
/// and wakes waiters only for what they wait on: state, readiness, the user id, the outcome.
pub(crate) fn publish(
    status: &watch::Sender<Status>,
    session: &mut Session,
    outbox: &Outbox,
    now: Instant,
) {
    let permits = session.permits(now);
    status.send_if_modified(|st| {
        let mut wake = set(&mut st.state, session.state());
        wake |= set(&mut st.alive, session.is_alive());
        wake |= set(&mut st.connected, session.is_connected());
        let ready_once = st.ready_once || session.is_connected();
        wake |= set(&mut st.ready_once, ready_once);
        wake |= set(&mut st.user_id, session.user_id());
        if st.last_failure.as_deref() != session.last_failure() {
            st.last_failure = session.last_failure().map(str::to_owned);
            wake = true;
        }
        if st.outcome.is_none() && session.outcome().is_some() {
            st.outcome = session.outcome().cloned();
            wake = true;
        }
        // Seen through `borrow()` without waking anyone.
        st.latency = session.heartbeat_latency();
        st.ready_seq = session.ready_sequence();
        #[cfg(feature = "metrics")]
        if st.queue_depth != session.queue_depth() {
            // Only on a change: the label is built, and the gauge set, rarely.
            let shard = session.shard().number().to_string();
            metrics::gauge!("gateway_command_queue_depth", "shard" => shard)
                .set(session.queue_depth() as f64);
        }
        st.queue_depth = session.queue_depth();
        st.permits = permits;
        st.buffered_bytes = outbox.bytes();
        st.peak_buffered_bytes = outbox.peak();
        match (&mut st.resume, session.session_id()) {
            (Some(resume), Some(id)) if resume.session_id == id => {
                resume.sequence = session.sequence().unwrap_or(0);
            }
            (slot, _) => *slot = session.resume_info(),
        }
        wake
    });
}
