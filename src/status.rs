//! Status: what the pipeline tells the edges that show the bridge's state (the health file
//! for Docker's HEALTHCHECK, the status page). The pipeline only updates a `watch` value;
//! whoever shows it does its own I/O, so the pipeline's task never touches a file or a socket
//! for it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::dedup::Stats;

/// One point per this span at most: an hour of power then fits in `POWER_POINTS`, whatever
/// the poll interval.
pub(crate) const POWER_STEP: Duration = Duration::from_secs(5);
/// An hour at `POWER_STEP`: about 12 KiB of memory at most.
pub(crate) const POWER_POINTS: usize = 720;

/// One point of the power chart: seconds since the Unix epoch, watts consumed and returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PowerPoint {
    pub(crate) at: u64,
    pub(crate) delivered_w: i32,
    pub(crate) returned_w: i32,
}

/// The bridge as seen from outside.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub broker_connected: bool,
    /// Since when the broker is connected (or away).
    pub(crate) broker_since: Option<SystemTime>,
    /// Wall-clock time of the last poll whose newest reading DSMR-reader answered: what
    /// "reachable" means here and in the source (side endpoints do not count).
    pub(crate) last_poll: Option<SystemTime>,
    /// `None` until the source has said either way.
    pub(crate) dsmr_reachable: Option<bool>,
    /// Side endpoints that fail while the reading answers: `(endpoint, error in the words of
    /// the log)`. Their entities keep their last values; DSMR-reader is not unreachable.
    pub(crate) failing: Vec<(&'static str, String)>,
    pub(crate) dsmr_version: Option<String>,
    /// The last failed poll: when, and why in the words of the log.
    pub(crate) last_error: Option<(SystemTime, String)>,
    /// `(catalog key, value as published)` for the catalog's entries shown on the page
    /// (`Sensor::on_page`) that have a value.
    pub(crate) meter: Vec<(&'static str, String)>,
    /// The last hour of power, oldest first.
    pub(crate) power: VecDeque<PowerPoint>,
    pub(crate) traffic: Stats,
    /// Entities announced to Home Assistant (0 with discovery off).
    pub(crate) entities: usize,
    /// The history import; `None` when it is off.
    pub(crate) history: Option<HistoryStatus>,
}

/// Where the history import stands, in the words of its log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryStatus {
    /// Importing or up to date; false while it is interrupted or stopped.
    pub(crate) ok: bool,
    pub(crate) text: String,
}

/// The pipeline's end of the status channel. The history import holds a clone for its own
/// line; the channel closes when the last one is gone.
#[derive(Debug, Clone)]
pub struct StatusReporter {
    tx: Arc<watch::Sender<Status>>,
}

impl StatusReporter {
    pub fn new() -> (Self, watch::Receiver<Status>) {
        let (tx, rx) = watch::channel(Status::default());
        (Self { tx: Arc::new(tx) }, rx)
    }

