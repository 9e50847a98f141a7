//! History: DSMR-reader's archive (`statistics/hour`, `statistics/day`) imported beneath the live
//! register and day-cost sensors' own long-term statistics in Home Assistant, then kept current;
//! a task of its own beside the poll loop.
//!
//! ```text
//! Archive (DSMR-reader) ─▶ ledger (pure: rows with state and sum) ─┐
//!                                                                   ├▶ plan (pure: junction,
//! Store (Home Assistant: the sensors' statistics, their first row) ─┘   fill, offset) ─▶ Store
//! ```
//! Each run asks Home Assistant where each sensor's own statistics begin (the junction: its
//! first row without the import's mark), imports the archive's hours before it (from two days
//! before the last imported hour, so that rows DSMR-reader archived late are booked; re-sending a
//! row is an upsert with the same values), fills the hours DSMR-reader has not archived yet from
//! its readings, and moves Home Assistant's own rows by the one offset that makes the junction's
//! hour show its whole energy: zero once they are joined. The day costs get a row per archived
//! day beneath theirs, and the offset that counts the junction's day whole.

pub mod dsmr;
pub mod ha;
pub mod ledger;
pub(crate) mod options;
pub mod plan;

use std::time::Duration;

use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::status::StatusReporter;
use dsmr::{ArchiveClient, ArchiveError};
use ha::{HaClient, HaError, HaTarget, Metadata, StoredRow};
use ledger::{COSTS, DayStat, HourStat, Point, REGISTERS, Row, Seeds};
use plan::{Junction, Reading};

/// Dates outside these are not a meter's, in DSMR-reader's archive or in Home Assistant's
/// statistics: refused as bad rows, and so kept away from date arithmetic that would overflow.
const EARLIEST: Date = time::macros::date!(1990 - 01 - 01);
const LATEST: Date = time::macros::date!(2200 - 01 - 01);

/// Days per import call: about a month of hours, so that Home Assistant's recorder (one
/// transaction per call) stays responsive.
const CHUNK_DAYS: usize = 31;
/// How far back each run starts before the last imported hour.
const STEP_BACK: time::Duration = time::Duration::days(2);
/// How many days before that to look for a day row to restart from.
const RESUME_DAYS_BACK: time::Duration = time::Duration::days(3);
/// How far back from there to look for the sums to continue from.
const SEED_WINDOW: time::Duration = time::Duration::days(40);
/// DSMR-reader computes its statistics once a day; its readings come every few seconds, and Home
/// Assistant compiles every 5 minutes.
const UPDATE_EVERY: Duration = Duration::from_secs(10 * 60);
/// While Home Assistant has not compiled a sensor's first row yet.
const WAIT_FOR_CORE: Duration = Duration::from_secs(60);
/// A first import says how far it got this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(5 * 60);
/// Runs that import more hours than this say so at info level.
const LOUD_HOURS: u64 = 72;

/// The live register sensors that get the archive: the catalog's meter registers announced as
/// entities (the entries with a plausibility limit per hour), by key, in the catalog's order, which is the ledger's
/// (DSMR-reader's hour fields electricity1, electricity2, their returns, gas; a test holds them
/// together).
pub fn register_keys() -> [&'static str; REGISTERS] {
    let mut keys = [""; REGISTERS];
    for (slot, sensor) in keys.iter_mut().zip(
        crate::map::catalog::SENSORS
            .iter()
            .filter(|s| s.announce && s.register_max_per_hour.is_some()),
    ) {
        *slot = sensor.key;
    }
    keys
}

/// The live day-cost sensors that get the archive's day costs: the catalog's totals reset daily,
/// by key, in the catalog's order, which is the ledger's (a test holds them to DSMR-reader's day
/// fields).
pub fn cost_keys() -> [&'static str; COSTS] {
    let mut keys = [""; COSTS];
    for (slot, sensor) in keys.iter_mut().zip(
        crate::map::catalog::SENSORS
            .iter()
            .filter(|s| s.announce && s.resets.is_some()),
    ) {
        *slot = sensor.key;
    }
    keys
}

