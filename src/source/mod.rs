//! Source stage: polls DSMR-reader on a cadence a Raspberry Pi does not notice, and reports
//! each poll (or each outage) to the pipeline. Together with the sink, the only I/O.

mod dsmr;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use dsmr::{DsmrClient, MAX_BODY};

use crate::model::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "DSMR-reader rejected the API key (403 Invalid auth key): copy the key from DSMR-reader's admin, API configuration, into dsmr_reader_api_key"
    )]
    InvalidKey,
    #[error(
        "DSMR-reader's API is disabled (403 API is disabled): enable it in DSMR-reader's admin, API configuration"
    )]
    ApiDisabled,
    #[error("DSMR-reader refused access (403 {0})")]
    Forbidden(String),
    #[error(
        "DSMR-reader answered 401: something in front of it (a reverse proxy?) asks for a login; DSMR-reader itself needs only the API key"
    )]
    Unauthorized,
    #[error(
        "DSMR-reader has no {0} (404): check that dsmr_reader_url points at DSMR-reader 4.x or 5.x"
    )]
    NotFound(String),
    #[error("DSMR-reader answered HTTP {0}")]
    Status(u16),
    #[error("DSMR-reader did not answer in time")]
    Timeout,
    #[error("cannot connect to DSMR-reader: {0}")]
    Connect(String),
    #[error("request to DSMR-reader failed: {0}")]
    Request(String),
    #[error("DSMR-reader sent something that is not its JSON ({endpoint}): {reason}")]
    Malformed { endpoint: String, reason: String },
    #[error("DSMR-reader's answer is larger than {} KiB; not DSMR-reader?", MAX_BODY / 1024)]
    TooLarge,
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl SourceError {
    fn from_reqwest(error: reqwest::Error) -> Self {
        // The URL is left out: it may carry user info, and the log names DSMR-reader already.
        let error = error.without_url();
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            let cause = root_cause(&error);
            if cause.contains("certificate") {
                Self::Connect(format!(
                    "{cause} (DSMR-reader's TLS certificate is not trusted: for a certificate of your own CA set dsmr_reader_ca_file; check that dsmr_reader_url's host is the one in the certificate)"
                ))
            } else {
                Self::Connect(cause)
            }
        } else if error.is_redirect() {
            Self::Request(
                "redirected to another host, port or scheme; not followed, so the API key stays home (set dsmr_reader_url to the address DSMR-reader answers at)".into(),
            )
        } else {
            Self::Request(root_cause(&error))
        }
    }

    fn from_status(status: u16, body: &[u8], path: &str) -> Self {
        let detail = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned));
        match (status, detail.as_deref()) {
            (403, Some("Invalid auth key")) => Self::InvalidKey,
            (403, Some("API is disabled")) => Self::ApiDisabled,
            (403, detail) => {
                Self::Forbidden(detail.unwrap_or("Forbidden").chars().take(120).collect())
            }
            (401, _) => Self::Unauthorized,
            (404, _) => Self::NotFound(path.to_owned()),
            _ => Self::Status(status),
        }
    }

    /// Whether retrying can help without the user changing something. Auth problems are still
    /// retried (slowly): the user may fix DSMR-reader's side without restarting the bridge.
    pub fn needs_user(&self) -> bool {
        matches!(
            self,
            Self::InvalidKey
                | Self::ApiDisabled
                | Self::Forbidden(_)
                | Self::Unauthorized
                | Self::NotFound(_)
        )
    }
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// What the source tells the pipeline.
#[derive(Debug)]
pub enum SourceEvent {
    Poll(Box<Snapshot>),
    /// DSMR-reader answered again after an outage.
    Reachable,
    /// DSMR-reader has been failing long enough to mark its entities unavailable.
    Unreachable,
}

/// How often each endpoint is asked. Readings follow `poll_interval`; day totals change about
/// once a minute in DSMR-reader itself; its version changes on upgrades only.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub reading: Duration,
    pub day: Duration,
    pub version: Duration,
}

impl Cadence {
    pub fn new(poll_interval: Duration) -> Self {
        Self {
            reading: poll_interval,
            day: Duration::from_secs(60).max(poll_interval),
            version: Duration::from_secs(3600).max(poll_interval),
        }
    }
}

/// A short blip should not flap every entity to unavailable; three failed polls in a row
/// (15–35 s at the default interval, with backoff) is an outage.
const FAILURES_BEFORE_UNREACHABLE: u32 = 3;
/// Longest wait between polls while DSMR-reader is failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `timestamp__gte` takes server-local time without an offset; the reading's own offset is
/// the server's.
fn filter_time(at: OffsetDateTime) -> Option<String> {
    at.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .ok()
}

/// Polls until `shutdown`; sends every successful poll and availability changes on `events`.
pub async fn run(
    client: DsmrClient,
    cadence: Cadence,
    events: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
) {
    let mut poller = Poller::new(client, cadence);
    loop {
        let started = Instant::now();
        let result = poller.poll_once(&events).await;
        let wait = poller.after(result, &events).await;
        tokio::select! {
            () = tokio::time::sleep_until(started + wait) => {}
            () = shutdown.cancelled() => return,
        }
        if events.is_closed() {
            return;
        }
    }
}

