//! Config stage, the broker: which broker to connect to and how, from the options and, inside
//! Home Assistant, the Supervisor's answer. `resolve` is pure; `locate` adds the Supervisor.

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tracing::info;
use url::Url;

use crate::config::Config;
use crate::map::Topics;
use crate::sink::BrokerConfig;
use crate::supervisor::{self, MqttService, SUPERVISOR_URL, SupervisorError};

/// Environment variable that points the bridge at another Supervisor (tests).
pub(crate) const SUPERVISOR_URL_ENV: &str = "DSMR_BRIDGE_SUPERVISOR_URL";

/// The Supervisor's address and token when running as a Home Assistant app.
fn supervisor() -> Option<(Url, SecretString)> {
    let token = supervisor::token()?;
    let base = std::env::var(SUPERVISOR_URL_ENV)
        .ok()
        .and_then(|u| Url::parse(&u).ok())
        .unwrap_or_else(|| Url::parse(SUPERVISOR_URL).expect("valid constant URL"));
    Some((base, token))
}

/// Running as a Home Assistant app: the Supervisor gave the app a token.
pub(crate) fn inside_home_assistant() -> bool {
    supervisor().is_some()
}

/// Explicit options win; inside Home Assistant the Supervisor fills what they leave open
/// (only asked when `mqtt_host` is not set); elsewhere the broker is on localhost. `Ok(None)`
/// only when shut down while waiting for the Supervisor.
pub(crate) async fn locate(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<BrokerConfig>, SupervisorError> {
    let mut service = None;
    if config.mqtt.host.is_none()
        && let Some((base, token)) = supervisor()
    {
        info!("No mqtt_host set; asking the Supervisor for the broker app");
        match supervisor::wait_for_mqtt_service(&base, &token, shutdown).await? {
            Some(found) => service = Some(found),
            None => return Ok(None),
        }
    }
    Ok(Some(resolve(config, service)))
}

/// The connection settings from the options, over what the Supervisor said (if asked).
pub fn resolve(config: &Config, service: Option<MqttService>) -> BrokerConfig {
    let mqtt = &config.mqtt;
    let topics = Topics::new(&config.topics.base);
    let mut broker = BrokerConfig {
        host: "localhost".into(),
        port: 1883,
        username: None,
        password: None,
        tls: false,
        ca_pem: mqtt.ca_pem.clone(),
        qos: mqtt.qos,
        client_id: format!(
            "dsmr-bridge_{}",
            crate::map::discovery::sanitize_id(&config.topics.base)
        ),
        will_topic: topics.bridge_status.to_string(),
    };
    if let Some(service) = service {
        broker.host = service.host;
        broker.port = service.port;
        broker.tls = service.ssl;
        broker.username = service.username;
        broker.password = service.password;
    }
    if let Some(host) = &mqtt.host {
        broker.host = host.clone();
    }
    if let Some(tls) = mqtt.tls {
        broker.tls = tls;
        // The Supervisor's port belongs to its own TLS choice; a different choice means the
        // standard port for it, unless a port is given.
        if mqtt.host.is_some() || mqtt.port.is_none() {
            broker.port = if tls { 8883 } else { 1883 };
        }
    }
    if let Some(port) = mqtt.port {
        broker.port = port;
    }
    // The options hold a password only together with a user name (config.rs).
    if mqtt.username.is_some() {
        broker.username = mqtt.username.clone();
        broker.password = mqtt.password.clone();
    }
    broker
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::RawOptions;

    fn config(raw: RawOptions) -> Config {
        Config::try_from(RawOptions {
            dsmr_reader_url: Some("http://dsmr.local:7777/".into()),
            dsmr_reader_api_key: Some("key".into()),
            ..raw
        })
        .expect("valid options")
    }

    fn supervisor_broker() -> MqttService {
        MqttService {
            host: "core-mosquitto".into(),
            port: 1883,
            ssl: false,
            username: Some("addons".into()),
            password: Some("from-supervisor".into()),
        }
    }

    #[test]
    fn defaults_to_localhost_outside_home_assistant() {
        let broker = resolve(&config(RawOptions::default()), None);
        assert_eq!(
            (broker.host.as_str(), broker.port, broker.tls),
            ("localhost", 1883, false)
        );
        assert_eq!(broker.client_id, "dsmr-bridge_dsmr-bridge");
        assert_eq!(broker.will_topic, "dsmr-bridge/status");
    }

    #[test]
    fn supervisor_fills_what_the_options_leave_open() {
        let broker = resolve(&config(RawOptions::default()), Some(supervisor_broker()));
        assert_eq!(
            (broker.host.as_str(), broker.port),
            ("core-mosquitto", 1883)
        );
        assert_eq!(broker.username.as_deref(), Some("addons"));
        assert_eq!(
            broker
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            Some("from-supervisor".into())
        );
    }

    #[test]
    fn explicit_options_win_over_the_supervisor() {
        let options = RawOptions {
            mqtt_port: Some(1884),
            mqtt_username: Some("me".into()),
            mqtt_password: Some("mine".into()),
            ..RawOptions::default()
        };
        let broker = resolve(&config(options), Some(supervisor_broker()));
        assert_eq!(
            (broker.host.as_str(), broker.port),
            ("core-mosquitto", 1884)
        );
        assert_eq!(broker.username.as_deref(), Some("me"));
        assert_eq!(
            broker
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            Some("mine".into())
        );
    }

    #[test]
    fn tls_choice_picks_the_standard_port_unless_one_is_given() {
        let tls = RawOptions {
            mqtt_tls: Some(true),
            ..RawOptions::default()
        };
        let broker = resolve(&config(tls.clone()), Some(supervisor_broker()));
        assert_eq!((broker.port, broker.tls), (8883, true));
        let with_port = RawOptions {
            mqtt_port: Some(8884),
            ..tls
        };
        assert_eq!(resolve(&config(with_port), None).port, 8884);
    }
}
