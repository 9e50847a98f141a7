//! Status: what the pipeline tells the edges that show the bridge's state (the health file
//! for Docker's HEALTHCHECK today). The pipeline only updates a `watch` value; whoever shows it
//! does its own I/O, so the pipeline's task never touches a file or a socket for it.

use std::time::SystemTime;

use tokio::sync::watch;

/// The bridge as seen from outside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub broker_connected: bool,
    /// Wall-clock time of the last poll that brought data from DSMR-reader.
    pub last_poll: Option<SystemTime>,
    /// `None` until the source has said either way.
    pub dsmr_reachable: Option<bool>,
}

/// The pipeline's end of the status channel.
#[derive(Debug)]
pub struct StatusReporter {
    tx: watch::Sender<Status>,
}

impl StatusReporter {
    pub fn new() -> (Self, watch::Receiver<Status>) {
        let (tx, rx) = watch::channel(Status::default());
        (Self { tx }, rx)
    }

    /// For runs where nobody watches (benchmarks, embedded uses).
    pub fn unobserved() -> Self {
        Self::new().0
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.tx.subscribe()
    }

    pub fn set_connected(&self, connected: bool) {
        self.tx.send_if_modified(|s| {
            let changed = s.broker_connected != connected;
            s.broker_connected = connected;
            changed
        });
    }

    pub fn polled(&self, at: SystemTime) {
        self.tx.send_modify(|s| s.last_poll = Some(at));
    }

    pub fn set_reachable(&self, reachable: bool) {
        self.tx.send_if_modified(|s| {
            let changed = s.dsmr_reachable != Some(reachable);
            s.dsmr_reachable = Some(reachable);
            changed
        });
    }
}
