//! The in-process identify queue: the sans-IO [`IdentifySchedule`] on tokio's clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_model::SessionStartLimit;
use tokio::sync::Notify;

use super::{
    BoxFuture, Grant, IDENTIFY_WINDOW, IdentifyError, IdentifyQueue, IdentifySchedule, Ticket,
    spacing,
};

/// The in-process identify queue: an [`IdentifySchedule`] driven by tokio's clock.
#[derive(Debug)]
pub struct LocalIdentifyQueue {
    schedule: Mutex<IdentifySchedule>,
    changed: Notify,
}

impl LocalIdentifyQueue {
    /// A queue with Discord's 5 s window and no budget limit until one is set.
    pub fn new() -> Self {
        Self::with_window(IDENTIFY_WINDOW)
    }

    /// Keeps `reserve` session starts back (see [`IdentifySchedule::set_reserve`]).
    #[must_use]
    pub fn with_reserve(self, reserve: u32) -> Self {
        self.lock().set_reserve(reserve);
        self
    }

    /// A queue with another window (tests and fake gateways).
    pub fn with_window(window: Duration) -> Self {
        Self {
            schedule: Mutex::new(IdentifySchedule::new(spacing(window))),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdentifySchedule> {
        self.schedule
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for LocalIdentifyQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// Gives a waiting place up if the waiter goes away.
struct Place<'a> {
    queue: &'a LocalIdentifyQueue,
    ticket: Option<Ticket>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.queue.lock().cancel(ticket);
            self.queue.changed.notify_waiters();
        }
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl IdentifyQueue for LocalIdentifyQueue {
    fn acquire(
        &self,
        shard_id: u32,
        max_concurrency: u32,
    ) -> BoxFuture<'_, Result<(), IdentifyError>> {
        Box::pin(async move {
            let ticket = self.lock().request(shard_id, max_concurrency, now());
            let mut place = Place {
                queue: self,
                ticket: Some(ticket),
            };
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let grant = self.lock().try_grant(ticket, now());
                let wake_at = match grant {
                    Grant::Granted => {
                        place.ticket = None;
                        self.changed.notify_waiters();
                        return Ok(());
                    }
                    Grant::Exhausted(wait) => return Err(IdentifyError::BudgetExhausted(wait)),
                    Grant::WaitUntil(at) => Some(at),
                    Grant::WaitForTurn => None,
                };
                match wake_at {
                    Some(at) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                            () = notified => {}
                        }
                    }
                    None => notified.await,
                }
            }
        })
    }

    fn session_start_limit(
        &self,
    ) -> BoxFuture<'_, Result<Option<SessionStartLimit>, IdentifyError>> {
        Box::pin(async move { Ok(self.lock().session_start_limit(now())) })
    }

    fn set_session_start_limit(
        &self,
        limit: SessionStartLimit,
    ) -> BoxFuture<'_, Result<(), IdentifyError>> {
        Box::pin(async move {
            self.lock().set_session_start_limit(limit, now());
            self.changed.notify_waiters();
            Ok(())
        })
    }
}

/// A queue shared by everything in the process that is handed a clone.
pub fn local_queue() -> Arc<dyn IdentifyQueue> {
    Arc::new(LocalIdentifyQueue::new())
}
