//! Source stage, errors: what can go wrong talking to DSMR-reader, with advice where the user
//! can act. The HTTP client's own error is kept as the source (without the URL, which may carry
//! credentials), so the log shows the whole chain.

use std::time::Duration;

use serde_json::Value;

use super::MAX_BODY;
use super::schedule::Endpoint;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "DSMR-reader rejected the API key (403 Invalid auth key): copy the key from DSMR-reader's admin, API configuration, into dsmr_reader_api_key"
    )]
    InvalidKey,
    #[error(
        "DSMR-reader's API is disabled (403 API is disabled): enable it in DSMR-reader's admin, API configuration"
    )]
    ApiDisabled,
    #[error("DSMR-reader refused access (403 {0})")]
    Forbidden(String),
    #[error(
        "DSMR-reader answered 401: something in front of it (a reverse proxy?) asks for a login; DSMR-reader itself needs only the API key"
    )]
    Unauthorized,
    #[error(
        "DSMR-reader has no api/v2/{0} (404): check that dsmr_reader_url points at DSMR-reader 4.x or 5.x"
    )]
    NotFound(Endpoint),
    #[error("DSMR-reader answered HTTP {0}")]
    Status(u16),
    #[error("DSMR-reader answered HTTP {status} and asks to wait {retry_after_s} s")]
    RetryLater { status: u16, retry_after_s: u64 },
    #[error("DSMR-reader did not answer in time")]
    Timeout(#[source] reqwest::Error),
    #[error(
        "cannot connect to DSMR-reader: its TLS certificate is not trusted (for a certificate of your own CA set dsmr_reader_ca_file; check that dsmr_reader_url's host is the one in the certificate)"
    )]
    Certificate(#[source] reqwest::Error),
    #[error("cannot connect to DSMR-reader")]
    Connect(#[source] reqwest::Error),
    #[error(
        "request to DSMR-reader failed: redirected to another host, port or scheme; not followed, so the API key stays home (set dsmr_reader_url to the address DSMR-reader answers at)"
    )]
    Redirect(#[source] reqwest::Error),
    #[error("request to DSMR-reader failed")]
    Request(#[source] reqwest::Error),
    #[error("DSMR-reader sent something that is not its JSON ({endpoint})")]
    NotJson {
        endpoint: Endpoint,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "DSMR-reader sent something that is not its JSON ({endpoint}): expected {expected}, got {got}"
    )]
    Malformed {
        endpoint: Endpoint,
        expected: &'static str,
        got: &'static str,
    },
    #[error("DSMR-reader's answer is larger than {} KiB; not DSMR-reader?", MAX_BODY / 1024)]
    TooLarge,
    #[error("cannot set up TLS for DSMR-reader")]
    Tls(#[source] crate::tls::TlsError),
    #[error("cannot set up the HTTP client for DSMR-reader")]
    Client(#[source] reqwest::Error),
    #[error("dsmr_reader_url cannot take DSMR-reader's API paths")]
    Url(#[source] url::ParseError),
    #[error(
        "dsmr_reader_api_key cannot be sent in an HTTP header (a line break or control character?)"
    )]
    KeyNotSendable,
}

impl SourceError {
    /// Sorts a failed request. The URL is dropped first: it may carry user info, and the log
    /// names DSMR-reader already.
    pub(super) fn from_reqwest(error: reqwest::Error) -> Self {
        let error = error.without_url();
        if error.is_timeout() {
            Self::Timeout(error)
        } else if error.is_redirect() {
            Self::Redirect(error)
        } else if error.is_connect() {
            if chain_mentions(&error, "certificate") {
                Self::Certificate(error)
            } else {
                Self::Connect(error)
            }
        } else {
            Self::Request(error)
        }
    }

    /// `retry_after`: the `Retry-After` header in seconds, honoured on 429 and 503 only.
    pub(super) fn from_status(
        status: u16,
        body: &[u8],
        endpoint: Endpoint,
        retry_after: Option<u64>,
    ) -> Self {
        Self::from_answer(status, body, retry_after).unwrap_or(Self::NotFound(endpoint))
    }

    /// The error for an answer with a failing `status`, as `from_status`; `None` for a 404,
    /// which the caller words with what it asked for.
    pub fn from_answer(status: u16, body: &[u8], retry_after: Option<u64>) -> Option<Self> {
        let detail = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned));
        let error = match (status, detail.as_deref()) {
            (403, Some("Invalid auth key")) => Self::InvalidKey,
            (403, Some("API is disabled")) => Self::ApiDisabled,
            (403, detail) => {
                Self::Forbidden(detail.unwrap_or("Forbidden").chars().take(120).collect())
            }
            (401, _) => Self::Unauthorized,
            (404, _) => return None,
            (429 | 503, _) if let Some(retry_after_s) = retry_after => Self::RetryLater {
                status,
                retry_after_s,
            },
            _ => Self::Status(status),
        };
        Some(error)
    }

    /// How long DSMR-reader (or a proxy in front of it) asked to wait before the next request.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RetryLater { retry_after_s, .. } => Some(Duration::from_secs(*retry_after_s)),
            _ => None,
        }
    }

    /// Whether only the user can fix it (a key, a setting, an address): the entities turn
    /// unavailable at once instead of after a few failed polls.
    pub(crate) fn needs_user(&self) -> bool {
        matches!(
            self,
            Self::InvalidKey
                | Self::ApiDisabled
                | Self::Forbidden(_)
                | Self::Unauthorized
                | Self::NotFound(_)
                | Self::Certificate(_)
                | Self::Redirect(_)
        )
    }
}

/// rustls reports an untrusted certificate deep in the chain (`invalid peer certificate: …`).
fn chain_mentions(error: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.to_string().contains(needle) {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_bodies_become_advice() {
        let e = SourceError::from_status(
            403,
            br#"{"detail": "Invalid auth key"}"#,
            Endpoint::Version,
            None,
        );
        assert!(e.to_string().contains("dsmr_reader_api_key"));
        assert!(e.needs_user());
        let e = SourceError::from_status(
            403,
            br#"{"detail": "API is disabled"}"#,
            Endpoint::Version,
            None,
        );
        assert!(e.to_string().contains("enable it"));
        assert!(matches!(
            SourceError::from_status(500, b"<html>", Endpoint::Version, Some(7)),
            SourceError::Status(500)
        ));
    }

    #[test]
    fn retry_after_is_taken_on_429_and_503() {
        for status in [429, 503] {
            let e = SourceError::from_status(status, b"", Endpoint::Reading, Some(7));
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)), "{status}");
            assert!(e.to_string().contains("asks to wait 7 s"), "{e}");
        }
        let e = SourceError::from_status(503, b"", Endpoint::Reading, None);
        assert_eq!(e.retry_after(), None);
    }

    #[test]
    fn errors_name_the_endpoint() {
        let e = SourceError::from_status(404, b"", Endpoint::MeterStatistics, None);
        assert!(
            e.to_string()
                .contains("no api/v2/datalogger/meter-statistics (404)"),
            "{e}"
        );
        let e = SourceError::Malformed {
            endpoint: Endpoint::Peak,
            expected: "a JSON object",
            got: "a list",
        };
        assert_eq!(
            e.to_string(),
            "DSMR-reader sent something that is not its JSON \
             (consumption/quarter-hour-peak-electricity): expected a JSON object, got a list"
        );
    }
}
