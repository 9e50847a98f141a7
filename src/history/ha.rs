//! History, Home Assistant side: a client of Core's WebSocket API that authenticates, learns the
//! Core version from the handshake, and imports, reads back and waits for long-term statistics.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use super::ledger::Row;

/// Core answers within milliseconds; a call that takes longer is a hung connection.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
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
    #[error("cannot reach Home Assistant at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("Home Assistant rejected the access token ({message}): check {source_name}")]
    Rejected {
        message: String,
        source_name: &'static str,
    },
    #[error("Home Assistant refused {command}: {code}: {message}")]
    Command {
        command: String,
        code: String,
        message: String,
    },
    #[error("Home Assistant closed the connection")]
    Closed,
    #[error("Home Assistant did not answer {0} within {CALL_TIMEOUT:?}")]
    Timeout(String),
    #[error("Home Assistant sent something unexpected: {0}")]
    Protocol(String),
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

/// One statistic's metadata.
#[derive(Clone, Debug)]
pub struct Statistic {
    /// `dsmr_bridge:electricity_delivered_tariff_1`
    pub id: String,
    pub name: String,
    pub unit: Option<&'static str>,
    /// `energy`, `volume`, or none (money).
    pub unit_class: Option<&'static str>,
}

impl Statistic {
    pub fn source(&self) -> &str {
        self.id.split(':').next().unwrap_or_default()
    }

    /// The metadata form the Core version takes.
    pub fn metadata(&self, version: CoreVersion) -> Value {
        if version.takes_mean_type() {
            json!({
                "statistic_id": self.id,
                "source": self.source(),
                "name": self.name,
                "unit_of_measurement": self.unit,
                "unit_class": self.unit_class,
                "has_sum": true,
                "mean_type": 0,
            })
        } else {
            json!({
                "statistic_id": self.id,
                "source": self.source(),
                "name": self.name,
                "unit_of_measurement": self.unit,
                "has_sum": true,
                "has_mean": false,
            })
        }
    }
}

