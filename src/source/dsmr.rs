//! Source stage, HTTP: `DsmrClient` speaks DSMR-reader's REST API v2.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::DsmrConfig;
use super::error::SourceError;
use super::lookup::KeptAddresses;
use super::outage::request_timeout;
use super::schedule::Endpoint;
use crate::model::Object;

/// DSMR-reader's largest answer we read is meter statistics with the raw telegram (~1.5 KiB);
/// anything near this cap is not DSMR-reader.
pub const MAX_BODY: usize = 256 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// DSMR-reader's HTTP API as both the live poll and the history import speak it: one client,
/// one set of rules (TLS, redirects only within DSMR-reader's origin, connect and total
/// timeouts from the config, the API key in the header that reaches DSMR-reader, a cap on
/// what is read).
#[derive(Clone)]
pub struct DsmrHttp {
    http: reqwest::Client,
    /// `…/api/v2/`.
    api: Url,
    /// The header that carries the API key, and its value.
    auth: (HeaderName, HeaderValue),
    /// To cut the key out of an error body that echoes it.
    api_key: SecretString,
    /// DSMR-reader's address, looked up once (see `lookup`).
    addresses: KeptAddresses,
}

/// A complete answer of DSMR-reader (any status), its body read up to the cap.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, if given as such.
    pub retry_after: Option<u64>,
    pub body: Vec<u8>,
}

