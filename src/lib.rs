//! dsmr-bridge: polls DSMR-reader's REST API and republishes the readings to MQTT with Home
//! Assistant discovery.
//!
//! ```text
//! config ─▶ source ─▶ map ─▶ dedup ─▶ sink
//!           (poll      (values,  (TTL cache,   (MQTT,
//!           DSMR-      state +   pending       retained,
//!           reader)    discovery) queue)       acked)
//! ```
//! `config` validates options up front; `source` and `sink` are the only I/O; `map` and
//! `dedup` are pure and tested inline; `pipeline` wires them into one task.

pub mod config;
pub mod dedup;
#[cfg(feature = "demo")]
pub mod demo;
pub mod health;
pub mod map;
pub mod model;
pub mod pipeline;
pub mod privileges;
pub mod shutdown;
pub mod sim;
pub mod sink;
pub mod source;
pub mod tls;

use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;
use url::Url;

use config::Config;
use dedup::Stats;
use health::Health;
use pipeline::Pipeline;
use sink::supervisor::{SUPERVISOR_URL, wait_for_mqtt_service};
use sink::{BrokerConfig, MqttSink};
use source::{Cadence, DsmrClient};

/// Environment variable that points the bridge at another Supervisor (tests).
pub const SUPERVISOR_URL_ENV: &str = "DSMR_BRIDGE_SUPERVISOR_URL";

fn supervisor_token() -> Option<SecretString> {
    std::env::var("SUPERVISOR_TOKEN")
        .or_else(|_| std::env::var("HASSIO_TOKEN"))
        .ok()
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
}

/// Explicit options win; inside Home Assistant the Supervisor fills what they leave open;
/// elsewhere the broker is on localhost. `None` only when shut down while waiting.
pub async fn resolve_broker(config: &Config, shutdown: &CancellationToken) -> Option<BrokerConfig> {
    let mqtt = &config.mqtt;
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
            map::discovery::sanitize_id(&config.topics.base)
        ),
        will_topic: format!("{}/status", config.topics.base),
    };
    if mqtt.host.is_none()
        && let Some(token) = supervisor_token()
    {
        let base = std::env::var(SUPERVISOR_URL_ENV)
            .ok()
            .and_then(|u| Url::parse(&u).ok())
            .unwrap_or_else(|| Url::parse(SUPERVISOR_URL).expect("valid constant URL"));
        info!("No mqtt_host set; asking the Supervisor for the broker app");
        let service = wait_for_mqtt_service(&base, &token, shutdown).await?;
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
        if mqtt.host.is_some() || mqtt.port.is_none() {
            broker.port = if tls { 8883 } else { 1883 };
        }
    }
    if let Some(port) = mqtt.port {
        broker.port = port;
    }
    if mqtt.username.is_some() {
        broker.username = mqtt.username.clone();
        broker.password = mqtt.password.clone();
    } else if mqtt.password.is_some() {
        broker.password = mqtt.password.clone();
    }
    Some(broker)
}

/// Runs the bridge until `shutdown` is cancelled; returns what dedup counted.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<Stats> {
    tls::install_crypto_provider();
    let client = DsmrClient::new(&config.dsmr)?;
    let Some(broker) = resolve_broker(&config, &shutdown).await else {
        return Ok(Stats::default());
    };
    let cadence = Cadence::new(config.dsmr.poll_interval);
    let health = Health::new(health::health_file(), config.dsmr.poll_interval);
    run_with(config, broker, client, health, cadence, shutdown).await
}

/// `run` with the broker, the DSMR-reader client and the poll cadence already chosen (the
/// benchmark runs a simulated day with a scaled cadence).
pub async fn run_with(
    config: Config,
    broker: BrokerConfig,
    client: DsmrClient,
    health: Health,
    cadence: Cadence,
    shutdown: CancellationToken,
) -> anyhow::Result<Stats> {
    info!(
        dsmr_reader = %config.dsmr.url,
        broker = %format!("{}:{}", broker.host, broker.port),
        base_topic = %config.topics.base,
        poll_interval_s = config.dsmr.poll_interval.as_secs(),
        "Starting dsmr-bridge {}",
        env!("CARGO_PKG_VERSION")
    );
    let sink = MqttSink::start(&broker)?;
    let (events, source_events) = mpsc::channel(8);
    let source_stop = shutdown.child_token();
    // The pipeline asks for fresh meter statistics through `SourceRequest`.
    let (_source_requests, requests) = mpsc::channel(4);
    let source = tokio::spawn(source::run(
        client,
        cadence,
        events,
        requests,
        source_stop.clone(),
    ));
    let stats = Pipeline::new(&config, sink, health)
        .run(source_events, shutdown)
        .await;
    source_stop.cancel();
    let _ = source.await;
    Ok(stats)
}
