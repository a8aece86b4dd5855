//! What every tokio driver of a sans-IO core needs (feature `tokio`): the one clock it reads, an
//! optional wait that is a branch of its `select!`, and a timer moved only when the core's
//! deadline moves. The shard's driver, the identify queue, the chunk tracker and the cluster node
//! use these; the testkit, which sits below the shard, keeps its own two lines of the same.

// The drivers' one clock: tokio's, so that tests can pause it.
#![allow(clippy::disallowed_methods)]

use std::pin::Pin;
use std::time::Instant;

use tokio::time::Sleep;

use crate::identify::BoxFuture;

/// `Instant::now()` as tokio sees it (a paused clock in tests), for the inputs of a core.
#[must_use]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Waits for the future in `slot`; never completes while there is none. Cancel-safe when the
/// future is: the future stays in its slot.
pub async fn wait<T>(slot: &mut Option<BoxFuture<'static, T>>) -> T {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`; never completes without one.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One timer for a driver's life, set to a core's `poll_timeout()`: it is moved only when the
/// deadline moves (not on every turn of the loop), and it fires once per setting.
#[derive(Debug)]
pub struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Default for Timer {
    fn default() -> Self {
        Self::new()
    }
}

impl Timer {
    /// A timer set to nothing.
    #[must_use]
    pub fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
        }
    }

    /// Sets the timer to `deadline` (`None`: never), if that is not what it is set to.
    pub fn set(&mut self, deadline: Option<Instant>) {
        if deadline != self.armed {
            self.armed = deadline;
            if let Some(at) = deadline {
                self.sleep.as_mut().reset(at.into());
            }
        }
    }

    /// Whether it is set.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.armed.is_some()
    }

    /// Completes when the deadline passes (never while unset); then the timer is unset until the
    /// next [`set`](Self::set). Cancel-safe.
    pub async fn fired(&mut self) {
        if self.armed.is_none() {
            std::future::pending::<()>().await;
        }
        self.sleep.as_mut().await;
        self.armed = None;
    }
}
