//! Retry with exponential backoff, cut short by the shutdown.
//!
//! Connectors never sleep-and-retry themselves: the drivers decide from the
//! error kind ([`crate::ErrorKind::is_retryable`]) and wait here.

use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;

/// Exponential backoff: `base · 2^(attempt-1)`, capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first retry.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Sleeps before retry number `attempt`; returns `false` (at once) if the
    /// shutdown starts meanwhile, so the caller gives up instead of retrying.
    pub async fn wait(&self, attempt: u32, shutdown: &Shutdown) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.delay(attempt)) => !shutdown.is_triggered(),
            _ = shutdown.wait() => false,
        }
    }
}

/// How a source retries a lost stream (binlog, replication session): up to
/// [`Reconnects::MAX`] attempts in a row with [`Backoff`], the count starting
/// over once a connection has streamed for [`Reconnects::HEALTHY`].
#[derive(Debug)]
pub struct Reconnects {
    backoff: Backoff,
    attempt: u32,
    connected: Instant,
}

impl Default for Reconnects {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            attempt: 0,
            connected: Instant::now(),
        }
    }
}

impl Reconnects {
    /// Attempts in a row before the source gives up.
    pub const MAX: u32 = 10;
    /// Streaming this long resets the count.
    pub const HEALTHY: Duration = Duration::from_secs(60);

    /// Counts one more attempt and waits its backoff. `Some(attempt)` to
    /// retry; `None` when the attempts are used up or the shutdown started.
    pub async fn next(&mut self, shutdown: &Shutdown) -> Option<u32> {
        if self.connected.elapsed() >= Self::HEALTHY {
            self.attempt = 0;
        }
        self.attempt += 1;
        if self.attempt > Self::MAX || shutdown.is_triggered() {
            return None;
        }
        self.backoff
            .wait(self.attempt, shutdown)
            .await
            .then_some(self.attempt)
    }

    /// A connection is up again: its streaming time counts from now.
    pub fn connected(&mut self) {
        self.connected = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(60), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn shutdown_cuts_the_wait_short() {
        let (trigger, shutdown) = crate::shutdown::channel();
        trigger.trigger(crate::shutdown::StopReason::StopCommand);
        let b = Backoff {
            base: Duration::from_secs(60),
            max: Duration::from_secs(60),
        };
        assert!(!b.wait(1, &shutdown).await);
    }

    #[tokio::test]
    async fn reconnects_give_up_after_max_in_a_row_and_start_over_when_healthy() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let mut r = Reconnects {
            backoff: Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            ..Reconnects::default()
        };
        for n in 1..=Reconnects::MAX {
            assert_eq!(r.next(&shutdown).await, Some(n));
        }
        assert_eq!(r.next(&shutdown).await, None, "attempts used up");
        // A connection that streamed long enough resets the count.
        r.connected = Instant::now() - Reconnects::HEALTHY - Duration::from_secs(1);
        assert_eq!(r.next(&shutdown).await, Some(1));
        trigger.trigger(crate::shutdown::StopReason::StopCommand);
        assert_eq!(r.next(&shutdown).await, None, "no retry while stopping");
    }
}
