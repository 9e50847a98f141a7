//! History, Home Assistant side: a client of Core's WebSocket API that authenticates, learns the
//! Core version from the handshake, finds the bridge's sensors in the entity registry, and reads,
//! imports beneath and adjusts their long-term statistics. Messages are typed both ways.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use super::ledger::Row;
use super::plan::Junction;

/// Core answers within milliseconds; a call not answered by then is a hung connection, however
/// many unrelated messages arrive meanwhile.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a barrier that Core timed out is asked again (10 s each).
const SETTLE_TRIES: u32 = 30;
/// Replies to reads over years at hour resolution are large; Core itself caps nothing.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Where Core's WebSocket API is and how to log in.
#[derive(Clone)]
pub struct HaTarget {
    /// `ws://…/api/websocket` or `wss://…`.
    pub url: Url,
    pub token: SecretString,
    /// What the user set to give the token (named in the error when Core rejects it).
    pub token_source: &'static str,
}

impl std::fmt::Debug for HaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaTarget")
            .field("url", &self.url.as_str())
            .field("token_source", &self.token_source)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("cannot reach Home Assistant at {url}")]
    Connect {
        url: String,
        #[source]
        source: ConnectError,
    },
    #[error("Home Assistant rejected the access token ({message}): check {source_name}")]
    Rejected {
        message: String,
        source_name: &'static str,
    },
    #[error("Home Assistant refused {command}: {code}: {message}")]
    Command {
        command: &'static str,
        code: String,
        message: String,
    },
    #[error("Home Assistant closed the connection")]
    Closed(#[source] Option<tokio_tungstenite::tungstenite::Error>),
    #[error("Home Assistant did not answer {0} within {CALL_TIMEOUT:?}")]
    Timeout(&'static str),
    #[error("Home Assistant's answer to {command} is not what the bridge reads")]
    Protocol {
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Why the connection to Core could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no answer within {CONNECT_TIMEOUT:?}")]
    NoAnswer,
    #[error(transparent)]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl HaError {
    /// Errors that waiting does not fix.
    pub fn is_permanent(&self) -> bool {
        matches!(self, HaError::Rejected { .. })
            || matches!(self, HaError::Command { code, .. } if code == "unauthorized")
    }
}

/// Core's release, from the handshake's `ha_version` (`2025.4.4`, `2026.4.0.dev…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CoreVersion {
    pub year: u32,
    pub month: u32,
}

impl CoreVersion {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let year = parts.next()?.parse().ok()?;
        let month = parts.next()?.parse().ok()?;
        Some(Self { year, month })
    }

    /// 2025.11 took `mean_type` and `unit_class` in the import metadata; older cores reject
    /// them, newer ones warn without them (and are announced to refuse from 2026.11).
    pub fn takes_mean_type(self) -> bool {
        self >= CoreVersion {
            year: 2025,
            month: 11,
        }
    }
}

/// A sensor's statistics metadata as `recorder/get_statistics_metadata` gives it (both forms:
/// `has_mean` before 2025.11, `mean_type` and `unit_class` from then on).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Metadata {
    pub statistic_id: String,
    pub source: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub has_sum: bool,
    #[serde(default)]
    pub has_mean: Option<bool>,
    #[serde(default)]
    pub mean_type: Option<u8>,
    #[serde(default)]
    pub unit_class: Option<String>,
    #[serde(default)]
    pub statistics_unit_of_measurement: Option<String>,
}

impl Metadata {
    /// Money has no unit class: cents. Energy and volume: thousandths.
    pub fn scale(&self) -> f64 {
        if self.is_money() { 100.0 } else { 1_000.0 }
    }

    /// How the import's rows of this statistic are told from Home Assistant's own: the bridge's
    /// money is its day costs, every other sum a meter register.
    pub fn mark(&self) -> Mark {
        if self.is_money() {
            Mark::DayTotal
        } else {
            Mark::Register
        }
    }

    fn is_money(&self) -> bool {
        self.unit_class.is_none() && self.statistics_unit_of_measurement.as_deref() == Some("EUR")
    }
}

