//! The in-process identify queue: the sans-IO [`IdentifySchedule`] on tokio's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_model::SessionStartLimit;
use tokio::sync::oneshot;

use crate::drive::{now, sleep_until};

use super::{
    BoxFuture, Grant, IDENTIFY_WINDOW, IdentifyError, IdentifyQueue, IdentifySchedule, Ticket,
    spacing,
};

/// The schedule and the waiters its decisions go to.
#[derive(Debug)]
struct Inner {
    schedule: IdentifySchedule,
    waiters: HashMap<Ticket, oneshot::Sender<Result<(), IdentifyError>>>,
}

impl Inner {
    /// Hands every decision due at `now` to its waiter (the drain rule of every sans-IO core).
    fn drain(&mut self, now: Instant) {
        while let Some(grant) = self.schedule.poll_output(now) {
            let (ticket, answer) = match grant {
                Grant::Granted(ticket) => (ticket, Ok(())),
                Grant::Refused { ticket, retry_in } => {
                    (ticket, Err(IdentifyError::BudgetExhausted(retry_in)))
                }
            };
            if let Some(waiter) = self.waiters.remove(&ticket) {
                // A waiter that went away has cancelled its ticket first; nothing is lost.
                drop(waiter.send(answer));
            }
        }
    }
}

/// The in-process identify queue: an [`IdentifySchedule`] driven by tokio's clock. Each waiter
/// drains the schedule when it wakes, handing every grant to whoever it is for.
#[derive(Debug)]
pub struct LocalIdentifyQueue {
    inner: Mutex<Inner>,
}

impl LocalIdentifyQueue {
    /// A queue with Discord's 5 s window and no budget limit until one is set.
    pub fn new() -> Self {
        Self::with_window(IDENTIFY_WINDOW)
    }

    /// Keeps `reserve` session starts back (see [`IdentifySchedule::set_reserve`]).
    #[must_use]
    pub fn with_reserve(self, reserve: u32) -> Self {
        self.lock().schedule.set_reserve(reserve);
        self
    }

    /// A queue with another window (tests and fake gateways).
    pub fn with_window(window: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                schedule: IdentifySchedule::new(spacing(window)),
                waiters: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for LocalIdentifyQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// Gives a waiting place up if the waiter goes away, and lets the next in line through.
struct Place<'a> {
    queue: &'a LocalIdentifyQueue,
    ticket: Ticket,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut inner = self.queue.lock();
        inner.waiters.remove(&self.ticket);
        inner.schedule.handle_cancel(now(), self.ticket);
        inner.drain(now());
    }
}

impl IdentifyQueue for LocalIdentifyQueue {
    fn acquire(
        &self,
        shard_id: u32,
        max_concurrency: u32,
    ) -> BoxFuture<'_, Result<(), IdentifyError>> {
        Box::pin(async move {
            let (tx, mut answer) = oneshot::channel();
            let ticket = {
                let mut inner = self.lock();
                let ticket = inner
                    .schedule
                    .handle_request(now(), shard_id, max_concurrency);
                inner.waiters.insert(ticket, tx);
                inner.drain(now());
                ticket
            };
            let _place = Place {
                queue: self,
                ticket,
            };
            loop {
                let deadline = self.lock().schedule.poll_timeout();
                tokio::select! {
                    answer = &mut answer => {
                        return answer.unwrap_or_else(|_| {
                            Err(IdentifyError::Unavailable("the identify queue dropped a waiter".to_owned()))
                        });
                    }
                    () = sleep_until(deadline) => {
                        let mut inner = self.lock();
                        inner.schedule.handle_timeout(now());
                        inner.drain(now());
                    }
                }
            }
        })
    }

    fn session_start_limit(
        &self,
    ) -> BoxFuture<'_, Result<Option<SessionStartLimit>, IdentifyError>> {
        Box::pin(async move { Ok(self.lock().schedule.session_start_limit(now())) })
    }

    fn set_session_start_limit(
        &self,
        limit: SessionStartLimit,
    ) -> BoxFuture<'_, Result<(), IdentifyError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.schedule.handle_session_start_limit(now(), limit);
            inner.drain(now());
            Ok(())
        })
    }
}

/// A queue shared by everything in the process that is handed a clone.
pub fn local_queue() -> Arc<dyn IdentifyQueue> {
    Arc::new(LocalIdentifyQueue::new())
}
