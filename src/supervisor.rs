//! Supervisor client, an edge of the pipeline: inside Home Assistant the Supervisor's services
//! API names the broker app (Mosquitto) and the credentials it made for apps.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

/// The token the Supervisor gives an app: whether the bridge runs inside Home Assistant is
/// decided here alone. `SUPERVISOR_TOKEN`, or `HASSIO_TOKEN` as older Supervisors name it.
pub fn token() -> Option<SecretString> {
    std::env::var("SUPERVISOR_TOKEN")
        .or_else(|_| std::env::var("HASSIO_TOKEN"))
        .ok()
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
}

/// Default address of the Supervisor API inside an app container.
pub(crate) const SUPERVISOR_URL: &str = "http://supervisor/";

/// Pauses between questions while no broker is named: from 2 s, growing to 30 s at most.
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The services answer is a few hundred bytes; anything near this is not the Supervisor's.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SupervisorError {
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
    /// Never holds a value from the answer: it may be (or be next to) the broker's password.
    #[error("the Supervisor's answer is not understood: {0}")]
    Malformed(String),
    #[error("the Supervisor's answer is too large (over {} KiB)", MAX_BODY / 1024)]
    TooLarge,
    #[error("cannot set up the HTTP client for the Supervisor: {0}")]
    Setup(String),
}

/// The broker as the Supervisor describes it.
#[derive(Clone)]
pub struct MqttService {
    pub host: String,
    pub(crate) port: u16,
    pub(crate) ssl: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<SecretString>,
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
    #[serde(default, deserialize_with = "text_or_number")]
    username: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    password: Option<String>,
}

/// A user name or password made only of digits may come as a JSON number; it means its text.
fn text_or_number<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(Option::<Text>::deserialize(de)?.map(|t| match t {
        Text::Text(text) => text,
        Text::Number(n) => n.to_string(),
    }))
}

/// What was wrong with the answer, without the value: serde quotes the value it rejects
/// (`invalid type: integer `123456`, expected a string`), which may be the password.
fn not_understood(error: serde_path_to_error::Error<serde_json::Error>) -> SupervisorError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let reason = match inner.classify() {
        serde_json::error::Category::Data => {
            let text = inner.to_string();
            // A missing field's message names only the field.
            if text.starts_with("missing field") {
                let text = text.split(" at line ").next().unwrap_or_default();
                format!("{path}: {text}")
            } else {
                format!("{path} is not of the expected type")
            }
        }
        _ => "not JSON".to_owned(),
    };
    SupervisorError::Malformed(reason)
}

/// Reads the body up to `MAX_BODY`, so that a runaway answer is refused before it fills the
/// memory (a length announced over the cap is refused unread).
async fn capped_body(mut response: reqwest::Response) -> Result<Vec<u8>, SupervisorError> {
    if response
        .content_length()
        .is_some_and(|l| l > MAX_BODY as u64)
    {
        return Err(SupervisorError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SupervisorError::Request(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(SupervisorError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Asks once; `auth` is the `Authorization` header with the Supervisor's token.
pub(crate) async fn fetch_mqtt_service(
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
    match status {
        200 => {}
        400 => return Err(SupervisorError::NotEnabled),
        401 | 403 => return Err(SupervisorError::Denied),
        other => return Err(SupervisorError::Status(other)),
    }
    let body = capped_body(response).await?;
    let envelope: Envelope =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
            .map_err(not_understood)?;
    let data = envelope
        .data
        .ok_or_else(|| SupervisorError::Malformed("no data".into()))?;
    let port = match &data.port {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|p| *p != 0)
    .ok_or_else(|| SupervisorError::Malformed("data.port is not a port number".into()))?;
    Ok(MqttService {
        host: data.host,
        port,
        ssl: data.ssl,
        username: data.username.filter(|u| !u.is_empty()),
        password: data.password.map(SecretString::from),
    })
}

/// Asks until the Supervisor names a broker (the broker app may still be starting); `None` when
/// shut down while waiting. Logs the reason once, then again only when it changes. Only a
/// failure to set up the client is an error: everything the Supervisor answers is retried.
pub(crate) async fn wait_for_mqtt_service(
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
    let mut backoff = crate::retry::pauses(FIRST_RETRY, MAX_RETRY);
    let mut failures = crate::retry::Failures::default();
    loop {
        match fetch_mqtt_service(&http, base, &auth).await {
            Ok(service) => {
                info!(broker = %format_args!("{}:{}", service.host, service.port), "Using the broker app found through the Supervisor");
                return Ok(Some(service));
            }
            Err(error) => {
                let text = error.to_string();
                if failures.failed(&text) {
                    warn!(error = %text, "Waiting for an MQTT broker from the Supervisor");
                } else {
                    debug!(error = %text, "still no broker from the Supervisor");
                }
            }
        }
        let delay = backoff.next().unwrap_or(MAX_RETRY);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

    use super::*;

    async fn ask(base: &Url) -> Result<MqttService, SupervisorError> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::new();
        fetch_mqtt_service(&http, base, &HeaderValue::from_static("Bearer token")).await
    }

    async fn answering(body: impl Into<Vec<u8>>) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(matchers::path("/services/mqtt"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
            .mount(&server)
            .await;
        server
    }

    fn base(server: &MockServer) -> Url {
        Url::parse(&server.uri()).unwrap()
    }

    /// An answer far larger than any the Supervisor gives is refused, not read whole.
    #[tokio::test]
    async fn a_huge_answer_is_refused() {
        let padding = " ".repeat(8 * 1024 * 1024);
        let server = answering(format!(
            r#"{{"result": "ok", "data": {{"host": "core-mosquitto", "port": 1883{padding}}}}}"#
        ))
        .await;
        let error = ask(&base(&server)).await.err().expect("an error");
        assert!(error.to_string().contains("too large"), "{error}");
    }

    /// Without a length announced, the body is read only up to the cap: a long answer (here
    /// 32 MiB, cut short so that the test ends either way) is refused the same.
    #[tokio::test]
    async fn a_long_answer_without_a_length_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
            for _ in 0..512 {
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return; // the client hung up
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        });
        let error = ask(&url).await.err().expect("an error");
        assert!(error.to_string().contains("too large"), "{error}");
    }

    /// A password that is all digits may come as a JSON number: it is used as its text, and
    /// never shown when something else in the answer is wrong.
    #[tokio::test]
    async fn a_numeric_password_is_taken_as_text_and_never_shown() {
        let server = answering(
            r#"{"result": "ok", "data": {"host": "core-mosquitto", "port": 1883, "username": "addons", "password": 123456}}"#,
        )
        .await;
        let service = ask(&base(&server)).await.expect("understood");
        assert_eq!(
            service
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            Some("123456".to_owned())
        );

        for body in [
            r#"{"result": "ok", "data": {"host": "core-mosquitto", "port": 1883, "password": [123456]}}"#,
            r#"{"result": "ok", "data": {"host": "core-mosquitto", "port": 1883, "password": {"x": "123456"}}}"#,
            r#"{"result": "ok", "data": {"host": 123456, "port": 1883, "password": "p"}}"#,
            r#"{"result": "ok", "data": {"host": "h", "port": "123456", "password": "p"}}"#,
            r#"{"result": "ok", "data": "123456"}"#,
        ] {
            let server = answering(body).await;
            let error = ask(&base(&server)).await.err().expect("an error");
            let text = error.to_string();
            assert!(
                text.starts_with("the Supervisor's answer is not understood"),
                "{text}"
            );
            assert!(!text.contains("123456"), "{body}: {text}");
        }
    }
}
