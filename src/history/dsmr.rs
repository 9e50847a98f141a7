//! History, DSMR-reader side: pages of `statistics/hour` and `statistics/day`, and readings at
//! hour boundaries, filtered and ordered so that DSMR-reader counts and serializes only what is
//! asked for. Spoken through the live poll's client (`source::DsmrHttp`): the same TLS,
//! redirect, timeout and API key rules, and the same error words.
//!
//! Whatever the archive holds, a bad row costs that row, never the import: pages and rows are
//! serde types that accept any JSON value where a decimal or a date belongs, and each row is
//! checked on its own (a plain decimal, a date within `EARLIEST..LATEST`, an amount within the
//! catalog's plausibility limit per hour), with one warning naming what was refused.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use serde::de::IgnoredAny;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};
use tracing::{debug, warn};

use super::ledger::{COSTS, DayStat, HourStat, REGISTERS, utc_hour};
use super::{EARLIEST, LATEST};
use crate::source::DsmrConfig;
use crate::source::{DsmrHttp, SourceError};

/// Hour rows per request: a month and a bit, about 150 KiB of JSON.
pub const HOUR_PAGE: usize = 800;
/// The largest answer read: a page of hours or days with room to spare.
const MAX_BODY: usize = 1024 * 1024;
/// The most hours one listing holds: five years. Callers ask for a month at a time; this
/// bounds what a server that invents rows can make the bridge hold.
const MAX_HOURS_HELD: usize = 5 * 366 * 25;
/// The most pages of days read to get past days a server sends despite `day__gte`: nine years.
const MAX_DAY_PAGES: usize = 100;
/// Distinct bad rows warned about; beyond that they are logged at debug level.
const WARNED_ROWS: usize = 256;

const HOURS: &str = "statistics/hour";
const DAYS: &str = "statistics/day";
const READINGS: &str = "datalogger/dsmrreading";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// As the live poll words it: a key, a login proxy, a redirect, a timeout, a status.
    #[error("cannot read DSMR-reader's {path}")]
    Request {
        path: &'static str,
        #[source]
        source: SourceError,
    },
    #[error(
        "DSMR-reader has no api/v2/{path} (404): check that dsmr_reader_url points at DSMR-reader 4.x or 5.x"
    )]
    NotFound { path: &'static str },
    #[error("DSMR-reader's {path} sent something that is not its JSON")]
    NotJson {
        path: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl ArchiveError {
    /// Whether only the user can fix it (a key, a setting, an address).
    pub fn needs_user(&self) -> bool {
        match self {
            ArchiveError::Request { source, .. } => source.needs_user(),
            ArchiveError::NotFound { .. } => true,
            ArchiveError::NotJson { .. } => false,
        }
    }
}

/// Why a row was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("{field} is missing")]
    Missing { field: &'static str },
    #[error("{field} is not a decimal with at most {places} places")]
    NotDecimal { field: &'static str, places: u32 },
    #[error("{field} is not a time with an offset")]
    NotTime { field: &'static str },
    #[error("{field} is not a date")]
    NotDate { field: &'static str },
    #[error("{field} lies outside 1990–2200")]
    OutOfRange { field: &'static str },
    #[error("{field} lies outside the range asked for")]
    Elsewhere { field: &'static str },
    #[error("{field} is negative")]
    Negative { field: &'static str },
    #[error(
        "{field} is {}, more than a home consumes in that time ({})",
        Thousandths(*amount),
        Thousandths(*limit)
    )]
    Implausible {
        field: &'static str,
        amount: i64,
        limit: i64,
    },
}

/// Thousandths as DSMR-reader writes them: `1234567` → `1234.567`.
struct Thousandths(i64);

impl std::fmt::Display for Thousandths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:03}", abs / 1_000, abs % 1_000)
    }
}

#[derive(Clone)]
pub struct ArchiveClient {
    http: DsmrHttp,
    requests: Arc<AtomicU64>,
    /// Rows (and page problems) already warned about, so each is said once.
    warned: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for ArchiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveClient")
            .field("api", &self.http.api_for_logs().as_str())
            .finish_non_exhaustive()
    }
}

/// One page of a DRF list.
#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(default)]
    count: Option<u64>,
    results: Vec<T>,
}

/// A value as sent where DSMR-reader sends a decimal or a date (as a string): anything else is
/// kept, to be refused with its row rather than failing the page.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Raw {
    Text(String),
    Number(serde_json::Number),
    Other(IgnoredAny),
}

impl Raw {
    fn text(&self) -> Option<&str> {
        match self {
            Raw::Text(text) => Some(text),
            _ => None,
        }
    }

    /// For the log: the value, cut short.
    fn shown(&self) -> String {
        let text = match self {
            Raw::Text(text) => text.clone(),
            Raw::Number(n) => n.to_string(),
            Raw::Other(_) => "(not a string)".to_owned(),
        };
        text.chars().take(40).collect()
    }
}

/// An amount in units of 10^-`places`; `None` where the row has none (null).
fn amount(raw: &Option<Raw>, field: &'static str, places: u32) -> Result<Option<i64>, RowError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let scaled = match raw {
        Raw::Text(text) => decimal(text, places),
        Raw::Number(n) => decimal(&n.to_string(), places),
        Raw::Other(_) => None,
    };
    scaled
        .map(Some)
        .ok_or(RowError::NotDecimal { field, places })
}

/// A consumption in thousandths: present (null counts as 0), not negative, and within the
/// catalog's plausibility limit for `hours` hours.
fn consumption(
    raw: &Option<Raw>,
    field: &'static str,
    register: usize,
    hours: i64,
) -> Result<i64, RowError> {
    let value = amount(raw, field, 3)?.unwrap_or(0);
    if value < 0 {
        return Err(RowError::Negative { field });
    }
    let limit = REGISTER_LIMITS[register].saturating_mul(hours);
    if value > limit {
        return Err(RowError::Implausible {
            field,
            amount: value,
            limit,
        });
    }
    Ok(value)
}

