//! Shutdown: SIGTERM (Docker, the Supervisor) and SIGINT (Ctrl-C) cancel one token that every
//! task watches.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Cancels the returned token on the first SIGTERM or SIGINT.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = name, "Stopping");
        cancel.cancel();
    });
    Ok(token)
}