    /// For runs where nobody watches (benchmarks, embedded uses).
    pub fn unobserved() -> Self {
        Self::new().0
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Status> {
        self.tx.subscribe()
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.tx.send_if_modified(|s| {
            let changed = s.broker_connected != connected || s.broker_since.is_none();
            if changed {
                s.broker_since = Some(SystemTime::now());
            }
            s.broker_connected = connected;
            changed
        });
    }

    pub(crate) fn history(&self, ok: bool, text: String) {
        self.tx.send_if_modified(|s| {
            let next = Some(HistoryStatus { ok, text });
            let changed = s.history != next;
            s.history = next;
            changed
        });
    }

    pub(crate) fn polled(&self, at: SystemTime) {
        self.tx.send_modify(|s| s.last_poll = Some(at));
    }

    pub(crate) fn set_reachable(&self, reachable: bool) {
        self.tx.send_if_modified(|s| {
            let changed = s.dsmr_reachable != Some(reachable);
            s.dsmr_reachable = Some(reachable);
            changed
        });
    }

    /// A side endpoint fails (`Some(error)`) or answers again (`None`).
    pub(crate) fn side_failing(&self, endpoint: &'static str, error: Option<String>) {
        self.tx.send_modify(|s| {
            s.failing.retain(|(e, _)| *e != endpoint);
            if let Some(error) = error {
                s.failing.push((endpoint, error));
            }
        });
    }

    pub(crate) fn failed(&self, at: SystemTime, error: String) {
        self.tx.send_modify(|s| s.last_error = Some((at, error)));
    }

    /// The meter after a poll: its values, DSMR-reader's version and, when the poll brought a
    /// reading, a point of power (without one the power shown is the last reading's, not now's).
    pub fn meter(
        &self,
        at: SystemTime,
        version: Option<&str>,
        meter: Vec<(&'static str, String)>,
        reading: bool,
    ) {
        self.tx.send_modify(|s| {
            if s.dsmr_version.as_deref() != version {
                s.dsmr_version = version.map(str::to_owned);
            }
            let watts = |key: &str| {
                meter
                    .iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, v)| v.parse::<f64>().ok())
                    .map(|kw| (kw * 1000.0).round() as i32)
            };
            if reading && let Some(delivered_w) = watts("electricity_currently_delivered") {
                let point = PowerPoint {
                    at: unix(at),
                    delivered_w,
                    returned_w: watts("electricity_currently_returned").unwrap_or(0),
                };
                push_point(&mut s.power, point);
            }
            s.meter = meter;
        });
    }

    /// What dedup counted and how many entities are announced; sent only when it changed.
    pub(crate) fn traffic(&self, traffic: Stats, entities: usize) {
        self.tx.send_if_modified(|s| {
            let changed = s.traffic != traffic || s.entities != entities;
            s.traffic = traffic;
            s.entities = entities;
            changed
        });
    }
}

pub fn unix(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Adds `point`, replacing the newest one when it is within `POWER_STEP` (the chart keeps its
/// resolution and its memory whatever the poll interval), and drops what is over an hour old.
fn push_point(power: &mut VecDeque<PowerPoint>, point: PowerPoint) {
    match power.back_mut() {
        Some(last) if point.at < last.at + POWER_STEP.as_secs() => {
            // Keep the bucket's start time so points stay evenly spaced.
            let at = last.at;
            *last = PowerPoint { at, ..point };
        }
        _ => power.push_back(point),
    }
    let hour_ago = point
        .at
        .saturating_sub(POWER_STEP.as_secs() * POWER_POINTS as u64);
    while power.len() > POWER_POINTS || power.front().is_some_and(|p| p.at < hour_ago) {
        power.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: u64, w: i32) -> PowerPoint {
        PowerPoint {
            at,
            delivered_w: w,
            returned_w: 0,
        }
    }

    /// A poll that brought no reading (only meter statistics answered) adds no point: the
    /// power the status holds is the last reading's, not that moment's.
    #[test]
    fn only_a_poll_with_a_reading_adds_a_power_point() {
        let (reporter, status) = StatusReporter::new();
        let power = || vec![("electricity_currently_delivered", "0.500".to_owned())];
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        reporter.meter(t0, None, power(), true);
        reporter.meter(t0 + Duration::from_secs(60), None, power(), false);
        assert_eq!(status.borrow().power.len(), 1);
        reporter.meter(t0 + Duration::from_secs(120), None, power(), true);
        assert_eq!(status.borrow().power.len(), 2);
    }

    /// A poll every second for two hours keeps an hour of points, one per five seconds.
    #[test]
    fn the_power_chart_keeps_an_hour_in_bounded_memory() {
        let mut power = VecDeque::new();
        for at in 0..7200 {
            push_point(&mut power, point(1_000_000 + at, at as i32));
        }
        assert!(power.len() <= POWER_POINTS, "{} points", power.len());
        assert!(power.len() >= POWER_POINTS - 2, "{} points", power.len());
        let newest = power.back().unwrap();
        assert_eq!(newest.delivered_w, 7199, "the newest value is shown");
        assert!(newest.at - power.front().unwrap().at <= 3600);
    }
}