fn time_field(raw: &Option<Raw>, field: &'static str) -> Result<Option<OffsetDateTime>, RowError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let t = raw
        .text()
        .and_then(|text| OffsetDateTime::parse(text.trim(), &Rfc3339).ok())
        .ok_or(RowError::NotTime { field })?;
    let utc = t
        .checked_to_offset(UtcOffset::UTC)
        .ok_or(RowError::OutOfRange { field })?;
    if !(EARLIEST..LATEST).contains(&utc.date()) {
        return Err(RowError::OutOfRange { field });
    }
    Ok(Some(t))
}

/// The catalog's largest plausible rise per hour of each register (ledger order), in
/// thousandths: the live path's limits, applied to the archive.
static REGISTER_LIMITS: std::sync::LazyLock<[i64; REGISTERS]> = std::sync::LazyLock::new(|| {
    READING_FIELDS.map(|field| {
        crate::map::catalog::SENSORS
            .iter()
            .find(|s| s.field == field && s.register_max_per_hour.is_some())
            .and_then(|s| s.register_max_per_hour)
            .map_or(i64::MAX, |max| (max * 1_000.0).round() as i64)
    })
});

/// The live reading's register fields, in the order of the hour statistics.
const READING_FIELDS: [&str; REGISTERS] = [
    "electricity_delivered_1",
    "electricity_delivered_2",
    "electricity_returned_1",
    "electricity_returned_2",
    "extra_device_delivered",
];

/// A `statistics/hour` row.
#[derive(Debug, Deserialize)]
struct HourRow {
    #[serde(default)]
    id: Option<Raw>,
    #[serde(default)]
    hour_start: Option<Raw>,
    #[serde(default)]
    electricity1: Option<Raw>,
    #[serde(default)]
    electricity2: Option<Raw>,
    #[serde(default)]
    electricity1_returned: Option<Raw>,
    #[serde(default)]
    electricity2_returned: Option<Raw>,
    #[serde(default)]
    gas: Option<Raw>,
}

impl HourRow {
    fn name(&self) -> String {
        match (&self.hour_start, &self.id) {
            (Some(t), _) => t.shown(),
            (None, Some(id)) => format!("id {}", id.shown()),
            (None, None) => "(no hour_start)".to_owned(),
        }
    }

    fn stat(&self) -> Result<HourStat, RowError> {
        let start = time_field(&self.hour_start, "hour_start")?.ok_or(RowError::Missing {
            field: "hour_start",
        })?;
        let fields = [
            ("electricity1", &self.electricity1),
            ("electricity2", &self.electricity2),
            ("electricity1_returned", &self.electricity1_returned),
            ("electricity2_returned", &self.electricity2_returned),
            ("gas", &self.gas),
        ];
        let mut values = [0; REGISTERS];
        for (register, (value, (field, raw))) in values.iter_mut().zip(fields).enumerate() {
            *value = consumption(raw, field, register, 1)?;
        }
        Ok(HourStat {
            start: utc_hour(start),
            day: start.date(),
            values,
        })
    }
}

/// A `statistics/day` row.
#[derive(Debug, Deserialize)]
struct DayRow {
    #[serde(default)]
    day: Option<Raw>,
    #[serde(default)]
    electricity1: Option<Raw>,
    #[serde(default)]
    electricity2: Option<Raw>,
    #[serde(default)]
    electricity1_returned: Option<Raw>,
    #[serde(default)]
    electricity2_returned: Option<Raw>,
    #[serde(default)]
    gas: Option<Raw>,
    #[serde(default)]
    electricity1_cost: Option<Raw>,
    #[serde(default)]
    electricity2_cost: Option<Raw>,
    #[serde(default)]
    gas_cost: Option<Raw>,
    #[serde(default)]
    fixed_cost: Option<Raw>,
    #[serde(default)]
    total_cost: Option<Raw>,
    #[serde(default)]
    electricity_reading_timestamp: Option<Raw>,
    #[serde(default)]
    electricity1_reading: Option<Raw>,
    #[serde(default)]
    electricity2_reading: Option<Raw>,
    #[serde(default)]
    electricity1_returned_reading: Option<Raw>,
    #[serde(default)]
    electricity2_returned_reading: Option<Raw>,
    #[serde(default)]
    gas_reading: Option<Raw>,
}

/// The longest local day: its consumption may be 25 hours' worth.
const DAY_HOURS: i64 = 25;

impl DayRow {
    fn name(&self) -> String {
        self.day
            .as_ref()
            .map_or_else(|| "(no day)".to_owned(), Raw::shown)
    }

    fn stat(&self) -> Result<DayStat, RowError> {
        let text = self
            .day
            .as_ref()
            .ok_or(RowError::Missing { field: "day" })?
            .text()
            .ok_or(RowError::NotDate { field: "day" })?;
        let day = Date::parse(text.trim(), format_description!("[year]-[month]-[day]"))
            .map_err(|_| RowError::NotDate { field: "day" })?;
        if !(EARLIEST..LATEST).contains(&day) {
            return Err(RowError::OutOfRange { field: "day" });
        }
        // The first reading of the day carries the day's UTC offset (DST changes at 02:00 or
        // 03:00, never at midnight); without readings Central European time is the best guess.
        let offset = time_field(
            &self.electricity_reading_timestamp,
            "electricity_reading_timestamp",
        )?
        .map_or(
            UtcOffset::from_hms(1, 0, 0).unwrap_or(UtcOffset::UTC),
            |t| t.offset(),
        );
        let start = day
            .midnight()
            .assume_offset(offset)
            .checked_to_offset(UtcOffset::UTC)
            .ok_or(RowError::OutOfRange { field: "day" })?;
        let consumed = [
            ("electricity1", &self.electricity1),
            ("electricity2", &self.electricity2),
            ("electricity1_returned", &self.electricity1_returned),
            ("electricity2_returned", &self.electricity2_returned),
            ("gas", &self.gas),
        ];
        let mut consumption_values = [0; REGISTERS];
        for (register, (value, (field, raw))) in
            consumption_values.iter_mut().zip(consumed).enumerate()
        {
            *value = consumption(raw, field, register, DAY_HOURS)?;
        }
        let readings = [
            ("electricity1_reading", &self.electricity1_reading),
            ("electricity2_reading", &self.electricity2_reading),
            (
                "electricity1_returned_reading",
                &self.electricity1_returned_reading,
            ),
            (
                "electricity2_returned_reading",
                &self.electricity2_returned_reading,
            ),
            ("gas_reading", &self.gas_reading),
        ];
        let mut registers = [None; REGISTERS];
        for (value, (field, raw)) in registers.iter_mut().zip(readings) {
            *value = amount(raw, field, 3)?;
            if value.is_some_and(|v| v < 0) {
                return Err(RowError::Negative { field });
            }
        }
        // In the ledger's order of costs, the catalog's (a test holds them together).
        let priced = [
            ("electricity1_cost", &self.electricity1_cost),
            ("electricity2_cost", &self.electricity2_cost),
            ("fixed_cost", &self.fixed_cost),
            ("total_cost", &self.total_cost),
            ("gas_cost", &self.gas_cost),
        ];
        let mut costs = [None; COSTS];
        for (value, (field, raw)) in costs.iter_mut().zip(priced) {
            *value = amount(raw, field, 2)?;
        }
        Ok(DayStat {
            day,
            start,
            consumption: consumption_values,
            registers,
            costs,
        })
    }
}