/// Every sensor whose statistics the history works on, in the order of `Store::sensors`: the
/// registers, then the day costs.
fn statistic_keys() -> impl Iterator<Item = &'static str> {
    register_keys().into_iter().chain(cost_keys())
}

/// What a sensor's statistic is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Series {
    /// A register, by its index in the ledger.
    Energy(usize),
    /// A day cost, by its index in the ledger.
    Cost(usize),
}

impl Series {
    /// The series at `index` of `Store::sensors`.
    fn at(index: usize) -> Self {
        match index.checked_sub(REGISTERS) {
            Some(cost) => Series::Cost(cost),
            None => Series::Energy(index),
        }
    }
}

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
}

/// DSMR-reader's archive, as the import reads it.
pub trait Archive {
    /// Up to `limit` day rows from `from` on (all days when `None`), oldest first.
    fn days(
        &self,
        from: Option<Date>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DayStat>, ArchiveError>> + Send;
    /// Every hour row in `[from, before)`, oldest first.
    fn hours(
        &self,
        from: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
    ) -> impl Future<Output = Result<Vec<HourStat>, ArchiveError>> + Send;
    /// The registers (thousandths) of the first reading at or after each of `at`; `None` where
    /// DSMR-reader has none within the hour.
    fn readings_at(
        &self,
        at: &[OffsetDateTime],
    ) -> impl Future<Output = Result<Vec<Option<[Option<i64>; REGISTERS]>>, ArchiveError>> + Send;
}

/// Home Assistant's statistics of the bridge's sensors.
pub trait Store {
    /// Each sensor's statistics metadata, the registers in `register_keys()` order, then the day
    /// costs in `cost_keys()` order; `None` for one Home Assistant does not have or has no
    /// statistics for yet.
    fn sensors(&mut self) -> impl Future<Output = Result<Vec<Option<Metadata>>, HaError>> + Send;
    /// Home Assistant's own first row of the sensor; `None` before its first compile.
    fn junction(
        &mut self,
        meta: &Metadata,
    ) -> impl Future<Output = Result<Option<Junction>, HaError>> + Send;
    /// The sensor's hourly rows in `[from, before)`.
    fn hours(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<StoredRow>, HaError>> + Send;
    fn import(
        &mut self,
        meta: &Metadata,
        rows: &[Row],
    ) -> impl Future<Output = Result<(), HaError>> + Send;
    fn adjust(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        by: i64,
    ) -> impl Future<Output = Result<(), HaError>> + Send;
    /// Returns once the recorder has written everything sent so far.
    fn settle(&mut self) -> impl Future<Output = Result<(), HaError>> + Send;
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Archived hours sent (including the re-sent ones before the last imported hour).
    pub hours: u64,
    /// Hours filled from DSMR-reader's readings, summed over the sensors.
    pub filled: u64,
    /// The start of the last hour sent.
    pub up_to: Option<OffsetDateTime>,
    /// Whether this run started from the archive's beginning.
    pub from_scratch: bool,
    /// `recorder/import_statistics` calls.
    pub import_calls: u64,
    /// Sensors whose own rows were moved.
    pub adjusted: u64,
    /// Sensors whose statistics were worked on.
    pub sensors: u64,
    /// Sensors Home Assistant has no first row for yet.
    pub waiting: u64,
}

/// One sensor this run works on.
struct Target {
    series: Series,
    meta: Metadata,
    junction: Junction,
    /// The last row beneath the junction, as imported by this run.
    last: Option<Row>,
    /// The last row beneath the junction Home Assistant held when the run began.
    held: Option<Row>,
}

/// Imports what Home Assistant does not have yet beneath each sensor's own statistics, and joins
/// them.
pub async fn sync<A: Archive, S: Store>(
    archive: &A,
    store: &mut S,
    status: Option<&StatusReporter>,
) -> Result<Summary, HistoryError> {
    let mut summary = Summary::default();
    // What an interrupted run sent may still be queued in the recorder: read after it.
    store.settle().await?;
    let mut targets = Vec::new();
    for (index, meta) in store.sensors().await?.into_iter().enumerate() {
        let Some(meta) = meta else {
            continue;
        };
        match store.junction(&meta).await? {
            Some(junction) => targets.push(Target {
                series: Series::at(index),
                meta,
                junction,
                last: None,
                held: None,
            }),
            // Before Core's first row there is nothing to join to: never guess.
            None => summary.waiting += 1,
        }
    }
    summary.sensors = targets.len() as u64;
    let Some(until) = targets.iter().map(|t| t.junction.hour).max() else {
        return Ok(summary);
    };
    // Only the registers take hour rows: day costs enabled long after them need no hours.
    let hours_until = targets
        .iter()
        .filter(|t| matches!(t.series, Series::Energy(_)))
        .map(|t| t.junction.hour)
        .max();

    let (mut start, mut seeds) = resume(archive, store, &mut targets).await?;
    summary.from_scratch = start.is_none();
    let loud = summary.from_scratch;
    let mut last_progress = tokio::time::Instant::now();
    loop {
        let mut days = archive.days(start.map(|s| s.0), CHUNK_DAYS + 1).await?;
        // A day that began before the chunk would book hours this chunk does not have.
        days.retain(|d| start.is_none_or(|s| d.start >= s.1));
        let next = if days.len() > CHUNK_DAYS {
            days.pop().map(|d| (d.day, d.start))
        } else {
            None
        };
        let before = next.map_or(until, |n| n.1.min(until));
        let chunk_start = start.map(|s| s.1);
        if chunk_start.is_some_and(|s| s >= before) {
            break;
        }
        let hours = match hours_until {
            Some(end) if chunk_start.is_none_or(|s| s < end) => {
                archive.hours(chunk_start, Some(before.min(end))).await?
            }
            _ => Vec::new(),
        };
        for target in &mut targets {
            let (rows, seed) = match target.series {
                Series::Energy(k) => {
                    let mut built =
                        ledger::build_until(&hours, &days, &seeds, Some(target.junction.hour));
                    (std::mem::take(&mut built.energy[k]), &mut seeds.energy[k])
                }
                Series::Cost(k) => {
                    let rows = ledger::cost_rows(
                        &days,
                        k,
                        seeds.costs[k],
                        cost_days_before(&target.junction),
                    );
                    (rows, &mut seeds.costs[k])
                }
            };
            // What the sensor held before two days ahead of its own last imported row is built
            // again (the sums after it continue from there) but not sent again: a day cost
            // enabled long after the registers would get every day since theirs on every run.
            let send_from = target.held.map(|h| h.start - STEP_BACK);
            let send = &rows[rows.partition_point(|r| send_from.is_some_and(|f| r.start < f))..];
            if !send.is_empty() {
                store.import(&target.meta, send).await?;
                summary.import_calls += 1;
            }
            if let Some(last) = rows.last() {
                *seed = Some(Point {
                    sum: last.sum,
                    state: last.state,
                });
                target.last = Some(*last);
            }
        }
        summary.hours += hours.len() as u64;
        if let Some(h) = hours.last() {
            summary.up_to = Some(h.start);
        }
        if let Some(status) = status.filter(|_| loud) {
            status.history(true, format!("importing: up to {}", day_of(summary.up_to)));
        }
        if loud && next.is_some() && last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = tokio::time::Instant::now();
            info!(hours = summary.hours, up_to = %day_of(summary.up_to), "history: importing");
        }
        match next {
            Some(n) if n.1 < until => start = Some(n),
            _ => break,
        }
    }