impl DsmrHttp {
    pub fn new(config: &DsmrConfig) -> Result<Self, SourceError> {
        let tls = crate::tls::client_config(config.ca_pem.as_deref()).map_err(SourceError::Tls)?;
        let origin = config.url.origin();
        // Follow a redirect only within DSMR-reader's own origin (http → https on the same
        // host is not followed either): the API key must never travel to another host.
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().origin() != origin {
                // An error (not `stop`, which would hand back the bare 3xx) so that the log
                // says why: see `SourceError::Redirect`.
                attempt.error("redirect to another origin")
            } else if attempt.previous().len() >= 3 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let timeout = request_timeout(config.poll_interval);
        let addresses = KeptAddresses::default();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(addresses.clone())
            // Every request has its timeout, so TCP's own keepalive probes and user timeout
            // add nothing but four socket options on every new connection (each request's,
            // with DSMR-reader's gunicorn).
            .tcp_keepalive(None)
            .tcp_user_timeout(None)
            .redirect(redirect)
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .user_agent(concat!("dsmr-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Client(e.without_url()))?;
        let key = config.api_key.expose_secret();
        // User info in the URL is for a proxy in front of DSMR-reader: the HTTP client sends
        // it as `Authorization: Basic`, which replaces a `Token` there, so the key then goes
        // in DSMR-reader's other header.
        let (name, value) = if config.url.username().is_empty() && config.url.password().is_none() {
            (AUTHORIZATION, format!("Token {key}"))
        } else {
            (HeaderName::from_static("x-authkey"), key.to_owned())
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| SourceError::KeyNotSendable)?;
        value.set_sensitive(true);
        let api = config.url.join("api/v2/").map_err(SourceError::Url)?;
        Ok(Self {
            http,
            api,
            auth: (name, value),
            api_key: config.api_key.clone(),
            addresses,
        })
    }

    /// `path` below `api/v2/`.
    pub fn url(&self, path: &str) -> Result<Url, SourceError> {
        self.api.join(path).map_err(SourceError::Url)
    }

    /// GETs `url` with the API key and reads the whole answer, at most `max_body` bytes of it.
    /// Errors are the request's own (connect, timeout, redirect, TLS) and an answer too large;
    /// the status is the caller's to judge.
    pub async fn get(&self, url: Url, max_body: usize) -> Result<Answer, SourceError> {
        let mut response = self
            .http
            .get(url)
            .header(self.auth.0.clone(), self.auth.1.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                let error = SourceError::from_reqwest(e);
                // DSMR-reader may have moved (a new address from DHCP).
                if matches!(error, SourceError::Connect(_) | SourceError::Timeout(_)) {
                    self.addresses.forget();
                }
                error
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if response
            .content_length()
            .is_some_and(|l| l > max_body as u64)
        {
            return Err(SourceError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(SourceError::from_reqwest)? {
            if body.len() + chunk.len() > max_body {
                return Err(SourceError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            body = redact(&body, self.api_key.expose_secret());
        }
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// `…/api/v2/` without user name and password, for logs and Debug output.
    pub fn api_for_logs(&self) -> Url {
        without_credentials(&self.api)
    }
}

#[derive(Clone)]
pub struct DsmrClient {
    http: DsmrHttp,
    /// One URL per `Endpoint`, joined once.
    urls: [Url; Endpoint::ALL.len()],
}

impl std::fmt::Debug for DsmrClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsmrClient")
            .field("api", &self.http.api_for_logs().as_str())
            .finish_non_exhaustive()
    }
}

impl DsmrClient {
    pub fn new(config: &DsmrConfig) -> Result<Self, SourceError> {
        let http = DsmrHttp::new(config)?;
        // A relative path joins any base that took `api/v2/`.
        let urls = Endpoint::ALL.map(|e| http.url(e.path()).expect("relative path joins"));
        Ok(Self { http, urls })
    }

    /// The newest reading, optionally only if stamped at or after `since` and at or before
    /// `until` (both ISO 8601 with an offset). `since` keeps DSMR-reader from counting
    /// its whole table; `until` keeps a row stamped in the future (one telegram from a meter
    /// with a wrong clock) from being the newest reading until the clock passes it.
    /// `None` when no reading matches.
    pub async fn latest_reading(
        &self,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Option<Object>, SourceError> {
        let mut query = vec![("ordering", "-timestamp"), ("limit", "1")];
        if let Some(since) = since {
            query.push(("timestamp__gte", since));
        }
        if let Some(until) = until {
            query.push(("timestamp__lte", until));
        }
        let body = self.get(Endpoint::Reading, &query).await?;
        first_result(Endpoint::Reading, body)
    }

    pub async fn meter_statistics(&self) -> Result<Object, SourceError> {
        let endpoint = Endpoint::MeterStatistics;
        object(endpoint, self.get(endpoint, &[]).await?)
    }

    /// Today's totals; `None` when DSMR-reader has no consumption for today yet (it then
    /// answers with a bare JSON string).
    pub async fn today(&self) -> Result<Option<Object>, SourceError> {
        let endpoint = Endpoint::Today;
        match self.get(endpoint, &[]).await? {
            Value::String(_) => Ok(None),
            other => object(endpoint, other).map(Some),
        }
    }

    pub async fn quarter_hour_peak(&self) -> Result<Option<Object>, SourceError> {
        let query = [("ordering", "-read_at_start"), ("limit", "1")];
        let endpoint = Endpoint::Peak;
        first_result(endpoint, self.get(endpoint, &query).await?)
    }

    pub async fn version(&self) -> Result<Object, SourceError> {
        let endpoint = Endpoint::Version;
        object(endpoint, self.get(endpoint, &[]).await?)
    }

    pub async fn monitoring(&self) -> Result<Object, SourceError> {
        let endpoint = Endpoint::Monitoring;
        object(endpoint, self.get(endpoint, &[]).await?)
    }

    async fn get(&self, endpoint: Endpoint, query: &[(&str, &str)]) -> Result<Value, SourceError> {
        let mut url = self.urls[endpoint as usize].clone();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let answer = self.http.get(url, MAX_BODY).await?;
        if !(200..300).contains(&answer.status) {
            return Err(SourceError::from_status(
                answer.status,
                &answer.body,
                endpoint,
                answer.retry_after,
            ));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|source| SourceError::NotJson { endpoint, source })
    }
}

/// `url` without user name and password, for logs and Debug output.
pub fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// `body` with every occurrence of `key` replaced: an error body (a proxy's, or a
/// DSMR-reader's) may echo the key, and its text goes into the log.
fn redact(body: &[u8], key: &str) -> Vec<u8> {
    if key.is_empty() {
        return body.to_vec();
    }
    let key = key.as_bytes();
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        if rest.starts_with(key) {
            out.extend_from_slice(b"[api key]");
            rest = &rest[key.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

fn object(endpoint: Endpoint, value: Value) -> Result<Object, SourceError> {
    match value {
        Value::Object(o) => Ok(o),
        other => Err(SourceError::Malformed {
            endpoint,
            expected: "a JSON object",
            got: kind_of(&other),
        }),
    }
}

/// `results[0]` of a paginated list.
fn first_result(endpoint: Endpoint, value: Value) -> Result<Option<Object>, SourceError> {
    let mut page = object(endpoint, value)?;
    match page.remove("results") {
        Some(Value::Array(results)) => match results.into_iter().next() {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(other) => Err(SourceError::Malformed {
                endpoint,
                expected: "a list of objects",
                got: kind_of(&other),
            }),
        },
        Some(other) => Err(SourceError::Malformed {
            endpoint,
            expected: "a list of results",
            got: kind_of(&other),
        }),
        None => Err(SourceError::Malformed {
            endpoint,
            expected: "a list of results",
            got: "none",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_key_is_cut_out_of_the_body() {
        assert_eq!(
            redact(br#"{"detail": "Invalid token KEY1 (KEY1)"}"#, "KEY1"),
            br#"{"detail": "Invalid token [api key] ([api key])"}"#
        );
        assert_eq!(redact(b"KEY", "KEY"), b"[api key]");
        assert_eq!(redact(b"no key", ""), b"no key");
        let e = SourceError::from_status(
            403,
            &redact(br#"{"detail": "bad key SECRET"}"#, "SECRET"),
            Endpoint::Version,
            None,
        );
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn shape_errors_name_the_endpoint() {
        let e = object(Endpoint::MeterStatistics, Value::Array(vec![])).unwrap_err();
        assert!(
            e.to_string()
                .contains("(datalogger/meter-statistics): expected a JSON object, got a list"),
            "{e}"
        );
        let e = first_result(Endpoint::Reading, serde_json::json!({"results": [1]})).unwrap_err();
        assert!(
            e.to_string()
                .contains("(datalogger/dsmrreading): expected a list of objects, got a number"),
            "{e}"
        );
        let e = first_result(Endpoint::Peak, serde_json::json!({})).unwrap_err();
        assert!(
            e.to_string().contains(
                "(consumption/quarter-hour-peak-electricity): expected a list of results"
            ),
            "{e}"
        );
    }
}