struct Poller {
    client: DsmrClient,
    cadence: Cadence,
    since: Option<String>,
    next_day: Instant,
    next_version: Instant,
    failures: u32,
    backoff: Option<backon::ExponentialBackoff>,
    /// Last availability told to the pipeline.
    reported: Option<bool>,
}

impl Poller {
    fn new(client: DsmrClient, cadence: Cadence) -> Self {
        let now = Instant::now();
        Self {
            client,
            cadence,
            since: None,
            next_day: now,
            next_version: now,
            failures: 0,
            backoff: None,
            reported: None,
        }
    }

    /// One poll cycle: meter statistics first (they carry the meter's identity), then the
    /// newest reading, then whatever slower endpoint is due. What succeeded before a failure
    /// is still sent: each part is valid on its own.
    async fn poll_once(&mut self, events: &mpsc::Sender<SourceEvent>) -> Result<(), SourceError> {
        let mut snapshot = Snapshot::default();
        let result = self.fetch(&mut snapshot).await;
        let fetched_anything = snapshot.meter_stats.is_some() || snapshot.reading.is_some();
        if fetched_anything
            && events
                .send(SourceEvent::Poll(Box::new(snapshot)))
                .await
                .is_err()
        {
            debug!("pipeline gone; source stops");
        }
        result
    }

    async fn fetch(&mut self, snapshot: &mut Snapshot) -> Result<(), SourceError> {
        snapshot.meter_stats = Some(self.client.meter_statistics().await?);
        let reading = self.client.latest_reading(self.since.as_deref()).await?;
        match &reading {
            Some(r) => {
                self.since = match r.get("timestamp") {
                    Some(Value::String(s)) => crate::map::parse_timestamp(s).and_then(filter_time),
                    _ => None,
                };
            }
            // Nothing at or after the last timestamp: the meter clock went back or the row is
            // gone. Ask once without the filter to catch up.
            None if self.since.is_some() => {
                debug!("no reading at or after the last one; next poll asks without a filter");
                self.since = None;
            }
            None => {}
        }
        snapshot.reading = reading;
        let now = Instant::now();
        if now >= self.next_day {
            snapshot.today = self.client.today().await?;
            snapshot.peak = self.client.quarter_hour_peak().await?;
            snapshot.monitoring = Some(self.client.monitoring().await?);
            self.next_day = now + self.cadence.day;
        }
        if now >= self.next_version {
            snapshot.version = Some(self.client.version().await?);
            self.next_version = now + self.cadence.version;
        }
        Ok(())
    }

    /// Logs outages once (at their start and end), reports availability changes and picks
    /// the wait before the next poll.
    async fn after(
        &mut self,
        result: Result<(), SourceError>,
        events: &mpsc::Sender<SourceEvent>,
    ) -> Duration {
        match result {
            Ok(()) => {
                if self.failures > 0 {
                    info!(failed_polls = self.failures, "DSMR-reader answers again");
                }
                self.failures = 0;
                self.report(true, events).await;
                self.backoff = None;
                self.cadence.reading
            }
            Err(error) => {
                self.failures += 1;
                if self.failures == 1 {
                    warn!(error = %error, "DSMR-reader poll failed; retrying with backoff until it answers");
                } else {
                    debug!(error = %error, failed_polls = self.failures, "DSMR-reader still failing");
                }
                // Errors only the user can fix make entities unavailable at once.
                if self.failures >= FAILURES_BEFORE_UNREACHABLE || error.needs_user() {
                    self.report(false, events).await;
                }
                let min = self.cadence.reading;
                let backoff = self.backoff.get_or_insert_with(|| fresh_backoff(min));
                backoff.next().unwrap_or(MAX_BACKOFF)
            }
        }
    }

    async fn report(&mut self, reachable: bool, events: &mpsc::Sender<SourceEvent>) {
        if self.reported == Some(reachable) {
            return;
        }
        if !reachable {
            warn!("DSMR-reader unreachable; its entities show as unavailable in Home Assistant");
        }
        self.reported = Some(reachable);
        let event = if reachable {
            SourceEvent::Reachable
        } else {
            SourceEvent::Unreachable
        };
        let _ = events.send(event).await;
    }
}

fn fresh_backoff(min: Duration) -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(MAX_BACKOFF.max(min))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn filter_uses_server_local_time() {
        assert_eq!(
            filter_time(datetime!(2026-11-26 14:02:14 +01:00)).as_deref(),
            Some("2026-11-26 14:02:14")
        );
    }

    #[test]
    fn forbidden_bodies_become_advice() {
        let e = SourceError::from_status(403, br#"{"detail": "Invalid auth key"}"#, "x");
        assert!(e.to_string().contains("dsmr_reader_api_key"));
        let e = SourceError::from_status(403, br#"{"detail": "API is disabled"}"#, "x");
        assert!(e.to_string().contains("enable it"));
        assert!(matches!(
            SourceError::from_status(500, b"<html>", "x"),
            SourceError::Status(500)
        ));
    }

    #[test]
    fn cadence_is_gentle() {
        let c = Cadence::new(Duration::from_secs(5));
        assert_eq!(c.day, Duration::from_secs(60));
        assert_eq!(c.version, Duration::from_secs(3600));
    }
}
