//! Supervisor client, an edge of the pipeline: inside Home Assistant the Supervisor's services
//! API names the broker app (Mosquitto) and the credentials it made for apps.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

/// Default address of the Supervisor API inside an app container.
pub const SUPERVISOR_URL: &str = "http://supervisor/";

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(
        "no MQTT broker app is running: install and start the Mosquitto broker app (Settings → Apps), or set mqtt_host"
    )]
    NotEnabled,
    #[error(
        "the Supervisor denied access to the MQTT service (is `services: mqtt:want` in the app config?)"
    )]
    Denied,
    #[error("the Supervisor answered HTTP {0}")]
    Status(u16),
    #[error("cannot reach the Supervisor: {0}")]
    Request(String),
    #[error("the Supervisor's answer is not understood: {0}")]
    Malformed(String),
    #[error("cannot set up the HTTP client for the Supervisor: {0}")]
    Setup(String),
}

/// The broker as the Supervisor describes it.
#[derive(Clone)]
pub struct MqttService {
    pub host: String,
    pub port: u16,
    pub ssl: bool,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

#[derive(Deserialize)]
struct Envelope {
    data: Option<ServiceData>,
}

#[derive(Deserialize)]
struct ServiceData {
    host: String,
    /// An int in the Supervisor's code, a string in its docs' example: accept both.
    port: Value,
    #[serde(default)]
    ssl: bool,
    username: Option<String>,
    password: Option<SecretString>,
}

/// Asks once; `auth` is the `Authorization` header with the Supervisor's token.
pub async fn fetch_mqtt_service(
    http: &reqwest::Client,
    base: &Url,
    auth: &HeaderValue,
) -> Result<MqttService, SupervisorError> {
    let url = base
        .join("services/mqtt")
        .map_err(|e| SupervisorError::Request(e.to_string()))?;
    let response = http
        .get(url)
        .header(AUTHORIZATION, auth.clone())
        .send()
        .await
        .map_err(|e| SupervisorError::Request(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| SupervisorError::Request(e.without_url().to_string()))?;
    match status {
        200 => {}
        400 => return Err(SupervisorError::NotEnabled),
        401 | 403 => return Err(SupervisorError::Denied),
        other => return Err(SupervisorError::Status(other)),
    }
    let envelope: Envelope =
        serde_json::from_slice(&body).map_err(|e| SupervisorError::Malformed(e.to_string()))?;
    let data = envelope
        .data
        .ok_or_else(|| SupervisorError::Malformed("no data".into()))?;
    let port = match &data.port {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|p| *p != 0)
    .ok_or_else(|| SupervisorError::Malformed(format!("port {}", data.port)))?;
    Ok(MqttService {
        host: data.host,
        port,
        ssl: data.ssl,
        username: data.username.filter(|u| !u.is_empty()),
        password: data.password,
    })
}

/// Asks until the Supervisor names a broker (the broker app may still be starting); `None` when
/// shut down while waiting. Logs the reason once, then again only when it changes. Only a
/// failure to set up the client is an error: everything the Supervisor answers is retried.
pub async fn wait_for_mqtt_service(
    base: &Url,
    token: &SecretString,
    shutdown: &CancellationToken,
) -> Result<Option<MqttService>, SupervisorError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SupervisorError::Setup(e.without_url().to_string()))?;
    // A token that cannot be sent would fail every request: a setup error, not a wait. The
    // message leaves the token out.
    let mut auth =
        HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).map_err(|_| {
            SupervisorError::Setup("SUPERVISOR_TOKEN is not a valid HTTP header value".into())
        })?;
    auth.set_sensitive(true);
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(2))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .build();
    let mut last_error: Option<String> = None;
    loop {
        match fetch_mqtt_service(&http, base, &auth).await {
            Ok(service) => {
                info!(broker = %format_args!("{}:{}", service.host, service.port), "Using the broker app found through the Supervisor");
                return Ok(Some(service));
            }
            Err(error) => {
                let text = error.to_string();
                if last_error.as_deref() != Some(&text) {
                    warn!(error = %text, "Waiting for an MQTT broker from the Supervisor");
                    last_error = Some(text);
                } else {
                    debug!(error = %text, "still no broker from the Supervisor");
                }
            }
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(30));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}