/// A row as Core returns it: start (UTC) and sum/state in the statistic's unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredRow {
    pub start: OffsetDateTime,
    pub sum: Option<f64>,
    pub state: Option<f64>,
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
        let connect_error = |reason: String| HaError::Connect {
            url: target.url.to_string(),
            reason,
        };
        let tls = crate::tls::client_config(None).map_err(|e| connect_error(e.to_string()))?;
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
            .map_err(|_| connect_error("no answer".into()))?
            .map_err(|e| connect_error(e.to_string()))?;
        let mut client = Self {
            ws,
            next_id: 1,
            version: CoreVersion { year: 0, month: 0 },
            version_text: String::new(),
        };
        let hello = client.receive("auth_required").await?;
        if hello["type"] != "auth_required" {
            return Err(HaError::Protocol(format!(
                "expected auth_required, got {hello}"
            )));
        }
        client.set_version(&hello);
        client
            .send(json!({"type": "auth", "access_token": target.token.expose_secret()}))
            .await?;
        let answer = client.receive("auth").await?;
        match answer["type"].as_str() {
            Some("auth_ok") => {
                client.set_version(&answer);
                Ok(client)
            }
            Some("auth_invalid") => Err(HaError::Rejected {
                message: answer["message"].as_str().unwrap_or("invalid").to_owned(),
                source_name: target.token_source,
            }),
            _ => Err(HaError::Protocol(format!("expected auth_ok, got {answer}"))),
        }
    }

    fn set_version(&mut self, message: &Value) {
        if let Some(text) = message["ha_version"].as_str()
            && let Some(version) = CoreVersion::parse(text)
        {
            self.version = version;
            self.version_text = text.to_owned();
        }
    }

    async fn send(&mut self, message: Value) -> Result<(), HaError> {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .map_err(|_| HaError::Closed)
    }

    /// The next JSON message; pings are answered by tungstenite while we read.
    async fn receive(&mut self, waiting_for: &str) -> Result<Value, HaError> {
        loop {
            let next = tokio::time::timeout(CALL_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| HaError::Timeout(waiting_for.to_owned()))?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| HaError::Protocol(e.to_string()));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(HaError::Closed),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends a command and returns its `result`.
    pub async fn call(&mut self, mut command: Value) -> Result<Value, HaError> {
        let id = self.next_id;
        self.next_id += 1;
        let kind = command["type"].as_str().unwrap_or("command").to_owned();
        command["id"] = json!(id);
        self.send(command).await?;
        loop {
            let message = self.receive(&kind).await?;
            if message["id"] != json!(id) || message["type"] != "result" {
                continue;
            }
            if message["success"] == json!(true) {
                return Ok(message["result"].clone());
            }
            let error = &message["error"];
            return Err(HaError::Command {
                command: kind,
                code: error["code"].as_str().unwrap_or("unknown").to_owned(),
                message: error["message"].as_str().unwrap_or("").to_owned(),
            });
        }
    }

    /// Imports `rows` (amounts in thousandths of `stat`'s unit, or cents for money) as one call.
    pub async fn import(&mut self, stat: &Statistic, rows: &[Row]) -> Result<(), HaError> {
        let stats: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut row = json!({"start": rfc3339(r.start), "sum": thousandths(r.sum, stat)});
                if let Some(state) = r.state {
                    row["state"] = thousandths(state, stat);
                }
                row
            })
            .collect();
        self.call(json!({
            "type": "recorder/import_statistics",
            "metadata": stat.metadata(self.version),
            "stats": stats,
        }))
        .await
        .map(drop)
    }

    /// Waits until the recorder has written what it was sent: Core acknowledges an import
    /// when it is queued, and a month of rows per call keeps that queue short.
    pub async fn settle(&mut self) -> Result<(), HaError> {
        for _ in 0..600 {
            let info = self.call(json!({"type": "recorder/info"})).await?;
            if info["backlog"].as_u64().unwrap_or(0) == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(HaError::Timeout("recorder/info (backlog)".into()))
    }

    /// Rows of `ids` in `[start, end)` at `period` (`hour`, `day`, `month`).
    pub async fn rows(
        &mut self,
        ids: &[&str],
        start: OffsetDateTime,
        end: Option<OffsetDateTime>,
        period: &str,
    ) -> Result<Vec<Vec<StoredRow>>, HaError> {
        let mut command = json!({
            "type": "recorder/statistics_during_period",
            "start_time": rfc3339(start),
            "statistic_ids": ids,
            "period": period,
            "types": ["sum", "state"],
        });
        if let Some(end) = end {
            command["end_time"] = json!(rfc3339(end));
        }
        let result = self.call(command).await?;
        Ok(ids
            .iter()
            .map(|id| {
                result[*id]
                    .as_array()
                    .map(|rows| rows.iter().filter_map(stored_row).collect())
                    .unwrap_or_default()
            })
            .collect())
    }

    /// The start of the last hourly row of each of `ids`, or `None` for one without rows.
    pub async fn last_hours(
        &mut self,
        ids: &[&str],
    ) -> Result<Vec<Option<OffsetDateTime>>, HaError> {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        let months = self.rows(ids, epoch, None, "month").await?;
        let Some(first_last_month) = months
            .iter()
            .filter_map(|rows| rows.last().map(|r| r.start))
            .min()
        else {
            return Ok(vec![None; ids.len()]);
        };
        let hours = self.rows(ids, first_last_month, None, "hour").await?;
        Ok(hours
            .iter()
            .zip(&months)
            .map(|(h, m)| h.last().map(|r| r.start).or(m.last().map(|r| r.start)))
            .collect())
    }
}

fn stored_row(row: &Value) -> Option<StoredRow> {
    let ms = row["start"].as_i64()?;
    let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(StoredRow {
        start,
        sum: row["sum"].as_f64(),
        state: row["state"].as_f64(),
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Money is in cents, everything else in thousandths.
fn thousandths(value: i64, stat: &Statistic) -> Value {
    let scale = if stat.unit_class.is_none() {
        100.0
    } else {
        1_000.0
    };
    json!(value as f64 / scale)
}

/// A stored value back in thousandths (or cents).
pub fn to_units(value: f64, stat: &Statistic) -> i64 {
    let scale = if stat.unit_class.is_none() {
        100.0
    } else {
        1_000.0
    };
    (value * scale).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(unit_class: Option<&'static str>) -> Statistic {
        Statistic {
            id: "dsmr_bridge:gas_delivered".into(),
            name: "Gas".into(),
            unit: Some("m³"),
            unit_class,
        }
    }

    #[test]
    fn metadata_form_follows_the_core_version() {
        let old = stat(Some("volume")).metadata(CoreVersion::parse("2025.4.4").unwrap());
        assert_eq!(old["has_mean"], false);
        assert!(old.get("mean_type").is_none() && old.get("unit_class").is_none());
        assert_eq!(old["source"], "dsmr_bridge");
        let new = stat(Some("volume")).metadata(CoreVersion::parse("2026.2.3").unwrap());
        assert_eq!(
            (new["mean_type"].clone(), new["unit_class"].clone()),
            (json!(0), json!("volume"))
        );
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
    fn amounts_keep_their_thousandths() {
        assert_eq!(
            thousandths(12_345_678, &stat(Some("energy"))),
            json!(12_345.678)
        );
        assert_eq!(thousandths(1_234, &stat(None)), json!(12.34));
        assert_eq!(to_units(12_345.678, &stat(Some("energy"))), 12_345_678);
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