/// The mark of the rows the bridge imported, a `last_reset` no row Home Assistant compiles for
/// the sensor carries, by the kind of sensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A meter register (`total_increasing`): Core's compiler writes no `last_reset` for it
    /// (`sensor/recorder.py`, `_compile_statistics` reads one only from a sensor of another
    /// state class); the import writes the row's start.
    Register,
    /// A day total (`total`, reset at local midnight): Core's rows carry the sensor's
    /// `last_reset`, a local midnight (`today_at()`), so whole minutes in any zone; the import
    /// writes the row's start plus one second. The mark holds at every period: a day's or
    /// month's row carries its last hour's `last_reset` (`recorder/statistics.py`,
    /// `_reduce_statistics`), and a midnight can be a row's start, so the row's start alone would
    /// not tell them apart.
    DayTotal,
}

impl Mark {
    /// The `last_reset` the import writes on a row starting at `start`.
    fn on(self, start: OffsetDateTime) -> OffsetDateTime {
        match self {
            Mark::Register => start,
            Mark::DayTotal => start + time::Duration::SECOND,
        }
    }

    /// Whether a row with `last_reset` is one the bridge imported.
    fn marks(self, last_reset: Option<OffsetDateTime>) -> bool {
        match self {
            Mark::Register => last_reset.is_some(),
            Mark::DayTotal => last_reset.is_some_and(|t| t.second() != 0),
        }
    }
}

/// The metadata sent with an import: exactly the sensor's own, in the form the Core takes,
/// since the import upserts it (`recorder/statistics.py`, `_import_statistics_with_session`
/// updates name, unit and mean type).
#[derive(Debug, Serialize)]
struct ImportMetadata<'a> {
    statistic_id: &'a str,
    source: &'a str,
    name: Option<&'a str>,
    unit_of_measurement: Option<&'a str>,
    has_sum: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    has_mean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_class: Option<Option<&'a str>>,
}

impl<'a> ImportMetadata<'a> {
    fn of(meta: &'a Metadata, version: CoreVersion) -> Self {
        let new = version.takes_mean_type();
        Self {
            statistic_id: &meta.statistic_id,
            source: &meta.source,
            name: meta.name.as_deref(),
            unit_of_measurement: meta.statistics_unit_of_measurement.as_deref(),
            has_sum: meta.has_sum,
            has_mean: (!new).then(|| meta.has_mean.unwrap_or(false)),
            mean_type: new.then(|| meta.mean_type.unwrap_or(0)),
            unit_class: new.then_some(meta.unit_class.as_deref()),
        }
    }
}

#[derive(Debug, Serialize)]
struct ImportRow {
    start: String,
    state: Option<f64>,
    sum: f64,
    /// The mark of a row the bridge imported (`Mark`): Core keeps what an import writes
    /// (`_update_statistics` writes every column sent).
    last_reset: String,
}

/// The commands the bridge sends, by their `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum Command<'a> {
    #[serde(rename = "auth")]
    Auth { access_token: &'a str },
    #[serde(rename = "config/entity_registry/list")]
    EntityRegistry,
    #[serde(rename = "recorder/get_statistics_metadata")]
    Metadata { statistic_ids: &'a [&'a str] },
    #[serde(rename = "recorder/statistics_during_period")]
    Rows {
        start_time: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        end_time: Option<String>,
        statistic_ids: &'a [&'a str],
        period: &'static str,
        types: &'static [&'static str],
    },
    #[serde(rename = "recorder/import_statistics")]
    Import {
        metadata: ImportMetadata<'a>,
        stats: Vec<ImportRow>,
    },
    #[serde(rename = "recorder/adjust_sum_statistics")]
    Adjust {
        statistic_id: &'a str,
        start_time: String,
        adjustment: f64,
        adjustment_unit_of_measurement: Option<&'a str>,
    },
    #[serde(rename = "recorder/clear_statistics")]
    Clear { statistic_ids: &'a [&'a str] },
}