    // The install day: hours DSMR-reader has not archived yet, from its readings, once; and
    // DSMR-reader's register at the junction where the rows beneath do not end on it.
    let mut wanted = std::collections::BTreeSet::new();
    for target in &mut targets {
        let (Some(last), Series::Energy(_)) = (target.last, target.series) else {
            continue;
        };
        let boundaries = plan::fill_boundaries(&last, &target.junction);
        let filled_before = target.held.filter(|h| {
            h.start > last.start && h.start + time::Duration::HOUR == target.junction.hour
        });
        if let Some(held) = filled_before {
            target.last = Some(held);
        } else if !boundaries.is_empty() {
            wanted.extend(boundaries);
            continue;
        }
        if target
            .last
            .is_some_and(|l| plan::offset(Some(&l), None, &target.junction) != 0)
        {
            wanted.insert(target.junction.hour);
        }
    }
    let at: Vec<OffsetDateTime> = wanted.into_iter().collect();
    let registers = if at.is_empty() {
        Vec::new()
    } else {
        archive.readings_at(&at).await?
    };
    for target in &mut targets {
        let Some(last) = target.last else {
            continue;
        };
        let register = match target.series {
            Series::Energy(k) => k,
            Series::Cost(_) => {
                let by = plan::cost_offset(Some(&last), &target.junction);
                join(store, target, by, &mut summary).await?;
                continue;
            }
        };
        let readings: Vec<Reading> = at
            .iter()
            .zip(&registers)
            .filter_map(|(at, r)| {
                Some(Reading {
                    at: *at,
                    register: (*r)?[register]?,
                })
            })
            .collect();
        if !plan::fill_boundaries(&last, &target.junction).is_empty() {
            let filled = plan::fill(&last, &readings, &target.junction);
            if let Some(end) = filled.last() {
                store.import(&target.meta, &filled).await?;
                summary.import_calls += 1;
                summary.filled += filled.len() as u64;
                target.last = Some(*end);
            }
        }
        let at_junction = readings
            .iter()
            .find(|r| r.at == target.junction.hour)
            .map(|r| r.register);
        let by = plan::offset(target.last.as_ref(), at_junction, &target.junction);
        debug!(
            statistic = %target.meta.statistic_id,
            reading = ?at_junction,
            last = ?target.last,
            junction = ?target.junction,
            by,
            "history: junction"
        );
        join(store, target, by, &mut summary).await?;
    }
    store.settle().await?;
    Ok(summary)
}

/// Moves Home Assistant's own rows of `target` by `by` (nothing when 0).
async fn join<S: Store>(
    store: &mut S,
    target: &Target,
    by: i64,
    summary: &mut Summary,
) -> Result<(), HistoryError> {
    if by == 0 {
        return Ok(());
    }
    // Written before the adjustment, so that a statistic new to the recorder has its metadata
    // (Core's adjustment of one without does nothing).
    store.settle().await?;
    store.adjust(&target.meta, target.junction.hour, by).await?;
    summary.adjusted += 1;
    debug!(
        statistic = %target.meta.statistic_id,
        from = %target.junction.hour,
        by,
        "history: Home Assistant's own rows moved onto the archive"
    );
    Ok(())
}

/// A day cost's archived days go beneath it up to the local midnight its own rows' day began
/// at; without that (a junction row with no `last_reset`), up to the days that surely ended
/// before its hour (a local day lasts at most 25 hours).
fn cost_days_before(junction: &Junction) -> OffsetDateTime {
    junction
        .day_start
        .unwrap_or(junction.hour - time::Duration::hours(25))
}

/// Where this run starts: a day DSMR-reader has a row for, two days before the last hour
/// imported beneath every sensor, with each sensor's sum and register there; from the archive's
/// beginning (`None`) when one has nothing imported yet.
async fn resume<A: Archive, S: Store>(
    archive: &A,
    store: &mut S,
    targets: &mut [Target],
) -> Result<(Option<(Date, OffsetDateTime)>, Seeds), HistoryError> {
    let mut last = None::<OffsetDateTime>;
    let mut complete = true;
    for target in targets.iter_mut() {
        let hours = store
            .hours(
                &target.meta,
                target.junction.hour - SEED_WINDOW,
                target.junction.hour,
            )
            .await?;
        let Some(row) = hours.iter().rev().find(|r| r.imported) else {
            complete = false;
            continue;
        };
        let scale = target.meta.scale();
        target.held = Some(Row {
            start: row.start,
            state: row.state.map(|s| ha::to_units(s, scale)),
            sum: row.sum.map_or(0, |s| ha::to_units(s, scale)),
        });
        last = Some(last.map_or(row.start, |l: OffsetDateTime| l.min(row.start)));
    }
    if !complete {
        return Ok((None, Seeds::default()));
    }
    let Some(last) = last else {
        return Ok((None, Seeds::default()));
    };
    let from = last - STEP_BACK;
    let days = archive
        .days(Some(from.date() - RESUME_DAYS_BACK), 8)
        .await?;
    // Runs restart at a day DSMR-reader has a row for: booked from the middle of a day, that
    // day's missing energy (a gap) would be lost. Just after midnight yesterday's row is not out
    // yet, so the day before it is the one to restart from.
    let day = days
        .iter()
        .find(|d| d.start >= from)
        .or_else(|| days.iter().rev().find(|d| d.start < from));
    let cursor = day.map_or((from.date(), from), |d| (d.day, d.start));
    let mut seeds = Seeds::default();
    for target in targets.iter() {
        let hours = store
            .hours(&target.meta, cursor.1 - SEED_WINDOW, cursor.1)
            .await?;
        let Some(row) = hours.iter().rev().find(|r| r.imported) else {
            return Ok((None, Seeds::default()));
        };
        let scale = target.meta.scale();
        let seed = Some(Point {
            sum: row.sum.map_or(0, |s| ha::to_units(s, scale)),
            state: row.state.map(|s| ha::to_units(s, scale)),
        });
        match target.series {
            Series::Energy(k) => seeds.energy[k] = seed,
            Series::Cost(k) => seeds.costs[k] = seed,
        }
    }
    Ok((Some(cursor), seeds))
}

fn day_of(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "the start".to_owned(), |t| t.date().to_string())
}

