//! Retry with exponential backoff, cut short by the shutdown.
//!
//! Connectors never sleep-and-retry themselves: the drivers decide from the
//! error kind ([`crate::ErrorKind::is_retryable`]) and wait here.

use std::time::Duration;

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
}
