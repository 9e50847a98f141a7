//! History, DSMR-reader side: pages of `statistics/hour` and `statistics/day`, filtered and
//! ordered so that DSMR-reader counts and serializes only what is asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};
use tracing::warn;
use url::Url;

use super::ledger::{COSTS, DayStat, HourStat, REGISTERS, utc_hour};
use crate::config::DsmrConfig;

/// Hour rows per request: a month and a bit, about 150 KiB of JSON.
pub const HOUR_PAGE: usize = 800;
/// The largest answer read: a page of hours or days with room to spare.
const MAX_BODY: usize = 2 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "DSMR-reader rejected the API key for its statistics (HTTP 403): check dsmr_reader_api_key"
    )]
    Forbidden,
    #[error("DSMR-reader answered HTTP {status} for {path}")]
    Status { status: u16, path: &'static str },
    #[error("request to DSMR-reader's {path} failed: {reason}")]
    Request { path: &'static str, reason: String },
    #[error("DSMR-reader's {path} sent something unexpected: {reason}")]
    Malformed { path: &'static str, reason: String },
}

#[derive(Clone)]
pub struct ArchiveClient {
    http: reqwest::Client,
    api: Url,
    auth: HeaderValue,
    requests: Arc<AtomicU64>,
}

impl std::fmt::Debug for ArchiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveClient")
            .field("api", &self.api.as_str())
            .finish_non_exhaustive()
    }
}

const HOURS: &str = "statistics/hour";
const DAYS: &str = "statistics/day";
const READINGS: &str = "datalogger/dsmrreading";

