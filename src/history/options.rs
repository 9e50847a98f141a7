//! History, its options: where Home Assistant's statistics are and how to log in, validated
//! here and handed to `config` as one typed value.

use secrecy::SecretString;
use url::Url;

use super::HistoryConfig;
use super::ha::HaTarget;

/// An invalid history option, in the one-line form `option: reason` the app's log shows.
#[derive(Debug, thiserror::Error)]
#[error("{option}: {reason}")]
pub struct OptionError {
    pub option: &'static str,
    pub reason: String,
}

fn invalid(option: &'static str, reason: impl Into<String>) -> OptionError {
    OptionError {
        option,
        reason: reason.into(),
    }
}

/// Core's WebSocket API as the Supervisor proxies it for an app with `homeassistant_api: true`.
pub(crate) const SUPERVISOR_CORE_WEBSOCKET: &str = "ws://supervisor/core/websocket";

/// The history's target: the Supervisor's proxy inside Home Assistant (unless an address is
/// given), else `homeassistant_url` with `homeassistant_token`.
pub(crate) fn history(
    enabled: Option<bool>,
    url: Option<&str>,
    token: Option<SecretString>,
    supervisor_token: Option<SecretString>,
) -> Result<Option<HistoryConfig>, OptionError> {
    use secrecy::ExposeSecret;

    // Each given value is checked on its own first, so that an error names the option at fault.
    let url = url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(homeassistant_url)
        .transpose()?;
    let token = token
        .map(|t| t.expose_secret().trim().to_owned())
        .filter(|t| !t.is_empty());
    if let Some(secret) = &token
        && (secret.chars().any(|c| c.is_control() || c == ' ') || !secret.is_ascii())
    {
        return Err(invalid(
            "homeassistant_token",
            "contains spaces or characters a token does not have",
        ));
    }
    if enabled == Some(false) {
        return Ok(None);
    }
    let target = match (url, token, supervisor_token) {
        (Some(url), Some(token), _) => HaTarget {
            url,
            token: SecretString::from(token),
            token_source: "homeassistant_token",
        },
        (Some(_), None, _) => {
            return Err(invalid(
                "homeassistant_token",
                "missing: create a long-lived access token in Home Assistant (your profile, Security) and set it here",
            ));
        }
        (None, Some(_), None) => {
            return Err(invalid(
                "homeassistant_url",
                "missing: set it to Home Assistant's address, e.g. http://homeassistant.local:8123/",
            ));
        }
        (None, _, Some(supervisor)) => HaTarget {
            url: Url::parse(SUPERVISOR_CORE_WEBSOCKET).expect("a valid constant URL"),
            token: supervisor,
            token_source: "the app's access to Home Assistant (homeassistant_api in config.yaml)",
        },
        (None, None, None) if enabled == Some(true) => {
            return Err(invalid(
                "history",
                "needs homeassistant_url and homeassistant_token outside Home Assistant",
            ));
        }
        (None, None, None) => return Ok(None),
    };
    Ok(Some(HistoryConfig { target }))
}

/// `http://ha:8123/` → `ws://ha:8123/api/websocket`; a `ws://` or `wss://` address is taken as
/// the WebSocket endpoint itself.
fn homeassistant_url(text: &str) -> Result<Url, OptionError> {
    let option = "homeassistant_url";
    let mut url = Url::parse(text).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            invalid(option, format!("no scheme; did you mean http://{text} ?"))
        }
        e => invalid(option, e.to_string()),
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(option, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            option,
            "must not hold a user name or password; the token logs in",
        ));
    }
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(invalid(
                option,
                format!("scheme {other} is not http, https, ws or wss"),
            ));
        }
    };
    if matches!(url.scheme(), "http" | "https") {
        let path = format!("{}/api/websocket", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    url.set_scheme(scheme)
        .map_err(|()| invalid(option, "cannot be turned into a WebSocket address"))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_targets_the_supervisor_inside_and_the_given_address_outside() {
        let token = || Some(SecretString::from("abc.def"));
        let inside = history(None, None, None, Some("sup".into()))
            .unwrap()
            .unwrap();
        assert_eq!(inside.target.url.as_str(), SUPERVISOR_CORE_WEBSOCKET);
        assert!(
            history(Some(false), None, None, Some("sup".into()))
                .unwrap()
                .is_none()
        );
        assert!(
            history(None, None, None, None).unwrap().is_none(),
            "off outside by default"
        );
        let outside = history(None, Some("http://ha.local:8123/"), token(), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            outside.target.url.as_str(),
            "ws://ha.local:8123/api/websocket"
        );
        assert_eq!(outside.target.token_source, "homeassistant_token");
        let tls = history(None, Some("https://ha.example/base"), token(), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            tls.target.url.as_str(),
            "wss://ha.example/base/api/websocket"
        );
        let ws = history(
            None,
            Some("ws://127.0.0.1:8123/api/websocket"),
            token(),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ws.target.url.as_str(), "ws://127.0.0.1:8123/api/websocket");
    }

    #[test]
    fn history_errors_name_the_option_and_never_the_token() {
        let err = |e: Result<Option<HistoryConfig>, OptionError>| e.unwrap_err().to_string();
        let secret = || Some(SecretString::from("very-secret token"));
        assert!(err(history(Some(true), None, None, None)).starts_with("history: "));
        assert!(
            err(history(None, Some("http://ha:8123"), None, None))
                .starts_with("homeassistant_token: missing")
        );
        assert!(
            err(history(None, None, Some(SecretString::from("t")), None))
                .starts_with("homeassistant_url: missing")
        );
        let bad = err(history(None, Some("http://ha:8123"), secret(), None));
        assert!(bad.starts_with("homeassistant_token: "), "{bad}");
        assert!(!bad.contains("very-secret"));
        assert!(
            err(history(None, Some("ha.local:8123"), Some("t".into()), None))
                .starts_with("homeassistant_url: ")
        );
        assert!(
            err(history(None, Some("ftp://ha"), Some("t".into()), None))
                .contains("not http, https, ws or wss")
        );
        let cfg = history(None, Some("http://ha:8123"), Some("tok-123".into()), None)
            .unwrap()
            .unwrap();
        assert!(!format!("{cfg:?}").contains("tok-123"));
    }
}