/// The registers of a `datalogger/dsmrreading` row.
#[derive(Debug, Deserialize)]
struct ReadingRow {
    #[serde(default)]
    timestamp: Option<Raw>,
    #[serde(default)]
    electricity_delivered_1: Option<Raw>,
    #[serde(default)]
    electricity_delivered_2: Option<Raw>,
    #[serde(default)]
    electricity_returned_1: Option<Raw>,
    #[serde(default)]
    electricity_returned_2: Option<Raw>,
    #[serde(default)]
    extra_device_delivered: Option<Raw>,
}

impl ReadingRow {
    fn name(&self) -> String {
        self.timestamp
            .as_ref()
            .map_or_else(|| "(no timestamp)".to_owned(), Raw::shown)
    }

    /// In the order of the hour statistics, in thousandths; refused unless stamped within
    /// `window` (a server that ignores the filter sends any reading).
    fn registers(
        &self,
        window: &std::ops::Range<OffsetDateTime>,
    ) -> Result<[Option<i64>; REGISTERS], RowError> {
        let at = time_field(&self.timestamp, "timestamp")?
            .ok_or(RowError::Missing { field: "timestamp" })?;
        if !window.contains(&at) {
            return Err(RowError::Elsewhere { field: "timestamp" });
        }
        let raws = [
            &self.electricity_delivered_1,
            &self.electricity_delivered_2,
            &self.electricity_returned_1,
            &self.electricity_returned_2,
            &self.extra_device_delivered,
        ];
        let mut registers = [None; REGISTERS];
        for ((value, raw), field) in registers.iter_mut().zip(raws).zip(READING_FIELDS) {
            *value = amount(raw, field, 3)?;
            if value.is_some_and(|v| v < 0) {
                return Err(RowError::Negative { field });
            }
        }
        Ok(registers)
    }
}

