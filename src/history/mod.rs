//! History: DSMR-reader's archive (`statistics/hour`, `statistics/day`) imported into Home
//! Assistant's long-term statistics, then kept current; a task of its own beside the poll loop.
//!
//! ```text
//! dsmr (pages of hours and days) ─▶ ledger (pure: rows with state and sum) ─▶ ha (WebSocket:
//!                                                                              import_statistics)
//! ```
//! Every run asks Home Assistant where each statistic ends, steps back two days (so that a day
//! row DSMR-reader computed later, or hours it archived late, are booked), and continues from
//! the sums stored there, a month of days per call. Re-sending a row is an upsert with the same
//! values, so a restart anywhere neither skips nor doubles energy.

pub mod dsmr;
pub mod ha;
pub mod ledger;

use std::time::{Duration, Instant};

use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::DsmrConfig;
use crate::status::StatusReporter;
use dsmr::{ArchiveClient, ArchiveError};
use ha::{HaClient, HaError, HaTarget, Statistic};
use ledger::{COSTS, GAS, Point, REGISTERS, Seeds};

/// Days per import call: about a month of hours, so that Home Assistant's recorder (one
/// transaction per call) stays responsive.
const CHUNK_DAYS: usize = 31;
/// How far back each run starts before the last imported hour.
const STEP_BACK: time::Duration = time::Duration::days(2);
/// How many days before that to look for a day row to restart from.
const RESUME_DAYS_BACK: time::Duration = time::Duration::days(3);
/// How far back from there to look for the sums to continue from.
const SEED_WINDOW: time::Duration = time::Duration::days(40);
/// DSMR-reader computes an hour's statistics a few minutes after it ends.
const UPDATE_EVERY: Duration = Duration::from_secs(10 * 60);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(5 * 60);
/// Runs that import more hours than this say so at info level.
const LOUD_HOURS: u64 = 72;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    HomeAssistant(#[from] HaError),
}

impl HistoryError {
    fn is_permanent(&self) -> bool {
        matches!(self, HistoryError::HomeAssistant(e) if e.is_permanent())
    }
}

/// What to import and where.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    pub target: HaTarget,
    /// Appended to each statistic id (`dsmr_bridge:gas_delivered_<tag>`); empty in the product.
    pub id_tag: String,
}

/// The statistics: the five registers, then the three costs.
pub fn statistics(tag: &str) -> [Statistic; REGISTERS + COSTS] {
    let id = |name: &str| {
        if tag.is_empty() {
            format!("dsmr_bridge:{name}")
        } else {
            format!("dsmr_bridge:{name}_{tag}")
        }
    };
    let stat = |name: &str, title: &str, unit, unit_class| Statistic {
        id: id(name),
        name: format!("{title} (DSMR-reader history)"),
        unit,
        unit_class,
    };
    [
        stat(
            "electricity_delivered_tariff_1",
            "Electricity consumed, tariff 1",
            Some("kWh"),
            Some("energy"),
        ),
        stat(
            "electricity_delivered_tariff_2",
            "Electricity consumed, tariff 2",
            Some("kWh"),
            Some("energy"),
        ),
        stat(
            "electricity_returned_tariff_1",
            "Electricity returned, tariff 1",
            Some("kWh"),
            Some("energy"),
        ),
        stat(
            "electricity_returned_tariff_2",
            "Electricity returned, tariff 2",
            Some("kWh"),
            Some("energy"),
        ),
        stat("gas_delivered", "Gas consumed", Some("m³"), Some("volume")),
        stat(
            "electricity_cost_tariff_1",
            "Electricity cost, tariff 1",
            Some("EUR"),
            None,
        ),
        stat(
            "electricity_cost_tariff_2",
            "Electricity cost, tariff 2",
            Some("EUR"),
            None,
        ),
        stat("gas_cost", "Gas cost", Some("EUR"), None),
    ]
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Hours sent (including the re-sent ones before the last imported hour).
    pub hours: u64,
    /// The start of the last hour sent.
    pub up_to: Option<OffsetDateTime>,
    /// Whether this run started from the archive's beginning.
    pub from_scratch: bool,
    /// `recorder/import_statistics` calls.
    pub import_calls: u64,
}

pub struct Importer {
    archive: ArchiveClient,
    config: HistoryConfig,
    stats: [Statistic; REGISTERS + COSTS],
    /// Called after each chunk with the hours done so far (tests stop an import midway).
    pub on_chunk: Option<Box<dyn FnMut(u64) + Send>>,
    /// The status page's line for the import.
    status: Option<StatusReporter>,
}

