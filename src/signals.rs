//! Shutdown on Ctrl-C or SIGTERM, for the subcommands that run until stopped.

use std::sync::Arc;

use tickcast_core::shutdown::{self, Shutdown, ShutdownTrigger};

/// Fires the returned signal on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> (Arc<ShutdownTrigger>, Shutdown) {
    let (trigger, signal) = shutdown::channel();
    let trigger = Arc::new(trigger);
    let t = trigger.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.fire();
                        return;
                    }
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.fire();
    });
    (trigger, signal)
}
