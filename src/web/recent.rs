//! The last warnings and errors, kept for the status page by a tracing layer: the same events,
//! in the same words, as the log, with secrets cut by the same `Redactor`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::secrets::Redactor;

/// How many the page shows.
pub(crate) const KEPT: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) at: SystemTime,
    pub(crate) level: Level,
    /// The message, then its fields as `key=value`.
    pub(crate) text: String,
}

/// A handle on the ring; clones share it.
#[derive(Debug, Clone, Default)]
pub struct RecentLog {
    entries: Arc<Mutex<VecDeque<Entry>>>,
}

impl RecentLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Oldest first.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.lock().iter().cloned().collect()
    }

    fn push(&self, entry: Entry) {
        let mut entries = self.lock();
        if entries.len() == KEPT {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        // A panic while holding it leaves a ring that is still valid.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The layer that fills this ring, cutting secrets as the log's own output does; add it
    /// next to the log's own.
    pub fn layer(&self, redactor: Redactor) -> RecentLayer {
        RecentLayer {
            log: self.clone(),
            redactor,
        }
    }
}

pub struct RecentLayer {
    log: RecentLog,
    redactor: Redactor,
}

impl<S: Subscriber> Layer<S> for RecentLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        // `Level` orders by verbosity: WARN and ERROR are the least verbose.
        if level > Level::WARN {
            return;
        }
        let mut words = Words::default();
        event.record(&mut words);
        self.log.push(Entry {
            at: SystemTime::now(),
            level,
            text: self.redactor.redact(&words.finish()).into_owned(),
        });
    }
}

/// Formats fields as the log does: the message, then `key=value` with strings quoted.
#[derive(Default)]
struct Words {
    message: String,
    fields: String,
}

impl Words {
    fn field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if field.name() == "message" {
            let _ = self.message.write_fmt(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn finish(self) -> String {
        self.message + &self.fields
    }
}

impl Visit for Words {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.field(field, format_args!("{text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Warnings and errors are kept in the words of the log, the last `KEPT` of them.
    #[test]
    fn keeps_the_last_warnings_and_errors_with_their_fields() {
        let log = RecentLog::new();
        let subscriber = tracing_subscriber::registry().with(log.layer(Redactor::default()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(endpoint = "today", retry_in_s = 60, "endpoint failed");
            for n in 0..KEPT {
                tracing::error!(n, "broken");
            }
        });
        let entries = log.entries();
        assert_eq!(entries.len(), KEPT);
        assert_eq!(entries[0].text, "broken n=0");
        assert_eq!(entries[0].level, Level::ERROR);

        let log = RecentLog::new();
        let subscriber = tracing_subscriber::registry().with(log.layer(Redactor::default()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(endpoint = "today", retry_in_s = 60, "endpoint failed");
        });
        assert_eq!(
            log.entries()[0].text,
            "endpoint failed endpoint=\"today\" retry_in_s=60"
        );
    }
}