impl ArchiveClient {
    pub fn new(config: &DsmrConfig) -> Result<Self, ArchiveError> {
        let http = DsmrHttp::new(config).map_err(|source| ArchiveError::Request {
            path: "api/v2",
            source,
        })?;
        Ok(Self {
            http,
            requests: Arc::new(AtomicU64::new(0)),
            warned: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        path: &'static str,
        query: &[(&str, String)],
    ) -> Result<Page<T>, ArchiveError> {
        let request = |source| ArchiveError::Request { path, source };
        let mut url = self.http.url(path).map_err(request)?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        self.requests.fetch_add(1, Ordering::Relaxed);
        let answer = self.http.get(url, MAX_BODY).await.map_err(request)?;
        if !(200..300).contains(&answer.status) {
            return Err(
                match SourceError::from_answer(answer.status, &answer.body, answer.retry_after) {
                    Some(source) => request(source),
                    None => ArchiveError::NotFound { path },
                },
            );
        }
        serde_json::from_slice(&answer.body)
            .map_err(|source| ArchiveError::NotJson { path, source })
    }

    /// Says once (per row, or per kind of page problem) what was refused or noticed.
    fn warn_once(&self, key: String, say: impl FnOnce(bool)) {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        let first = warned.len() < WARNED_ROWS && warned.insert(key);
        drop(warned);
        say(first);
    }

    fn refuse(&self, path: &'static str, row: String, error: &RowError) {
        self.warn_once(format!("{path} {row}"), |first| {
            if first {
                warn!(endpoint = path, row = %row, error = %error, "archive row refused; the import goes on without it");
            } else {
                debug!(endpoint = path, row = %row, error = %error, "archive row refused again");
            }
        });
    }

    /// Hours archived in `[from, before)` (from the start, to the end when `None`), as many as
    /// `limit`, sorted by start; refused rows are warned about and left out. Also the page's
    /// `count` and how many rows it held.
    async fn hour_page(
        &self,
        from: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<(u64, usize, bool, Vec<HourStat>), ArchiveError> {
        let mut query = vec![
            ("ordering", "hour_start".to_owned()),
            ("limit", limit.to_string()),
        ];
        if let Some(from) = from {
            query.push(("hour_start__gte", filter_time(from)));
        }
        if let Some(before) = before {
            let last = before.checked_sub(time::Duration::SECOND).unwrap_or(before);
            query.push(("hour_start__lte", filter_time(last)));
        }
        let page: Page<HourRow> = self.page(HOURS, &query).await?;
        let sent = page.results.len();
        let mut rows: Vec<HourStat> = page
            .results
            .iter()
            .filter_map(|row| {
                row.stat()
                    .inspect_err(|e| self.refuse(HOURS, row.name(), e))
                    .ok()
            })
            .collect();
        // Asked in order; a server that answers otherwise is put in order, page by page.
        let ordered = rows.windows(2).all(|w| w[0].start <= w[1].start);
        rows.sort_by_key(|h| h.start);
        Ok((page.count.unwrap_or(0), sent, ordered, rows))
    }

    /// How many hours are archived at or after `from`.
    pub async fn hour_count(&self, from: Option<OffsetDateTime>) -> Result<u64, ArchiveError> {
        Ok(self.hour_page(from, None, 1).await?.0)
    }

    /// Every hour in `[from, before)`, in pages of `HOUR_PAGE`, oldest first, each start once.
    /// A page that does not move past the last hour (a server that ignores the filter) ends
    /// the listing with a warning; rows outside the range asked for are left out, so what is
    /// held is at most the range asked for (callers ask for a month at a time). A page served
    /// out of order is sorted; a full one ends the listing with a warning, since it may have
    /// skipped older hours.
    pub async fn hours(
        &self,
        from: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
    ) -> Result<Vec<HourStat>, ArchiveError> {
        let mut hours: Vec<HourStat> = Vec::new();
        loop {
            // Paging by the last start, not by offset: rows DSMR-reader adds meanwhile cannot
            // shift a page.
            let after = hours.last().map(|h| h.start + time::Duration::SECOND);
            let (_, sent, ordered, page) =
                self.hour_page(after.or(from), before, HOUR_PAGE).await?;
            if !ordered && sent == HOUR_PAGE {
                // A full page out of order may have left older hours for no later page.
                self.warn_once(format!("{HOURS} out of order"), |first| {
                    if first {
                        warn!(
                            endpoint = HOURS,
                            from = ?after.or(from),
                            "DSMR-reader does not order hours by hour_start as asked; the import takes the hours before this page"
                        );
                    }
                });
                return Ok(hours);
            }
            let known = hours.len();
            hours.extend(page.into_iter().filter(|h| {
                after.or(from).is_none_or(|a| h.start >= a) && before.is_none_or(|b| h.start < b)
            }));
            hours.dedup_by_key(|h| h.start);
            if sent < HOUR_PAGE {
                return Ok(hours);
            }
            if hours.len() >= MAX_HOURS_HELD {
                hours.truncate(MAX_HOURS_HELD);
                warn!(
                    endpoint = HOURS,
                    held = hours.len(),
                    "more hours than any archive holds in one listing; the import takes these"
                );
                return Ok(hours);
            }
            if hours.len() == known {
                self.warn_once(format!("{HOURS} no progress"), |first| {
                    if first {
                        warn!(
                            endpoint = HOURS,
                            from = ?after.or(from),
                            "DSMR-reader answered a full page without a newer hour (does it ignore hour_start__gte?); the import takes what it has"
                        );
                    }
                });
                return Ok(hours);
            }
        }
    }

    /// Up to `limit` day rows from `from` on (all days when `None`), oldest first. Where
    /// DSMR-reader ignores `day__gte` (rows before `from` come back), the days are paged from
    /// the start by offset, and if that does not get past `from` either, what is missing
    /// (costs included) is said.
    pub async fn days(
        &self,
        from: Option<Date>,
        limit: usize,
    ) -> Result<Vec<DayStat>, ArchiveError> {
        let limit = limit.max(1);
        let mut days: Vec<DayStat> = Vec::new();
        let mut offset = 0;
        let mut last_seen: Option<Date> = None;
        for _ in 0..MAX_DAY_PAGES {
            let mut query = vec![("ordering", "day".to_owned()), ("limit", limit.to_string())];
            if let Some(from) = from {
                query.push(("day__gte", date_text(from)));
            }
            if offset > 0 {
                query.push(("offset", offset.to_string()));
            }
            let page: Page<DayRow> = self.page(DAYS, &query).await?;
            let sent = page.results.len();
            let mut rows: Vec<DayStat> = page
                .results
                .iter()
                .filter_map(|row| {
                    row.stat()
                        .inspect_err(|e| self.refuse(DAYS, row.name(), e))
                        .ok()
                })
                .collect();
            rows.sort_by_key(|d| d.day);
            let newest = rows.last().map(|d| d.day);
            let early = rows
                .iter()
                .filter(|d| from.is_some_and(|f| d.day < f))
                .count();
            days.extend(rows.into_iter().filter(|d| {
                from.is_none_or(|f| d.day >= f) && last_seen.is_none_or(|l| d.day > l)
            }));
            days.dedup_by_key(|d| d.day);
            if early == 0 || days.len() >= limit || sent < limit {
                days.truncate(limit);
                return Ok(days);
            }
            // `day__gte` was ignored: page on from the start.
            let progressed = newest.is_some_and(|n| last_seen.is_none_or(|l| n > l));
            self.warn_once(format!("{DAYS} day__gte ignored"), |first| {
                if first {
                    warn!(
                        endpoint = DAYS,
                        from = ?from,
                        "DSMR-reader sent days before the one asked for (does it ignore day__gte?); paging through its days instead"
                    );
                }
            });
            if !progressed {
                self.warn_once(format!("{DAYS} no progress"), |first| {
                    if first {
                        warn!(
                            endpoint = DAYS,
                            from = ?from,
                            "DSMR-reader answers the same days again; the days from this one on, and their costs, are missing from the import"
                        );
                    }
                });
                return Ok(days);
            }
            last_seen = newest.max(last_seen);
            offset += sent;
        }
        warn!(
            endpoint = DAYS,
            from = ?from,
            "DSMR-reader kept sending days before the one asked for; the days from this one on, and their costs, are missing from the import"
        );
        Ok(days)
    }

    /// The newest day row, which tells whether there is a gas meter.
    pub async fn latest_day(&self) -> Result<Option<DayStat>, ArchiveError> {
        let query = [("ordering", "-day".to_owned()), ("limit", "1".to_owned())];
        let page: Page<DayRow> = self.page(DAYS, &query).await?;
        Ok(page.results.iter().find_map(|row| {
            row.stat()
                .inspect_err(|e| self.refuse(DAYS, row.name(), e))
                .ok()
        }))
    }

    /// The registers (in thousandths, in the order of the hour statistics) of the first
    /// reading at or after each of `at`, within the hour that follows it; `None` where that hour
    /// has no reading (or only a refused one). One small request per boundary: filtered on both
    /// sides so that DSMR-reader counts at most an hour of readings, ordered, one row.
    pub async fn readings_at(
        &self,
        at: &[OffsetDateTime],
    ) -> Result<Vec<Option<[Option<i64>; REGISTERS]>>, ArchiveError> {
        let mut out = Vec::with_capacity(at.len());
        for &t in at {
            let Some(end) = t.checked_add(time::Duration::HOUR) else {
                out.push(None);
                continue;
            };
            let query = [
                ("ordering", "timestamp".to_owned()),
                ("limit", "1".to_owned()),
                ("timestamp__gte", filter_time(t)),
                ("timestamp__lte", filter_time(end - time::Duration::SECOND)),
            ];
            let page: Page<ReadingRow> = self.page(READINGS, &query).await?;
            let window = t..end;
            out.push(page.results.first().and_then(|row| {
                row.registers(&window)
                    .inspect_err(|e| self.refuse(READINGS, row.name(), e))
                    .ok()
            }));
        }
        Ok(out)
    }
}

/// With its offset, so that DSMR-reader never has to guess in the repeated autumn hour.
fn filter_time(t: OffsetDateTime) -> String {
    t.checked_to_offset(UtcOffset::UTC)
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn date_text(d: Date) -> String {
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// `"37549.080"` → 37_549_080 thousandths (`"2.07"` → 207 hundredths with `places` 2), exactly.
pub fn decimal(text: &str, places: u32) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > places as usize
    {
        return None;
    }
    let scale = 10_i64.checked_pow(places)?;
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i64>().ok()? * 10_i64.pow(places - fraction.len() as u32)
    };
    let value = whole.checked_mul(scale)?.checked_add(fraction)?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use dsmr_sim::{ArchiveNow, HistoryOptions, SimOptions, Simulator};
    use secrecy::SecretString;
    use time::macros::{date, datetime};

    use super::*;

    const KEY: &str = "history-key";

    async fn simulator(history: HistoryOptions) -> Simulator {
        let sim = Simulator::start(SimOptions {
            api_key: KEY.to_owned(),
            start: datetime!(2026-11-26 14:02:14 +1),
            ..SimOptions::default()
        })
        .await
        .expect("simulator");
        sim.pause_clock(true);
        sim.set_history(history);
        sim
    }

    fn client(sim: &Simulator) -> ArchiveClient {
        ArchiveClient::new(&DsmrConfig {
            url: sim.url(),
            api_key: SecretString::from(KEY),
            ca_pem: None,
            poll_interval: std::time::Duration::from_secs(5),
        })
        .expect("client")
    }

    fn client_at(url: url::Url, poll_s: u64) -> ArchiveClient {
        ArchiveClient::new(&DsmrConfig {
            url,
            api_key: SecretString::from(KEY),
            ca_pem: None,
            poll_interval: std::time::Duration::from_secs(poll_s),
        })
        .expect("client")
    }

    fn words(e: &ArchiveError) -> String {
        crate::source::in_words(e)
    }

    /// Behind a login proxy (credentials in the URL, sent as `Authorization: Basic`) the key
    /// goes in `X-AUTHKEY`, as the live poll sends it.
    #[tokio::test]
    async fn credentials_in_the_url_send_the_key_as_x_authkey() {
        let sim = simulator(HistoryOptions {
            first_day: date!(2026 - 11 - 20),
            days: 2,
            ..HistoryOptions::default()
        })
        .await;
        let mut url = sim.url();
        url.set_username("proxy-user").expect("user");
        url.set_password(Some("proxy-pass")).expect("password");
        let count = client_at(url, 5).hour_count(None).await.expect("accepted");
        assert_eq!(count, 48);
    }

    /// A redirect to another origin is not followed, and the error says why; a wrong key says
    /// which option; a server that does not answer runs into the config's timeout.
    #[tokio::test]
    async fn errors_are_the_live_poll_s_with_their_source() {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(
                wiremock::ResponseTemplate::new(302)
                    .insert_header("location", "http://elsewhere.invalid/api/v2/statistics/day"),
            )
            .mount(&server)
            .await;
        let url = url::Url::parse(&format!("{}/", server.uri())).expect("url");
        let error = client_at(url, 5)
            .days(None, 1)
            .await
            .expect_err("not followed");
        assert!(
            matches!(
                &error,
                ArchiveError::Request {
                    source: SourceError::Redirect(_),
                    ..
                }
            ),
            "{error:?}"
        );
        let text = words(&error);
        assert!(text.starts_with("cannot read DSMR-reader's statistics/day: request to DSMR-reader failed: redirected to another host"), "{text}");
        assert!(error.needs_user());

        let sim = simulator(HistoryOptions::default()).await;
        sim.set_fault(Some(dsmr_sim::Fault::InvalidKey));
        let error = client(&sim).latest_day().await.expect_err("refused");
        assert!(
            words(&error).contains("dsmr_reader_api_key"),
            "{}",
            words(&error)
        );
        sim.set_fault(Some(dsmr_sim::Fault::Status(502)));
        let error = client(&sim).hour_count(None).await.expect_err("502");
        assert!(
            words(&error).ends_with("DSMR-reader answered HTTP 502"),
            "{}",
            words(&error)
        );
        sim.set_fault(Some(dsmr_sim::Fault::Hang));
        let error = client_at(sim.url(), 1)
            .hour_count(None)
            .await
            .expect_err("timeout");
        assert!(
            matches!(
                &error,
                ArchiveError::Request {
                    source: SourceError::Timeout(_),
                    ..
                }
            ),
            "{error:?}"
        );
        sim.set_fault(None);
    }

    /// Warnings and errors logged on this thread until the guard goes.
    fn capture() -> (
        crate::web::recent::RecentLog,
        tracing::subscriber::DefaultGuard,
    ) {
        use tracing_subscriber::layer::SubscriberExt;
        let log = crate::web::recent::RecentLog::new();
        let subscriber =
            tracing_subscriber::registry().with(log.layer(crate::secrets::Redactor::default()));
        let guard = tracing::subscriber::set_default(subscriber);
        (log, guard)
    }

    fn warnings(log: &crate::web::recent::RecentLog, containing: &str) -> Vec<String> {
        log.entries()
            .into_iter()
            .map(|e| e.text)
            .filter(|t| t.contains(containing))
            .collect()
    }

    async fn hostile(days: u32, hostile: dsmr_sim::Hostile) -> Simulator {
        simulator(HistoryOptions {
            first_day: date!(2026 - 09 - 01),
            days,
            hostile,
            ..HistoryOptions::default()
        })
        .await
    }

    fn hour(day: u8, h: i64) -> OffsetDateTime {
        date!(2026 - 09 - 01)
            .replace_day(day)
            .expect("a day of September")
            .midnight()
            .assume_offset(UtcOffset::from_hms(2, 0, 0).expect("CEST"))
            + time::Duration::hours(h)
    }

    /// Dates no meter has (years 9999 and -9999, whose UTC lies outside any date type) are
    /// refused as bad rows, named once in the log; the rest imports, nothing panics.
    #[tokio::test]
    async fn out_of_range_dates_are_bad_rows() {
        let sim = hostile(
            3,
            dsmr_sim::Hostile {
                hour_values: vec![(
                    hour(2, 10),
                    "hour_start",
                    "9999-12-31T23:00:00-01:00".into(),
                )],
                day_values: vec![(date!(2026 - 09 - 02), "day", "-9999-01-01".into())],
                ..Default::default()
            },
        )
        .await;
        let (log, _guard) = capture();
        let client = client(&sim);
        for _ in 0..2 {
            let hours = client.hours(None, None).await.expect("hours");
            assert_eq!(hours.len(), 3 * 24 - 1);
            assert!(hours.iter().all(|h| h.start.year() == 2026));
            let days = client.days(None, 10).await.expect("days");
            assert_eq!(
                days.iter().map(|d| d.day).collect::<Vec<_>>(),
                [date!(2026 - 09 - 01), date!(2026 - 09 - 03)]
            );
        }
        let refused = warnings(&log, "archive row refused");
        assert_eq!(refused.len(), 2, "once each: {refused:?}");
        assert!(
            refused[0].contains("9999-12-31T23:00:00-01:00")
                && refused[0].contains("hour_start lies outside"),
            "{refused:?}"
        );
        assert!(refused[1].contains("-9999-01-01"), "{refused:?}");
    }

    /// Each malformed value costs its row, warned once, never the import.
    #[tokio::test]
    async fn a_malformed_value_costs_its_row() {
        let bad: [(&str, serde_json::Value); 8] = [
            ("gas", "0.0005".into()),
            ("electricity1", "NaN".into()),
            ("electricity2", "Infinity".into()),
            ("electricity1", "1e308".into()),
            ("electricity1_returned", "12345678901234567890".into()),
            ("electricity2_returned", "abc".into()),
            ("gas", true.into()),
            ("electricity1", serde_json::json!({"a": 1})),
        ];
        let hostile_values = bad
            .iter()
            .enumerate()
            .map(|(i, (field, value))| (hour(1, i as i64 + 3), *field, value.clone()))
            .collect();
        let sim = hostile(
            2,
            dsmr_sim::Hostile {
                hour_values: hostile_values,
                day_values: vec![(date!(2026 - 09 - 02), "electricity1_cost", "1.234".into())],
                ..Default::default()
            },
        )
        .await;
        let (log, _guard) = capture();
        let client = client(&sim);
        for _ in 0..2 {
            assert_eq!(
                client.hours(None, None).await.expect("hours").len(),
                48 - bad.len()
            );
            assert_eq!(client.days(None, 5).await.expect("days").len(), 1);
        }
        let refused = warnings(&log, "archive row refused");
        assert_eq!(refused.len(), bad.len() + 1, "{refused:?}");
        assert!(
            refused
                .iter()
                .any(|w| w.contains("electricity1_cost is not a decimal with at most 2 places")),
            "{refused:?}"
        );
    }

    /// Rows served newest first are put in order: the sums built on them never fall.
    #[tokio::test]
    async fn rows_out_of_order_are_sorted_or_refused() {
        let sim = hostile(
            30,
            dsmr_sim::Hostile {
                descending: true,
                ..Default::default()
            },
        )
        .await;
        let (log, _guard) = capture();
        let client = client(&sim);
        let month = client
            .hours(Some(hour(1, 0)), Some(hour(30, 24)))
            .await
            .expect("hours");
        assert_eq!(month.len(), 30 * 24);
        assert!(month.windows(2).all(|w| w[0].start < w[1].start));
        let days = client.days(None, 31).await.expect("days");
        assert!(days.windows(2).all(|w| w[0].day < w[1].day));
        // Forty days do not fit a page: a full page out of order is not trusted to page on.
        let sim = hostile(
            40,
            dsmr_sim::Hostile {
                descending: true,
                ..Default::default()
            },
        )
        .await;
        let hours = client_at(sim.url(), 5)
            .hours(None, None)
            .await
            .expect("hours");
        assert!(hours.is_empty(), "{}", hours.len());
        assert_eq!(warnings(&log, "does not order hours").len(), 1);
    }

    /// A server that ignores the filters: the listing stops after a page without progress,
    /// holding only the hours asked for, with one warning; the days are paged by offset so no
    /// day (nor its costs) goes missing unsaid.
    #[tokio::test]
    async fn ignored_filters_stop_paging_and_missing_days_are_said() {
        let sim = hostile(
            60,
            dsmr_sim::Hostile {
                ignore_filters: true,
                ..Default::default()
            },
        )
        .await;
        let (log, _guard) = capture();
        let client = client(&sim);
        let from = hour(10, 0);
        let before = from + time::Duration::days(31);
        let hours = client.hours(Some(from), Some(before)).await.expect("hours");
        assert!(!hours.is_empty());
        assert!(hours.iter().all(|h| h.start >= from && h.start < before));
        assert!(hours.windows(2).all(|w| w[0].start < w[1].start));
        assert_eq!(
            sim.requests("/api/v2/statistics/hour"),
            2,
            "one page more, then stop"
        );
        assert_eq!(warnings(&log, "without a newer hour").len(), 1);

        let days = client
            .days(Some(date!(2026 - 10 - 10)), 32)
            .await
            .expect("days");
        assert_eq!(days.first().map(|d| d.day), Some(date!(2026 - 10 - 10)));
        assert_eq!(days.len(), 21, "10 to 30 October");
        assert!(days.iter().all(|d| d.costs[0].is_some()));
        assert_eq!(sim.requests("/api/v2/statistics/day"), 2);
        assert_eq!(warnings(&log, "ignore day__gte").len(), 1);
    }

    /// A reading from outside the hour asked for (a server that ignores `timestamp__gte`)
    /// is not taken for the register at the boundary.
    #[tokio::test]
    async fn a_reading_outside_the_hour_asked_for_is_refused() {
        let sim = hostile(
            3,
            dsmr_sim::Hostile {
                ignore_filters: true,
                ..Default::default()
            },
        )
        .await;
        let (log, _guard) = capture();
        let at = [hour(2, 10), hour(3, 10)];
        let readings = client(&sim).readings_at(&at).await.expect("readings");
        assert_eq!(readings, [None, None]);
        let refused = warnings(&log, "timestamp lies outside the range asked for");
        assert_eq!(
            refused.len(),
            1,
            "the same first reading both times: {refused:?}"
        );
    }

    /// The live path's plausibility limits (the catalog's, one table) hold back an hour or a
    /// day no household consumes, and the log says what.
    #[tokio::test]
    async fn the_register_guard_holds_back_implausible_rows() {
        let sim = hostile(
            2,
            dsmr_sim::Hostile {
                hour_values: vec![(hour(1, 5), "electricity1", "1000000.000".into())],
                day_values: vec![(date!(2026 - 09 - 02), "gas", "1000.000".into())],
                ..Default::default()
            },
        )
        .await;
        let (log, _guard) = capture();
        let client = client(&sim);
        assert_eq!(client.hours(None, None).await.expect("hours").len(), 47);
        assert_eq!(client.days(None, 5).await.expect("days").len(), 1);
        let refused = warnings(&log, "archive row refused");
        assert!(
            refused.iter().any(|w| w.contains(
                "electricity1 is 1000000.000, more than a home consumes in that time (100.000)"
            )),
            "{refused:?}"
        );
        assert!(
            refused
                .iter()
                .any(|w| w
                    .contains("gas is 1000.000, more than a home consumes in that time (625.000)")),
            "{refused:?}"
        );
    }

    /// A date DSMR-reader might send, or nearly: any year, month, day, time and offset, as
    /// text of the shape `parse` expects, or any text at all.
    fn date_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            (
                -9999_i32..=9999,
                0_u8..=13,
                0_u8..=32,
                0_u8..=25,
                -25_i8..=25,
                0_u8..=60
            )
                .prop_map(|(y, mo, d, h, oh, om)| {
                    let sign = if oh < 0 { '-' } else { '+' };
                    format!(
                        "{y:04}-{mo:02}-{d:02}T{h:02}:00:00{sign}{:02}:{om:02}",
                        oh.unsigned_abs()
                    )
                }),
            (-9999_i32..=9999, 0_u8..=13, 0_u8..=32)
                .prop_map(|(y, mo, d)| format!("{y:04}-{mo:02}-{d:02}")),
            ".{0,40}",
        ]
    }

    /// Any JSON where an amount or a date belongs.
    fn any_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        prop_oneof![
            date_like().prop_map(serde_json::Value::from),
            "-?[0-9]{0,22}(\\.[0-9]{0,6})?".prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ]
    }

