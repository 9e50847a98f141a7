//! Waiting in tests. Whatever a test expects to happen "soon" gets the same patience and the
//! same way to wait for it, which polls a condition and, when it never holds, panics naming
//! what the test waited for and what it saw instead. No test sleeps a fixed time in its place:
//! each waits for the event that shows what it needs.
// Each includer uses part of it.
#![allow(dead_code)]

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long anything a test waits for may take before the test gives up. Generous on purpose:
/// tests run side by side on small, shared machines, a passing test never waits it out, and
/// only a failing one pays for it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often a condition is checked: cheap conditions (a log file, what a subscriber saw).
const EVERY: Duration = Duration::from_millis(50);

/// A wait for `what` (say what should happen: "the bridge online", "log line \"…\""), with
/// `PATIENCE`: `eventually("x").until(async || …).await`.
pub fn eventually(what: impl Into<String>) -> Wait {
    Wait {
        what: what.into(),
        patience: PATIENCE,
        every: EVERY,
    }
}

#[must_use = "a wait does nothing until `until` or `until_blocking`"]
pub struct Wait {
    what: String,
    patience: Duration,
    every: Duration,
}

impl Wait {
    /// For what takes longer than anything else by nature, e.g. a Home Assistant Core starting.
    pub fn within(self, patience: Duration) -> Wait {
        Wait { patience, ..self }
    }

    /// For a condition that costs something each time (an HTTP request, a new MQTT session).
    pub fn every(self, every: Duration) -> Wait {
        Wait { every, ..self }
    }

    fn timed_out(&self, seen: &dyn Display) -> ! {
        panic!(
            "timed out after {} s waiting for {}; last seen: {seen}",
            self.patience.as_secs(),
            self.what
        )
    }

    /// Checks until `check` gives `Ok`, and returns what it holds; `Err` says what was seen
    /// instead, and the last one goes into the panic.
    pub async fn until<T, E: Display>(self, mut check: impl AsyncFnMut() -> Result<T, E>) -> T {
        let deadline = Instant::now() + self.patience;
        loop {
            match check().await {
                Ok(done) => return done,
                Err(seen) if Instant::now() > deadline => self.timed_out(&seen),
                Err(_) => tokio::time::sleep(self.every).await,
            }
        }
    }

    /// The same, for code outside a runtime (a child process's exit).
    pub fn until_blocking<T, E: Display>(self, mut check: impl FnMut() -> Result<T, E>) -> T {
        let deadline = Instant::now() + self.patience;
        loop {
            match check() {
                Ok(done) => return done,
                Err(seen) if Instant::now() > deadline => self.timed_out(&seen),
                Err(_) => std::thread::sleep(self.every),
            }
        }
    }
}