impl Importer {
    pub fn new(config: HistoryConfig, dsmr: &DsmrConfig) -> Result<Self, HistoryError> {
        Ok(Self {
            archive: ArchiveClient::new(dsmr)?,
            stats: statistics(&config.id_tag),
            config,
            on_chunk: None,
            status: None,
        })
    }

    pub fn statistics(&self) -> &[Statistic; REGISTERS + COSTS] {
        &self.stats
    }

    /// Requests sent to DSMR-reader so far.
    pub fn dsmr_requests(&self) -> u64 {
        self.archive.requests()
    }

    /// Imports what Home Assistant does not have yet, from two days before its last hour.
    pub async fn sync(&mut self) -> Result<Summary, HistoryError> {
        let mut ha = HaClient::connect(&self.config.target).await?;
        let gas = self
            .archive
            .latest_day()
            .await?
            .is_none_or(|d| d.registers[GAS].is_some() || d.consumption[GAS] > 0);
        let active: Vec<usize> = (0..REGISTERS + COSTS)
            .filter(|&k| gas || (k != GAS && k != REGISTERS + 2))
            .collect();
        let ids: Vec<&str> = active.iter().map(|&k| self.stats[k].id.as_str()).collect();
        let energy_ids: Vec<&str> = active
            .iter()
            .filter(|&&k| k < REGISTERS)
            .map(|&k| self.stats[k].id.as_str())
            .collect();

        let last = ha.last_hours(&energy_ids).await?;
        let resume = last.iter().copied().collect::<Option<Vec<_>>>();
        let mut start: Option<(Date, OffsetDateTime)> = None;
        let mut seeds = Seeds::default();
        if let Some(t) = resume.and_then(|l| l.into_iter().min()) {
            let from = t - STEP_BACK;
            let days = self
                .archive
                .days(Some(from.date() - RESUME_DAYS_BACK), 8)
                .await?;
            // Runs restart at a day DSMR-reader has a row for: booked from the middle of a day,
            // that day's missing energy (a gap) would be lost. Just after midnight yesterday's
            // row is not out yet, so the day before it is the one to restart from.
            let day = days
                .iter()
                .find(|d| d.start >= from)
                .or_else(|| days.iter().rev().find(|d| d.start < from));
            let cursor = day.map_or((from.date(), from), |d| (d.day, d.start));
            let stored = ha
                .rows(&ids, cursor.1 - SEED_WINDOW, Some(cursor.1), "hour")
                .await?;
            let mut complete = true;
            for (&k, rows) in active.iter().zip(&stored) {
                let Some(row) = rows.last() else {
                    complete = false;
                    continue;
                };
                let stat = &self.stats[k];
                let point = Point {
                    sum: row.sum.map_or(0, |s| ha::to_units(s, stat)),
                    state: row.state.map(|s| ha::to_units(s, stat)),
                };
                if k < REGISTERS {
                    seeds.energy[k] = Some(point);
                } else {
                    seeds.costs[k - REGISTERS] = Some(point);
                }
            }
            if complete {
                start = Some(cursor);
            } else {
                seeds = Seeds::default();
            }
        }
        let from_scratch = start.is_none();
        let total = self.archive.hour_count(start.map(|s| s.1)).await?;
        // A first import (or a long catch-up) is worth the user's attention; the hourly update
        // and an empty archive are not.
        let loud = (from_scratch && total > 0) || total > LOUD_HOURS;
        let mut summary = Summary {
            from_scratch,
            ..Summary::default()
        };
        let mut last_progress = Instant::now();
        loop {
            let mut days = self
                .archive
                .days(start.map(|s| s.0), CHUNK_DAYS + 1)
                .await?;
            // A day that began before the chunk would book hours this chunk does not have.
            days.retain(|d| start.is_none_or(|s| d.start >= s.1));
            let next = if days.len() > CHUNK_DAYS {
                days.pop().map(|d| (d.day, d.start))
            } else {
                None
            };
            // From the beginning (`None`), hours before the first day row come along.
            let chunk_start = start.map(|s| s.1);
            let hours = self.archive.hours(chunk_start, next.map(|n| n.1)).await?;
            let ledger = ledger::build(&hours, &days, &seeds);
            for &k in &active {
                let (rows, seed) = if k < REGISTERS {
                    (&ledger.energy[k], &mut seeds.energy[k])
                } else {
                    (
                        &ledger.costs[k - REGISTERS],
                        &mut seeds.costs[k - REGISTERS],
                    )
                };
                if let Some(last) = rows.last() {
                    ha.import(&self.stats[k], rows).await?;
                    summary.import_calls += 1;
                    *seed = Some(Point {
                        sum: last.sum,
                        state: last.state,
                    });
                }
            }
            ha.settle().await?;
            summary.hours += hours.len() as u64;
            if let Some(h) = hours.last() {
                summary.up_to = Some(h.start);
            }
            if let Some(hook) = self.on_chunk.as_mut() {
                hook(summary.hours);
            }
            // The update every few minutes sends two days again: not worth an "importing".
            if let Some(status) = self.status.as_ref().filter(|_| loud) {
                status.history(
                    true,
                    format!(
                        "importing: {} of {} hours, up to {}",
                        grouped(summary.hours),
                        grouped(total.max(summary.hours)),
                        day_of(summary.up_to)
                    ),
                );
            }
            if loud && last_progress.elapsed() >= PROGRESS_EVERY && next.is_some() {
                last_progress = Instant::now();
                info!(
                    "history: {} of {} hours imported, up to {}",
                    grouped(summary.hours),
                    grouped(total.max(summary.hours)),
                    summary
                        .up_to
                        .map_or_else(String::new, |t| t.date().to_string())
                );
            }
            match next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        let up_to = summary.up_to.map_or_else(
            || "nothing archived yet".to_owned(),
            |t| t.date().to_string(),
        );
        if let Some(status) = &self.status {
            // Each run sends again from two days before Home Assistant's last hour, so the
            // last hour sent is the newest DSMR-reader has archived.
            status.history(
                true,
                match summary.up_to {
                    Some(t) => format!("up to date: the last hour imported starts {}", hour_of(t)),
                    None => "up to date: DSMR-reader has archived no hour yet".to_owned(),
                },
            );
        }
        if loud {
            info!(
                hours = summary.hours,
                core = %ha.version_text,
                "history: done, {} hours in Home Assistant's statistics, up to {up_to}",
                grouped(summary.hours)
            );
        } else {
            debug!(hours = summary.hours, up_to = %up_to, "history: up to date");
        }
        Ok(summary)
    }
}

fn day_of(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "the start".to_owned(), |t| t.date().to_string())
}