    proptest::proptest! {
        /// No row panics, whatever its fields hold; a row taken has a start within the range,
        /// amounts not below 0 and within the catalog's limits.
        #[test]
        fn no_row_panics(
            start in date_like(),
            day in date_like(),
            values in proptest::collection::vec(any_value(), 18),
        ) {
            let fields = [
                "electricity1", "electricity2", "electricity1_returned", "electricity2_returned",
                "gas", "electricity1_cost", "electricity2_cost", "gas_cost", "fixed_cost",
                "total_cost", "electricity_reading_timestamp", "electricity1_reading", "electricity2_reading",
                "electricity1_returned_reading", "electricity2_returned_reading", "gas_reading",
                "extra_device_delivered", "timestamp",
            ];
            let mut row = serde_json::Map::new();
            row.insert("hour_start".into(), start.into());
            row.insert("day".into(), day.into());
            for (field, value) in fields.iter().zip(values) {
                row.insert((*field).into(), value);
            }
            let page = serde_json::json!({"count": 1, "results": [row]}).to_string();
            let hours: Page<HourRow> = serde_json::from_str(&page).expect("a page of any rows");
            if let Ok(hour) = hours.results[0].stat() {
                proptest::prop_assert!((EARLIEST..LATEST).contains(&hour.start.date()));
                for (value, limit) in hour.values.iter().zip(REGISTER_LIMITS.iter()) {
                    proptest::prop_assert!((0..=*limit).contains(value));
                }
            }
            let days: Page<DayRow> = serde_json::from_str(&page).expect("a page of any rows");
            if let Ok(day) = days.results[0].stat() {
                proptest::prop_assert!((EARLIEST..LATEST).contains(&day.day));
                proptest::prop_assert!(day.consumption.iter().all(|v| *v >= 0));
            }
            let readings: Page<ReadingRow> = serde_json::from_str(&page).expect("a page");
            let window = datetime!(2026-01-01 00:00 UTC)..datetime!(2026-01-01 01:00 UTC);
            let _ = readings.results[0].registers(&window);
        }
    }