/// An hour's start in UTC, as Home Assistant stores it: `2026-12-03 07:00 UTC`.
fn hour_of(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:00 UTC", t.date(), t.hour())
}

impl Archive for ArchiveClient {
    async fn days(&self, from: Option<Date>, limit: usize) -> Result<Vec<DayStat>, ArchiveError> {
        ArchiveClient::days(self, from, limit).await
    }

    async fn hours(
        &self,
        from: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
    ) -> Result<Vec<HourStat>, ArchiveError> {
        ArchiveClient::hours(self, from, before).await
    }

    async fn readings_at(
        &self,
        at: &[OffsetDateTime],
    ) -> Result<Vec<Option<[Option<i64>; REGISTERS]>>, ArchiveError> {
        ArchiveClient::readings_at(self, at).await
    }
}

impl Store for HaClient {
    async fn sensors(&mut self) -> Result<Vec<Option<Metadata>>, HaError> {
        let entities = self.entities().await?;
        // The unique id is the bridge's (`<device id>_<catalog key>`); the entity id is the
        // user's to rename. A new meter is a new device: its sensors are the newest.
        let ids: Vec<Option<String>> = statistic_keys()
            .map(|key| {
                entities
                    .iter()
                    .filter(|e| {
                        e.platform == "mqtt"
                            && e.entity_id.starts_with("sensor.")
                            && e.unique_id.as_deref().and_then(catalog_key) == Some(key)
                    })
                    .max_by(|a, b| {
                        a.created_at
                            .unwrap_or(0.0)
                            .total_cmp(&b.created_at.unwrap_or(0.0))
                    })
                    .map(|e| e.entity_id.clone())
            })
            .collect();
        let wanted: Vec<&str> = ids.iter().flatten().map(String::as_str).collect();
        if wanted.is_empty() {
            return Ok(vec![None; REGISTERS + COSTS]);
        }
        let metadata = self.metadata(&wanted).await?;
        Ok(ids
            .iter()
            .map(|id| {
                let id = id.as_deref()?;
                metadata
                    .iter()
                    .find(|m| m.statistic_id == id && m.source == "recorder" && m.has_sum)
                    .cloned()
            })
            .collect())
    }

