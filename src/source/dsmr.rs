//! Source stage, HTTP: `DsmrClient` speaks DSMR-reader's REST API v2.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

use super::SourceError;
use crate::config::DsmrConfig;
use crate::model::Object;

/// DSMR-reader's largest answer we read is meter statistics with the raw telegram (~1.5 KiB);
/// anything near this cap is not DSMR-reader.
pub const MAX_BODY: usize = 256 * 1024;

/// Longest wait for an answer. Shorter at short poll intervals: waiting longer than a couple
/// of intervals only delays noticing an outage.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn request_timeout(poll_interval: Duration) -> Duration {
    (poll_interval * 2).clamp(MIN_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT)
}

#[derive(Clone)]
pub struct DsmrClient {
    http: reqwest::Client,
    base: Url,
    auth: HeaderValue,
}

impl std::fmt::Debug for DsmrClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsmrClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl DsmrClient {
    pub fn new(config: &DsmrConfig) -> Result<Self, SourceError> {
        let tls = crate::tls::client_config(config.ca_pem.as_deref())
            .map_err(|e| SourceError::Setup(e.to_string()))?;
        let origin = config.url.origin();
        // Follow a redirect only within DSMR-reader's own origin (http → https on the same
        // host is not followed either): the API key must never travel to another host.
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().origin() != origin {
                // An error (not `stop`, which would hand back the bare 3xx) so that the log
                // says why: see `SourceError::from_reqwest`.
                attempt.error("redirect to another origin")
            } else if attempt.previous().len() >= 3 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(redirect)
            .timeout(request_timeout(config.poll_interval))
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout(config.poll_interval)))
            .user_agent(concat!("dsmr-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Setup(e.without_url().to_string()))?;
        let mut auth = HeaderValue::from_str(&format!("Token {}", config.api_key.expose_secret()))
            .map_err(|_| {
                SourceError::Setup("the API key cannot be sent in an HTTP header".into())
            })?;
        auth.set_sensitive(true);
        Ok(Self {
            http,
            base: config.url.clone(),
            auth,
        })
    }

    /// The newest reading, optionally only if stamped at or after `since` (server-local
    /// `YYYY-MM-DD HH:MM:SS`). The filter keeps DSMR-reader from counting its whole table.
    /// `None` when no reading matches.
    pub async fn latest_reading(&self, since: Option<&str>) -> Result<Option<Object>, SourceError> {
        let mut query = vec![("ordering", "-timestamp"), ("limit", "1")];
        if let Some(since) = since {
            query.push(("timestamp__gte", since));
        }
        let body = self.get("api/v2/datalogger/dsmrreading", &query).await?;
        first_result(body)
    }

    pub async fn meter_statistics(&self) -> Result<Object, SourceError> {
        object(self.get("api/v2/datalogger/meter-statistics", &[]).await?)
    }

    /// Today's totals; `None` when DSMR-reader has no consumption for today yet (it then
    /// answers with a bare JSON string).
    pub async fn today(&self) -> Result<Option<Object>, SourceError> {
        match self.get("api/v2/consumption/today", &[]).await? {
            Value::String(_) => Ok(None),
            other => object(other).map(Some),
        }
    }

    pub async fn quarter_hour_peak(&self) -> Result<Option<Object>, SourceError> {
        let query = [("ordering", "-read_at_start"), ("limit", "1")];
        first_result(
            self.get("api/v2/consumption/quarter-hour-peak-electricity", &query)
                .await?,
        )
    }

    pub async fn version(&self) -> Result<Object, SourceError> {
        object(self.get("api/v2/application/version", &[]).await?)
    }

    pub async fn monitoring(&self) -> Result<Object, SourceError> {
        object(self.get("api/v2/application/monitoring", &[]).await?)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, SourceError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| SourceError::Setup(e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut response = self
            .http
            .get(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(SourceError::from_reqwest)?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|l| l > MAX_BODY as u64)
        {
            return Err(SourceError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(SourceError::from_reqwest)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(SourceError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(SourceError::from_status(status.as_u16(), &body, path));
        }
        serde_json::from_slice(&body).map_err(|e| SourceError::Malformed {
            endpoint: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

fn object(value: Value) -> Result<Object, SourceError> {
    match value {
        Value::Object(o) => Ok(o),
        other => Err(SourceError::Malformed {
            endpoint: "response".into(),
            reason: format!("expected a JSON object, got {}", kind_of(&other)),
        }),
    }
}

/// `results[0]` of a paginated list.
fn first_result(value: Value) -> Result<Option<Object>, SourceError> {
    let mut page = object(value)?;
    match page.remove("results") {
        Some(Value::Array(results)) => match results.into_iter().next() {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(other) => Err(SourceError::Malformed {
                endpoint: "results".into(),
                reason: format!("expected an object, got {}", kind_of(&other)),
            }),
        },
        _ => Err(SourceError::Malformed {
            endpoint: "list".into(),
            reason: "no results list".into(),
        }),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