    #[test]
    fn rows_are_checked_one_by_one() {
        let page: Page<HourRow> = serde_json::from_str(
            r#"{"count": 3, "next": null, "previous": null, "results": [
                {"hour_start": "9999-12-31T23:00:00-01:00", "electricity1": "0.1"},
                {"hour_start": "2026-11-25T23:00:00+01:00", "electricity1": 0.25, "gas": null},
                {"hour_start": 17, "electricity1": "0.1"},
                {"electricity1": "0.1"}
            ]}"#,
        )
        .expect("the page parses whatever its rows hold");
        let stats: Vec<_> = page.results.iter().map(HourRow::stat).collect();
        assert_eq!(
            stats[0],
            Err(RowError::OutOfRange {
                field: "hour_start"
            })
        );
        assert_eq!(stats[1].as_ref().map(|h| h.values), Ok([250, 0, 0, 0, 0]));
        assert_eq!(
            stats[2],
            Err(RowError::NotTime {
                field: "hour_start"
            })
        );
        assert_eq!(
            stats[3],
            Err(RowError::Missing {
                field: "hour_start"
            })
        );
        let day: Page<DayRow> = serde_json::from_str(
            r#"{"results": [{"day": "-9999-01-01"}, {"day": "2026-02-30"}, {"day": "2026-11-25", "electricity1": "-1.000"}]}"#,
        )
        .expect("parses");
        let stats: Vec<_> = day.results.iter().map(DayRow::stat).collect();
        assert_eq!(stats[0], Err(RowError::OutOfRange { field: "day" }));
        assert_eq!(stats[1], Err(RowError::NotDate { field: "day" }));
        assert_eq!(
            stats[2],
            Err(RowError::Negative {
                field: "electricity1"
            })
        );
    }

    /// Today's hours, not archived before midnight, from the readings at their boundaries:
    /// one request per boundary, each filtered both ways, ordered and limited to one row.
    #[tokio::test]
    async fn readings_at_hour_boundaries_one_small_request_each() {
        let sim = simulator(HistoryOptions {
            first_day: date!(2026 - 11 - 20),
            now: ArchiveNow::At(datetime!(2026-11-26 13:30 +1)),
            gaps: vec![(datetime!(2026-11-26 10:00 UTC), 1)],
            ..HistoryOptions::default()
        })
        .await;
        let archive = sim.archive().expect("archive");
        let boundaries: Vec<OffsetDateTime> = (9..=13)
            .map(|h| datetime!(2026-11-26 00:00 +1) + time::Duration::hours(h))
            .collect();
        let readings = client(&sim)
            .readings_at(&boundaries)
            .await
            .expect("readings");
        assert_eq!(
            sim.requests("/api/v2/datalogger/dsmrreading"),
            boundaries.len() as u64
        );
        assert_eq!(
            sim.requests_ordered("/api/v2/datalogger/dsmrreading", "timestamp"),
            boundaries.len() as u64
        );
        let log = sim.request_log();
        assert_eq!(
            log.last().map(String::as_str),
            Some(
                "GET /api/v2/datalogger/dsmrreading?ordering=timestamp&limit=1&timestamp__gte=2026-11-26T12%3A00%3A00Z&timestamp__lte=2026-11-26T12%3A59%3A59Z"
            )
        );
        let expected = |t: OffsetDateTime| {
            let r = archive
                .reading(archive.reading_index(t))
                .expect("a reading");
            let [e1, e2, e1r, e2r, gas] = r.registers.map(|v| Some(v as i64));
            Some([e1, e2, e1r, e2r, gas])
        };
        assert_eq!(readings[0], expected(boundaries[0]));
        assert_eq!(readings[2], None, "11:00 local is in the gap");
        assert_eq!(readings[3], expected(boundaries[3]));
        assert_eq!(
            readings[4], None,
            "13:00's hour is not over: no readings yet"
        );
        let hour = archive
            .hours()
            .iter()
            .find(|h| h.0 == boundaries[0])
            .expect("09:00");
        let (a, b) = (readings[0].expect("09:00"), readings[1].expect("10:00"));
        assert_eq!(b[0].zip(a[0]).map(|(b, a)| b - a), Some(hour.1[0] as i64));
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal("37549.080", 3), Some(37_549_080));
        assert_eq!(decimal("0.353", 3), Some(353));
        assert_eq!(decimal("2.07", 2), Some(207));
        assert_eq!(decimal("-1.5", 2), Some(-150));
        assert_eq!(decimal("7", 3), Some(7_000));
        for bad in ["", "-", "1.2345", "1,5", "abc", "1.2.3"] {
            assert_eq!(decimal(bad, 3), None, "{bad}");
        }
    }

    /// Each day cost lands at the ledger's index of its sensor (`history::cost_keys`).
    #[test]
    fn day_costs_are_read_in_the_catalogs_order() {
        let mut row = serde_json::json!({"day": "2026-11-25", "electricity1": "1.000"});
        for (k, key) in crate::history::cost_keys().iter().enumerate() {
            row[key] = format!("{}.0{k}", k + 1).into();
        }
        let page = serde_json::json!({"count": 1, "results": [row]}).to_string();
        let days: Page<DayRow> = serde_json::from_str(&page).unwrap();
        let d = days.results[0].stat().unwrap();
        assert_eq!(
            d.costs,
            [Some(100), Some(201), Some(302), Some(403), Some(504)]
        );
    }

    #[test]
    fn the_captured_rows_parse() {
        let hour: Page<HourRow> = serde_json::from_str(include_str!(
            "../../tests/fixtures/v2_statistics_hour_latest.json"
        ))
        .unwrap();
        let h = hour.results[0].stat().unwrap();
        assert_eq!(h.start, datetime!(2026-11-25 22:00 UTC));
        assert_eq!(h.day, date!(2026 - 11 - 25));
        assert_eq!(h.values, [353, 212, 71, 283, 99]);
        let day: Page<DayRow> = serde_json::from_str(include_str!(
            "../../tests/fixtures/v2_statistics_day_latest.json"
        ))
        .unwrap();
        let d = day.results[0].stat().unwrap();
        assert_eq!(d.start, datetime!(2026-11-24 23:00 UTC));
        assert_eq!(d.consumption[0], 8_633);
        assert_eq!(d.registers[4], Some(11_264_724));
        assert_eq!(
            d.costs,
            [Some(207), Some(79), Some(95), Some(739), Some(358)]
        );
    }
}