    async fn junction(&mut self, meta: &Metadata) -> Result<Option<Junction>, HaError> {
        HaClient::junction(self, meta).await
    }

    async fn hours(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<StoredRow>, HaError> {
        let id = [meta.statistic_id.as_str()];
        Ok(self
            .rows(&id, from, Some(before), "hour", meta.mark())
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn import(&mut self, meta: &Metadata, rows: &[Row]) -> Result<(), HaError> {
        HaClient::import(self, meta, rows).await
    }

    async fn adjust(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        by: i64,
    ) -> Result<(), HaError> {
        HaClient::adjust(self, meta, from, by).await
    }

    async fn settle(&mut self) -> Result<(), HaError> {
        HaClient::settle(self).await
    }
}

/// The catalog key a unique id of the bridge ends in (`<device id>_<key>`): the longest that
/// fits, since keys end in other keys (`…_price_electricity_delivered_1`).
fn catalog_key(unique_id: &str) -> Option<&'static str> {
    crate::map::catalog::SENSORS
        .iter()
        .map(|s| s.key)
        .filter(|key| {
            unique_id
                .strip_suffix(key)
                .is_some_and(|device| device.len() > 1 && device.ends_with('_'))
        })
        .max_by_key(|key| key.len())
}

/// Pauses after a failed run: from 5 s, doubling, to 5 minutes (jitter on top, seeded here so
/// that bridges restarted together do not retry in step).
fn retry_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(RETRY_FIRST)
        .with_max_delay(RETRY_MAX / 2)
        .with_jitter()
        .with_jitter_seed(fastrand::u64(..))
        .without_max_times()
        .build()
}

/// Imports the archive, then keeps it current until `shutdown`; failures are logged once and
/// retried with backoff, and a rejected token ends the history alone (the live bridge runs on).
pub async fn run(
    config: HistoryConfig,
    archive: ArchiveClient,
    status: StatusReporter,
    shutdown: CancellationToken,
) {
    status.history(true, "starting".to_owned());
    let mut retry = retry_backoff();
    let mut failing: Option<String> = None;
    loop {
        let outcome = tokio::select! {
            outcome = run_once(&config, &archive, &status) => outcome,
            () = shutdown.cancelled() => return,
        };
        let wait = match outcome {
            Ok(summary) => {
                if failing.take().is_some() {
                    info!("history: importing again");
                }
                retry = retry_backoff();
                // A new sensor gets its first statistics within 5 minutes: look again soon.
                if summary.sensors == 0 || summary.waiting > 0 {
                    WAIT_FOR_CORE
                } else {
                    UPDATE_EVERY
                }
            }
            Err(e) if e.is_permanent() => {
                error!(error = %e, "history: stopped; the live values keep flowing");
                status.history(false, format!("stopped: {e}"));
                return;
            }
            Err(e) => {
                let text = error_text(&e);
                let wait = retry.next().unwrap_or(RETRY_MAX);
                if failing.as_deref() != Some(text.as_str()) {
                    warn!(error = %text, retry_in_s = wait.as_secs(), "history: import interrupted; it continues where it stopped");
                } else {
                    debug!(error = %text, "history: still failing");
                }
                status.history(
                    false,
                    format!("interrupted, continues where it stopped: {text}"),
                );
                failing = Some(text);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn run_once(
    config: &HistoryConfig,
    archive: &ArchiveClient,
    status: &StatusReporter,
) -> Result<Summary, HistoryError> {
    let mut ha = HaClient::connect(&config.target).await?;
    let summary = sync(archive, &mut ha, Some(status)).await?;
    let text = match summary.up_to {
        Some(t) => format!(
            "up to date: the archive's last hour imported starts {}",
            hour_of(t)
        ),
        None if summary.sensors == 0 || summary.waiting > 0 => {
            "waiting for Home Assistant's first statistics of the meter's sensors".to_owned()
        }
        None => "up to date: nothing to import".to_owned(),
    };
    status.history(true, text);
    if summary.from_scratch && summary.hours > LOUD_HOURS {
        info!(
            hours = summary.hours,
            filled = summary.filled,
            adjusted = summary.adjusted,
            up_to = %day_of(summary.up_to),
            core = %ha.version_text,
            "history: done"
        );
    } else {
        debug!(
            hours = summary.hours,
            filled = summary.filled,
            adjusted = summary.adjusted,
            waiting = summary.waiting,
            "history: up to date"
        );
    }
    Ok(summary)
}

/// An error with its sources, for the log and the status page.
fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests;