impl Command<'_> {
    fn name(&self) -> &'static str {
        match self {
            Command::Auth { .. } => "auth",
            Command::EntityRegistry => "config/entity_registry/list",
            Command::Metadata { .. } => "recorder/get_statistics_metadata",
            Command::Rows { .. } => "recorder/statistics_during_period",
            Command::Import { .. } => "recorder/import_statistics",
            Command::Adjust { .. } => "recorder/adjust_sum_statistics",
            Command::Clear { .. } => "recorder/clear_statistics",
        }
    }
}

#[derive(Serialize)]
struct WithId<'a> {
    id: u64,
    #[serde(flatten)]
    command: &'a Command<'a>,
}

/// Any message from Core, as far as the bridge reads it.
#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    ha_version: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// An entity registry entry.
#[derive(Clone, Debug, Deserialize)]
pub struct RegistryEntry {
    pub entity_id: String,
    #[serde(default)]
    pub unique_id: Option<String>,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub created_at: Option<f64>,
}

/// A stored row: start, and sum/state in the statistic's unit; `imported` for the rows that
/// carry the bridge's mark.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredRow {
    pub start: OffsetDateTime,
    pub sum: Option<f64>,
    pub state: Option<f64>,
    pub last_reset: Option<OffsetDateTime>,
    pub imported: bool,
}

#[derive(Deserialize)]
struct WireRow {
    /// Milliseconds since the epoch.
    start: f64,
    #[serde(default)]
    sum: Option<f64>,
    #[serde(default)]
    state: Option<f64>,
    #[serde(default)]
    last_reset: Option<f64>,
}

/// Milliseconds since the epoch as Core sends them; `None` outside the dates a meter's rows can
/// have, so that the plan's arithmetic on row times (an hour, a month on) cannot overflow.
fn from_ms(ms: f64) -> Option<OffsetDateTime> {
    let nanos = (ms * 1e6).round();
    if !nanos.is_finite() {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
        .ok()
        .filter(|t| (super::EARLIEST..super::LATEST).contains(&t.date()))
}

impl WireRow {
    fn stored(&self, mark: Mark) -> Option<StoredRow> {
        let last_reset = self.last_reset.and_then(from_ms);
        Some(StoredRow {
            start: from_ms(self.start)?,
            sum: self.sum,
            state: self.state,
            last_reset,
            imported: mark.marks(last_reset),
        })
    }
}

pub struct HaClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    pub version: CoreVersion,
    pub version_text: String,
}