/// An hour's start in UTC, as Home Assistant stores it: `2026-12-03 07:00 UTC`.
fn hour_of(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:00 UTC", t.date(), t.hour())
}

/// `17520` → `17,520`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Imports the archive, then keeps it current until `shutdown`; failures are logged once and
/// retried with backoff, and a rejected token ends the history alone (the live bridge runs on).
pub async fn run(mut importer: Importer, status: StatusReporter, shutdown: CancellationToken) {
    status.history(true, "starting".to_owned());
    importer.status = Some(status.clone());
    let mut retry = RETRY_FIRST;
    let mut failing: Option<String> = None;
    loop {
        let outcome = tokio::select! {
            outcome = importer.sync() => outcome,
            () = shutdown.cancelled() => return,
        };
        let wait = match outcome {
            Ok(_) => {
                if failing.take().is_some() {
                    info!("history: importing again");
                }
                retry = RETRY_FIRST;
                UPDATE_EVERY
            }
            Err(e) if e.is_permanent() => {
                error!(error = %e, "history: stopped; the live values keep flowing");
                status.history(false, format!("stopped: {e}"));
                return;
            }
            Err(e) => {
                let text = e.to_string();
                if failing.as_deref() != Some(text.as_str()) {
                    warn!(error = %text, retry_in_s = retry.as_secs(), "history: import interrupted; it continues where it stopped");
                } else {
                    debug!(error = %text, "history: still failing");
                }
                status.history(
                    false,
                    format!("interrupted, continues where it stopped: {text}"),
                );
                failing = Some(text);
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_numbers_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(8_760), "8,760");
        assert_eq!(grouped(17_520), "17,520");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn statistic_ids_are_valid_external_ids() {
        let re = |id: &str| {
            let (domain, object) = id.split_once(':').unwrap();
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && !s.starts_with('_')
                    && !s.ends_with('_')
                    && !s.contains("__")
            };
            ok(domain) && ok(object)
        };
        for stat in statistics("").iter().chain(statistics("t7").iter()) {
            assert!(re(&stat.id), "{}", stat.id);
            assert_eq!(stat.source(), "dsmr_bridge");
        }
    }
}
