//! Safe shutdown: one cloneable [`Shutdown`] handle that connectors watch, and the
//! trigger that the stop command, SIGTERM/SIGINT or a fatal error pulls.
//!
//! The first SIGTERM or SIGINT starts a graceful stop (stop intake, finish the
//! batch in flight, flush, persist offsets). A second signal exits the process at
//! once with `128 + signum`. Only this module and the binary touch signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

/// Why the task is stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// `{"name":"stop"}` arrived on the channel.
    StopCommand,
    /// SIGTERM (15) or SIGINT (2).
    Signal(i32),
    /// stdin closed: the process that launched us is gone.
    InputClosed,
    /// A fatal error elsewhere in the task.
    Failed,
}

/// Pulls the shutdown; cheap to clone.
#[derive(Clone)]
pub struct ShutdownTrigger {
    tx: Arc<watch::Sender<Option<StopReason>>>,
}

impl ShutdownTrigger {
    /// Starts the shutdown; later calls keep the first reason.
    pub fn trigger(&self, reason: StopReason) {
        self.tx.send_if_modified(|current| {
            if current.is_none() {
                tracing::info!(?reason, "shutdown requested");
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// Observes the shutdown; cheap to clone. Sources check it between batches.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<Option<StopReason>>,
}

impl Shutdown {
    /// The reason, once the shutdown has started.
    pub fn reason(&self) -> Option<StopReason> {
        self.rx.borrow().clone()
    }

    /// True once the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// Resolves when the shutdown starts (at once if it has).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An Err means every trigger is gone, so no shutdown can come: wait forever.
        if rx.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A connected trigger and handle.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(None);
    (ShutdownTrigger { tx: Arc::new(tx) }, Shutdown { rx })
}

/// Installs SIGTERM/SIGINT handling: the first signal triggers a graceful stop,
/// the second exits the process at once with `128 + signum`.
pub fn install_signal_handlers(trigger: ShutdownTrigger) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let seen = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    trigger.trigger(StopReason::Signal(signal));
                } else {
                    eprintln!("second signal {signal}: exiting at once");
                    std::process::exit(128 + signal);
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_wait_resolves() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_triggered());
        trigger.trigger(StopReason::StopCommand);
        trigger.trigger(StopReason::Failed);
        shutdown.wait().await;
        assert_eq!(shutdown.reason(), Some(StopReason::StopCommand));
    }
}