impl HaClient {
    /// Connects and logs in.
    pub async fn connect(target: &HaTarget) -> Result<Self, HaError> {
        let connect_error = |source: ConnectError| HaError::Connect {
            url: target.url.to_string(),
            source,
        };
        let tls = crate::tls::client_config(None).map_err(|e| connect_error(e.into()))?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            target.url.as_str(),
            Some(config),
            false,
            Some(Connector::Rustls(Arc::new(tls))),
        );
        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| connect_error(ConnectError::NoAnswer))?
            .map_err(|e| connect_error(e.into()))?;
        let mut client = Self {
            ws,
            next_id: 1,
            version: CoreVersion { year: 0, month: 0 },
            version_text: String::new(),
        };
        let deadline = Instant::now() + CALL_TIMEOUT;
        let hello = client.receive("auth", deadline).await?;
        client.set_version(&hello);
        client
            .send(&Command::Auth {
                access_token: target.token.expose_secret(),
            })
            .await?;
        loop {
            let answer = client.receive("auth", deadline).await?;
            match answer.kind.as_str() {
                "auth_ok" => {
                    client.set_version(&answer);
                    return Ok(client);
                }
                "auth_invalid" => {
                    return Err(HaError::Rejected {
                        message: answer.message.unwrap_or_else(|| "invalid".to_owned()),
                        source_name: target.token_source,
                    });
                }
                _ => {}
            }
        }
    }

    fn set_version(&mut self, message: &Incoming) {
        if let Some(text) = &message.ha_version
            && let Some(version) = CoreVersion::parse(text)
        {
            self.version = version;
            self.version_text.clone_from(text);
        }
    }

    async fn send(&mut self, command: &Command<'_>) -> Result<u64, HaError> {
        let id = self.next_id;
        self.next_id += 1;
        let text = match command {
            // The handshake carries no id.
            Command::Auth { .. } => serde_json::to_string(command),
            _ => serde_json::to_string(&WithId { id, command }),
        }
        .map_err(|source| HaError::Protocol {
            command: command.name(),
            source,
        })?;
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| HaError::Closed(Some(e)))?;
        Ok(id)
    }

    /// The next message, by `deadline`; pings are answered by tungstenite while we read.
    async fn receive(
        &mut self,
        waiting_for: &'static str,
        deadline: Instant,
    ) -> Result<Incoming, HaError> {
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| HaError::Timeout(waiting_for))?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).map_err(|source| {
                        HaError::Protocol {
                            command: waiting_for,
                            source,
                        }
                    });
                }
                Some(Ok(Message::Close(_))) | None => return Err(HaError::Closed(None)),
                Some(Err(e)) => return Err(HaError::Closed(Some(e))),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends a command and returns its `result`, read as `T`.
    async fn call<T: DeserializeOwned>(&mut self, command: Command<'_>) -> Result<T, HaError> {
        let name = command.name();
        let id = self.send(&command).await?;
        drop(command);
        // One deadline for the answer: unrelated messages do not extend it.
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let message = self.receive(name, deadline).await?;
            if message.id != Some(id) || message.kind != "result" {
                continue;
            }
            if message.success == Some(true) {
                return serde_json::from_value(message.result).map_err(|source| {
                    HaError::Protocol {
                        command: name,
                        source,
                    }
                });
            }
            let error = message.error.unwrap_or(ErrorBody {
                code: "unknown".to_owned(),
                message: String::new(),
            });
            return Err(HaError::Command {
                command: name,
                code: error.code,
                message: error.message,
            });
        }
    }

    /// The entity registry.
    pub async fn entities(&mut self) -> Result<Vec<RegistryEntry>, HaError> {
        self.call(Command::EntityRegistry).await
    }

    /// The statistics metadata of `ids` (those Core has any for).
    pub async fn metadata(&mut self, ids: &[&str]) -> Result<Vec<Metadata>, HaError> {
        self.call(Command::Metadata { statistic_ids: ids }).await
    }

    /// Rows of `ids` (statistics of one kind, `mark`) in `[start, end)` at `period`
    /// (`5minute`, `hour`, `day`, `month`).
    pub async fn rows(
        &mut self,
        ids: &[&str],
        start: OffsetDateTime,
        end: Option<OffsetDateTime>,
        period: &'static str,
        mark: Mark,
    ) -> Result<Vec<Vec<StoredRow>>, HaError> {
        let mut result: std::collections::HashMap<String, Vec<WireRow>> = self
            .call(Command::Rows {
                start_time: rfc3339(start),
                end_time: end.map(rfc3339),
                statistic_ids: ids,
                period,
                types: &["sum", "state", "last_reset"],
            })
            .await?;
        Ok(ids
            .iter()
            .map(|id| {
                result
                    .remove(*id)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| r.stored(mark))
                    .collect()
            })
            .collect())
    }

    /// Home Assistant's own first row of `meta`'s statistic (the first without the import's
    /// mark): its first compiled hour, or before that its first 5-minute row; `None` while Core
    /// has compiled nothing for it.
    pub async fn junction(&mut self, meta: &Metadata) -> Result<Option<Junction>, HaError> {
        let id = [meta.statistic_id.as_str()];
        let epoch = OffsetDateTime::UNIX_EPOCH;
        // A month's row carries the last_reset of its last hour (`recorder/statistics.py`,
        // `_reduce_statistics`): the first month ending in one of Core's own rows holds the
        // junction.
        let mark = meta.mark();
        let months = self.rows(&id, epoch, None, "month", mark).await?;
        let month = months[0].iter().find(|r| !r.imported).map(|r| r.start);
        if let Some(month) = month {
            let hours = self
                .rows(
                    &id,
                    month,
                    Some(month + time::Duration::days(32)),
                    "hour",
                    mark,
                )
                .await?;
            if let Some(row) = hours[0].iter().find(|r| !r.imported) {
                return Ok(junction_of(row, meta));
            }
        }
        // Short-term rows are purged after the recorder's keep_days; before Core's first hourly
        // row they are all there is.
        let short = self.rows(&id, epoch, None, "5minute", mark).await?;
        Ok(short[0]
            .iter()
            .find(|r| !r.imported)
            .and_then(|r| junction_of(r, meta)))
    }

    /// Imports `rows` (thousandths, or cents for money) beneath a sensor's own statistics.
    pub async fn import(&mut self, meta: &Metadata, rows: &[Row]) -> Result<(), HaError> {
        let scale = meta.scale();
        let mark = meta.mark();
        let stats = rows
            .iter()
            .map(|r| ImportRow {
                start: rfc3339(r.start),
                state: r.state.map(|s| s as f64 / scale),
                sum: r.sum as f64 / scale,
                last_reset: rfc3339(mark.on(r.start)),
            })
            .collect();
        self.call::<Value>(Command::Import {
            metadata: ImportMetadata::of(meta, self.version),
            stats,
        })
        .await
        .map(drop)
    }

    /// Adds `by` (thousandths, or cents) to the sums of Home Assistant's own rows from `from` on,
    /// short-term and long-term (`recorder/statistics.py`, `adjust_statistics`), in the recorder's
    /// thread between its compiles.
    pub async fn adjust(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        by: i64,
    ) -> Result<(), HaError> {
        self.call::<Value>(Command::Adjust {
            statistic_id: &meta.statistic_id,
            start_time: rfc3339(from),
            adjustment: by as f64 / meta.scale(),
            adjustment_unit_of_measurement: meta.statistics_unit_of_measurement.as_deref(),
        })
        .await
        .map(drop)
    }

    /// Waits until the recorder has done what it was sent: imports and adjustments are answered
    /// when queued, but `recorder/clear_statistics` answers when its job, queued after them, has
    /// run (`recorder/websocket_api.py`, `ws_clear_statistics` waits for `on_done`); with no ids it
    /// clears nothing.
    /// Core gives up waiting after `CLEAR_STATISTICS_TIME_OUT` (10 s) and answers `timeout`
    /// while the job is still queued: a recorder busy with a month of rows (a slow disk) is
    /// asked again, up to `SETTLE_TRIES` times.
    pub async fn settle(&mut self) -> Result<(), HaError> {
        let mut tries = 0;
        loop {
            match self
                .call::<Value>(Command::Clear { statistic_ids: &[] })
                .await
            {
                Err(HaError::Command { code, .. }) if code == "timeout" && tries < SETTLE_TRIES => {
                    tries += 1;
                }
                other => return other.map(drop),
            }
        }
    }
}