impl ArchiveClient {
    pub fn new(config: &DsmrConfig) -> Result<Self, ArchiveError> {
        let setup = |reason: String| ArchiveError::Request {
            path: "api/v2",
            reason,
        };
        let tls = crate::tls::client_config(config.ca_pem.as_deref())
            .map_err(|e| setup(e.to_string()))?;
        let origin = config.url.origin();
        // As the live source: the API key never follows a redirect to another origin.
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().origin() != origin || attempt.previous().len() >= 3 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(redirect)
            .timeout(TIMEOUT)
            .user_agent(concat!("dsmr-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(e.without_url().to_string()))?;
        let mut auth = HeaderValue::from_str(&format!("Token {}", config.api_key.expose_secret()))
            .map_err(|_| setup("the API key cannot be sent as a header".into()))?;
        auth.set_sensitive(true);
        let api = config
            .url
            .join("api/v2/")
            .map_err(|e| setup(e.to_string()))?;
        Ok(Self {
            http,
            api,
            auth,
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Requests sent so far (for the benchmark).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn get(
        &self,
        path: &'static str,
        query: &[(&str, String)],
    ) -> Result<Value, ArchiveError> {
        let mut url = self.api.join(path).expect("a relative path joins");
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request_error = |e: reqwest::Error| ArchiveError::Request {
            path,
            reason: error_chain(&e.without_url()),
        };
        let mut response = self
            .http
            .get(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status().as_u16();
        if status == 403 {
            return Err(ArchiveError::Forbidden);
        }
        if !response.status().is_success() {
            return Err(ArchiveError::Status { status, path });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(malformed(path, "answer too large"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| malformed(path, &e.to_string()))
    }

    async fn get_page<T: serde::de::DeserializeOwned>(
        &self,
        path: &'static str,
        query: &[(&str, String)],
    ) -> Result<Page<T>, ArchiveError> {
        let value = self.get(path, query).await?;
        serde_json::from_value(value).map_err(|e| malformed(path, &e.to_string()))
    }

    /// Hours archived at or after `from` (all when `None`), as many as `limit`.
    async fn hour_page(
        &self,
        from: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<(u64, Vec<HourStat>), ArchiveError> {
        let mut query = vec![
            ("ordering", "hour_start".to_owned()),
            ("limit", limit.to_string()),
        ];
        if let Some(from) = from {
            query.push(("hour_start__gte", filter_time(from)));
        }
        if let Some(before) = before {
            query.push((
                "hour_start__lte",
                filter_time(before - time::Duration::SECOND),
            ));
        }
        let page = self.get(HOURS, &query).await?;
        let count = page["count"].as_u64().unwrap_or(0);
        let rows = results(HOURS, &page)?
            .iter()
            .map(hour_row)
            .collect::<Result<_, _>>()?;
        Ok((count, rows))
    }

    /// How many hours are archived at or after `from`.
    pub async fn hour_count(&self, from: Option<OffsetDateTime>) -> Result<u64, ArchiveError> {
        Ok(self.hour_page(from, None, 1).await?.0)
    }

    /// Every hour in `[from, before)`, in pages of `HOUR_PAGE`, oldest first.
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
            let (_, page) = self.hour_page(after.or(from), before, HOUR_PAGE).await?;
            let full = page.len() == HOUR_PAGE;
            hours.extend(page);
            if !full {
                return Ok(hours);
            }
        }
    }

    /// Up to `limit` day rows from `from` on (all days when `None`), oldest first.
    pub async fn days(
        &self,
        from: Option<Date>,
        limit: usize,
    ) -> Result<Vec<DayStat>, ArchiveError> {
        let mut query = vec![("ordering", "day".to_owned()), ("limit", limit.to_string())];
        if let Some(from) = from {
            query.push(("day__gte", date_text(from)));
        }
        let page = self.get(DAYS, &query).await?;
        results(DAYS, &page)?.iter().map(day_row).collect()
    }

    /// The registers (in thousandths, in the order of the hour statistics) of the first
    /// reading at or after each of `at`, within the hour that follows it; `None` where that hour
    /// has no reading. One small request per boundary: filtered on both sides so that
    /// DSMR-reader counts at most an hour of readings, ordered, one row.
    pub async fn readings_at(
        &self,
        at: &[OffsetDateTime],
    ) -> Result<Vec<Option<[Option<i64>; REGISTERS]>>, ArchiveError> {
        let mut out = Vec::with_capacity(at.len());
        for &t in at {
            let query = [
                ("ordering", "timestamp".to_owned()),
                ("limit", "1".to_owned()),
                ("timestamp__gte", filter_time(t)),
                (
                    "timestamp__lte",
                    filter_time(t + time::Duration::HOUR - time::Duration::SECOND),
                ),
            ];
            let page: Page<ReadingRow> = self.get_page(READINGS, &query).await?;
            out.push(page.results.into_iter().next().and_then(|row| {
                row.registers()
                    .inspect_err(|e| warn!(error = %e, at = %t, "reading refused"))
                    .ok()
            }));
        }
        Ok(out)
    }

    /// The newest day row, which tells whether there is a gas meter.
    pub async fn latest_day(&self) -> Result<Option<DayStat>, ArchiveError> {
        let query = [("ordering", "-day".to_owned()), ("limit", "1".to_owned())];
        let page = self.get(DAYS, &query).await?;
        results(DAYS, &page)?.first().map(day_row).transpose()
    }
}

/// One page of a DRF list.
#[derive(Debug, serde::Deserialize)]
struct Page<T> {
    results: Vec<T>,
}

/// A value as DSMR-reader sends it: decimals as strings. Anything else is kept, to be refused
/// with its row rather than failing the page.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Amount {
    Text(String),
    Number(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl Amount {
    /// In units of 10^-`places`, exactly; `None` for anything that is not a plain decimal with
    /// at most `places` places.
    fn scaled(&self, places: u32) -> Option<i64> {
        match self {
            Amount::Text(text) => decimal(text, places),
            Amount::Number(n) => decimal(&n.to_string(), places),
            Amount::Other(_) => None,
        }
    }
}

/// The registers of a `datalogger/dsmrreading` row.
#[derive(Debug, serde::Deserialize)]
struct ReadingRow {
    electricity_delivered_1: Option<Amount>,
    electricity_delivered_2: Option<Amount>,
    electricity_returned_1: Option<Amount>,
    electricity_returned_2: Option<Amount>,
    extra_device_delivered: Option<Amount>,
}

impl ReadingRow {
    /// In the order of the hour statistics, in thousandths.
    fn registers(&self) -> Result<[Option<i64>; REGISTERS], ArchiveError> {
        let fields = [
            ("electricity_delivered_1", &self.electricity_delivered_1),
            ("electricity_delivered_2", &self.electricity_delivered_2),
            ("electricity_returned_1", &self.electricity_returned_1),
            ("electricity_returned_2", &self.electricity_returned_2),
            ("extra_device_delivered", &self.extra_device_delivered),
        ];
        let mut registers = [None; REGISTERS];
        for (value, (key, amount)) in registers.iter_mut().zip(fields) {
            *value = match amount {
                None => None,
                Some(amount) => Some(
                    amount
                        .scaled(3)
                        .ok_or_else(|| malformed(READINGS, &format!("{key} is not a decimal")))?,
                ),
            };
        }
        Ok(registers)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn malformed(path: &'static str, reason: &str) -> ArchiveError {
    ArchiveError::Malformed {
        path,
        reason: reason.to_owned(),
    }
}

fn results<'a>(path: &'static str, page: &'a Value) -> Result<&'a Vec<Value>, ArchiveError> {
    page["results"]
        .as_array()
        .ok_or_else(|| malformed(path, "no list of results"))
}

/// With its offset, so that DSMR-reader never has to guess in the repeated autumn hour.
fn filter_time(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
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
    let scale = 10_i64.pow(places);
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

fn field(
    path: &'static str,
    row: &Value,
    key: &str,
    places: u32,
) -> Result<Option<i64>, ArchiveError> {
    match &row[key] {
        Value::Null => Ok(None),
        Value::String(text) => decimal(text, places)
            .map(Some)
            .ok_or_else(|| malformed(path, &format!("{key} is {text:?}, not a decimal"))),
        Value::Number(n) => n
            .as_f64()
            .map(|f| Some((f * 10_f64.powi(places as i32)).round() as i64))
            .ok_or_else(|| malformed(path, &format!("{key} is not a number"))),
        other => Err(malformed(path, &format!("{key} is {other}"))),
    }
}

fn timestamp(
    path: &'static str,
    row: &Value,
    key: &str,
) -> Result<Option<OffsetDateTime>, ArchiveError> {
    match row[key].as_str() {
        None => Ok(None),
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map(Some)
            .map_err(|_| malformed(path, &format!("{key} is {text:?}, not a time with offset"))),
    }
}

const HOUR_FIELDS: [&str; REGISTERS] = [
    "electricity1",
    "electricity2",
    "electricity1_returned",
    "electricity2_returned",
    "gas",
];
const READING_FIELDS: [&str; REGISTERS] = [
    "electricity1_reading",
    "electricity2_reading",
    "electricity1_returned_reading",
    "electricity2_returned_reading",
    "gas_reading",
];
const COST_FIELDS: [&str; COSTS] = ["electricity1_cost", "electricity2_cost", "gas_cost"];

fn hour_row(row: &Value) -> Result<HourStat, ArchiveError> {
    let start = timestamp(HOURS, row, "hour_start")?
        .ok_or_else(|| malformed(HOURS, "a row without hour_start"))?;
    let mut values = [0; REGISTERS];
    for (value, key) in values.iter_mut().zip(HOUR_FIELDS) {
        *value = field(HOURS, row, key, 3)?.unwrap_or(0);
    }
    Ok(HourStat {
        start: utc_hour(start),
        day: start.date(),
        values,
    })
}

fn day_row(row: &Value) -> Result<DayStat, ArchiveError> {
    let day_text = row["day"]
        .as_str()
        .ok_or_else(|| malformed(DAYS, "a row without day"))?;
    let day = Date::parse(day_text, format_description!("[year]-[month]-[day]"))
        .map_err(|_| malformed(DAYS, &format!("day is {day_text:?}")))?;
    // The first reading of the day carries the day's UTC offset (DST changes at 02:00 or
    // 03:00, never at midnight); without readings Central European time is the best guess.
    let offset = timestamp(DAYS, row, "electricity_reading_timestamp")?.map_or(
        UtcOffset::from_hms(1, 0, 0).unwrap_or(UtcOffset::UTC),
        |t| t.offset(),
    );
    let start = day
        .midnight()
        .assume_offset(offset)
        .to_offset(UtcOffset::UTC);
    let mut consumption = [0; REGISTERS];
    for (value, key) in consumption.iter_mut().zip(HOUR_FIELDS) {
        *value = field(DAYS, row, key, 3)?.unwrap_or(0);
    }
    let mut registers = [None; REGISTERS];
    for (value, key) in registers.iter_mut().zip(READING_FIELDS) {
        *value = field(DAYS, row, key, 3)?;
    }
    let mut costs = [None; COSTS];
    for (value, key) in costs.iter_mut().zip(COST_FIELDS) {
        *value = field(DAYS, row, key, 2)?;
    }
    Ok(DayStat {
        day,
        start,
        consumption,
        registers,
        costs,
    })
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

    #[test]
    fn the_captured_rows_parse() {
        let hour: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/v2_statistics_hour_latest.json"
        ))
        .unwrap();
        let h = hour_row(&hour["results"][0]).unwrap();
        assert_eq!(h.start, datetime!(2026-11-25 22:00 UTC));
        assert_eq!(h.day, date!(2026 - 11 - 25));
        assert_eq!(h.values, [353, 212, 71, 283, 99]);
        let day: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/v2_statistics_day_latest.json"
        ))
        .unwrap();
        let d = day_row(&day["results"][0]).unwrap();
        assert_eq!(d.start, datetime!(2026-11-24 23:00 UTC));
        assert_eq!(d.consumption[0], 8_633);
        assert_eq!(d.registers[4], Some(11_264_724));
        assert_eq!(d.costs, [Some(207), Some(79), Some(358)]);
    }
}