fn junction_of(row: &StoredRow, meta: &Metadata) -> Option<Junction> {
    let scale = meta.scale();
    let hour = row.start.replace_minute(0).ok()?;
    Some(Junction {
        hour,
        state: to_units(row.state?, scale),
        sum: to_units(row.sum.unwrap_or(0.0), scale),
        day_start: match meta.mark() {
            Mark::Register => None,
            Mark::DayTotal => row.last_reset,
        },
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A stored value back in thousandths (or cents).
pub fn to_units(value: f64, scale: f64) -> i64 {
    let units = (value * scale).round();
    if units.is_finite() { units as i64 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_time_no_meter_has_is_not_a_row() {
        // 9999-12-31 23:00 UTC: a month on from it does not exist.
        assert_eq!(from_ms(253_402_297_200_000.0), None);
        assert_eq!(from_ms(-1e15), None);
        assert_eq!(from_ms(f64::NAN), None);
        assert!(from_ms(1_796_000_000_000.0).is_some());
    }

    fn meta(unit_class: Option<&str>, unit: &str) -> Metadata {
        Metadata {
            statistic_id: "sensor.dsmr_gas_delivered".into(),
            source: "recorder".into(),
            name: None,
            has_sum: true,
            has_mean: Some(false),
            mean_type: Some(0),
            unit_class: unit_class.map(str::to_owned),
            statistics_unit_of_measurement: Some(unit.to_owned()),
        }
    }

    #[test]
    fn metadata_form_follows_the_core_version() {
        let m = meta(Some("volume"), "m³");
        let old = serde_json::to_value(ImportMetadata::of(
            &m,
            CoreVersion::parse("2025.4.4").unwrap(),
        ))
        .unwrap();
        assert_eq!(old["has_mean"], false);
        assert!(old.get("mean_type").is_none() && old.get("unit_class").is_none());
        assert_eq!(old["source"], "recorder");
        assert_eq!(old["unit_of_measurement"], "m³");
        assert_eq!(old["name"], Value::Null);
        let new = serde_json::to_value(ImportMetadata::of(
            &m,
            CoreVersion::parse("2026.2.3").unwrap(),
        ))
        .unwrap();
        assert_eq!(new["mean_type"], 0);
        assert_eq!(new["unit_class"], "volume");
        assert!(new.get("has_mean").is_none());
        assert!(CoreVersion::parse("2025.11.0").unwrap().takes_mean_type());
        assert!(!CoreVersion::parse("2025.10.3").unwrap().takes_mean_type());
        assert!(
            CoreVersion::parse("2026.4.0.dev202603250907")
                .unwrap()
                .takes_mean_type()
        );
    }

    #[test]
    fn commands_are_typed_messages() {
        let ids = ["sensor.x"];
        let command = Command::Rows {
            start_time: "2026-01-01T00:00:00Z".into(),
            end_time: None,
            statistic_ids: &ids,
            period: "hour",
            types: &["sum"],
        };
        let text = serde_json::to_value(WithId {
            id: 7,
            command: &command,
        })
        .unwrap();
        assert_eq!(text["type"], "recorder/statistics_during_period");
        assert_eq!(text["id"], 7);
        assert!(text.get("end_time").is_none());
        assert_eq!(command.name(), "recorder/statistics_during_period");
    }

    #[test]
    fn amounts_keep_their_thousandths() {
        assert_eq!(meta(Some("energy"), "kWh").scale(), 1_000.0);
        assert_eq!(meta(None, "EUR").scale(), 100.0);
        assert_eq!(to_units(12_345.678, 1_000.0), 12_345_678);
        assert_eq!(to_units(f64::NAN, 1_000.0), 0);
    }

    #[test]
    fn the_token_is_not_in_debug() {
        let target = HaTarget {
            url: Url::parse("ws://supervisor/core/websocket").unwrap(),
            token: SecretString::from("very-secret-token"),
            token_source: "homeassistant_token",
        };
        assert!(!format!("{target:?}").contains("very-secret"));
    }
}

#[cfg(test)]
mod chatter {
    use super::*;

    /// A server that logs in and then, instead of answering, sends an unrelated event every
    /// second: the call still ends at its deadline (on the paused clock, at once).
    #[tokio::test(start_paused = true)]
    async fn a_chattering_server_does_not_hold_a_call_forever() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let send = |text: &str| Message::text(text.to_owned());
            ws.send(send(r#"{"type":"auth_required","ha_version":"2026.2.3"}"#))
                .await
                .unwrap();
            let _auth = ws.next().await;
            ws.send(send(r#"{"type":"auth_ok","ha_version":"2026.2.3"}"#))
                .await
                .unwrap();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let event = r#"{"id":999,"type":"event","event":{"event_type":"state_changed"}}"#;
                if ws.send(send(event)).await.is_err() {
                    return;
                }
            }
        });
        let target = HaTarget {
            url: Url::parse(&format!("ws://127.0.0.1:{port}/api/websocket")).unwrap(),
            token: SecretString::from("token"),
            token_source: "homeassistant_token",
        };
        let mut ha = HaClient::connect(&target).await.unwrap();
        let started = Instant::now();
        let error = ha.settle().await.unwrap_err();
        assert!(
            matches!(error, HaError::Timeout("recorder/clear_statistics")),
            "{error}"
        );
        assert_eq!(started.elapsed(), CALL_TIMEOUT);
    }
}
