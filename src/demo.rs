//! Demo: the whole bridge against the simulated DSMR-reader and an embedded broker, so that
//! `dsmr-bridge demo` shows what it does on a machine with no meter and no broker.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use dsmr_sim::{P1Profile, SimOptions, Simulator};
use secrecy::SecretString;
use tracing::level_filters::LevelFilter;

use crate::config::{Config, ConfigError, DemoArgs, DemoMeter, RawOptions};

/// The broker port everyone expects; the demo takes another one when it is in use.
const MQTT_PORT: u16 = 1883;
/// The status page's port, as in Home Assistant; another one when it is in use.
const PAGE_PORT: u16 = crate::web::INGRESS_PORT;
/// How long the embedded broker may take to accept connections.
const BROKER_START: Duration = Duration::from_secs(5);

/// A validated demo: the bridge's configuration, with DSMR-reader filled in once the simulator
/// runs and the broker once the embedded one does.
pub struct Demo {
    config: Config,
    broker: DemoBroker,
    meter: DemoMeter,
}

enum DemoBroker {
    /// rumqttd on `--mqtt-port` of 127.0.0.1, if given.
    Embedded(Option<u16>),
    /// `--mqtt-host`'s broker, already in the configuration.
    External,
}

impl Demo {
    /// Checks the options as the bridge would, so a bad one stops the demo before it starts.
    pub fn new(args: &DemoArgs) -> Result<Demo, ConfigError> {
        let placeholder = RawOptions {
            // Replaced by the simulator's address and key in `run`.
            dsmr_reader_url: Some("http://127.0.0.1/".to_owned()),
            dsmr_reader_api_key: Some(SecretString::from("demo")),
            ..RawOptions::default()
        };
        let config = Config::try_from(args.options().over(placeholder))?;
        let broker = match args.mqtt_host {
            Some(_) => DemoBroker::External,
            None => DemoBroker::Embedded(args.mqtt_port),
        };
        Ok(Demo {
            config,
            broker,
            meter: args.meter.unwrap_or_default(),
        })
    }

    /// The secrets of the demo's options: a password for `--mqtt-host`'s broker. The API key
    /// is the simulator's, no secret, and its placeholder ("demo") would cut every "demo".
    pub fn redactor(&self) -> crate::secrets::Redactor {
        let redactor = crate::secrets::Redactor::default();
        if let Some(password) = &self.config.mqtt.password {
            redactor.add(
                "mqtt password",
                secrecy::ExposeSecret::expose_secret(password),
            );
        }
        redactor
    }

    pub fn log_level(&self) -> LevelFilter {
        self.config.log_level
    }

    /// Log filter directives after the level. The embedded broker's own log stays off: it
    /// reports ordinary events (a client leaving, shutting down) as errors, and a failure to
    /// start is reported by the demo itself.
    pub fn extra_log_directives(&self) -> String {
        ",rumqttd=off".to_owned()
    }

    /// Runs until Ctrl-C or SIGTERM.
    pub async fn run(
        self,
        recent: crate::web::RecentLog,
        redactor: crate::secrets::Redactor,
    ) -> anyhow::Result<()> {
        crate::tls::install_crypto_provider();
        let shutdown = crate::shutdown::on_signals()?;
        let mut config = self.config;
        config.show_published = true;
        let broker = match self.broker {
            DemoBroker::Embedded(port) => {
                let address = start_embedded_broker(port)?;
                config.mqtt.host = Some(address.ip().to_string());
                config.mqtt.port = Some(address.port());
                if port.is_none() && address.port() != MQTT_PORT {
                    format!("{address} (embedded; port {MQTT_PORT} is in use)")
                } else {
                    format!("{address} (embedded)")
                }
            }
            DemoBroker::External => format!(
                "{}:{}",
                config.mqtt.host.as_deref().unwrap_or_default(),
                config.mqtt.port.unwrap_or(MQTT_PORT)
            ),
        };
        // A concrete port, so that the banner can name it.
        let page = page_address(config.status_listen)?;
        config.status_listen = Some(page);

        let (p1, meter) = match self.meter {
            DemoMeter::Dutch => (
                P1Profile::Dutch,
                "three-phase meter with gas and solar panels",
            ),
            DemoMeter::DutchWater => (
                P1Profile::DutchWithWater,
                "three-phase meter with gas, a water meter and solar panels",
            ),
            DemoMeter::Belgian => (
                P1Profile::Belgian,
                "Belgian three-phase meter with gas, solar panels and a year of monthly maxima",
            ),
        };
        let sim_options = SimOptions {
            p1,
            ..SimOptions::default()
        };
        config.dsmr.api_key = SecretString::from(sim_options.api_key.clone());
        let sim = Simulator::start(sim_options)
            .await
            .context("start the simulated DSMR-reader")?;
        config.dsmr.url = sim.url();

        eprint!("{}", banner(&config, meter, &broker, page, &sim.url()));
        let result = crate::run(config, recent, redactor, shutdown).await;
        sim.shutdown();
        result.map(drop)
    }
}

/// Where everything is, said once at start whatever the log level (on stderr, so that
/// `--log-level warn` or a log piped elsewhere keeps it on screen).
fn banner(
    config: &Config,
    meter: &str,
    broker: &str,
    page: SocketAddr,
    dsmr_reader: &url::Url,
) -> String {
    let (host, port) = (
        config.mqtt.host.as_deref().unwrap_or_default(),
        config.mqtt.port.unwrap_or(MQTT_PORT),
    );
    format!(
        "dsmr-bridge demo: a simulated {meter}\n\
         \x20 Status page       http://{page}/\n\
         \x20 MQTT broker       {broker}\n\
         \x20 Watch messages    mosquitto_sub -h {host} -p {port} -t '{}/#' -t '{}/#' -v\n\
         \x20 DSMR-reader       {dsmr_reader} (simulated)\n\
         \x20 Stop with Ctrl-C\n",
        config.topics.base, config.topics.discovery_prefix,
    )
}

/// Starts rumqttd on 127.0.0.1 in a thread of its own (its API blocks) and waits until it
/// accepts connections. `port`: `--mqtt-port`; without it 1883 when free, else any free port.
fn start_embedded_broker(port: Option<u16>) -> anyhow::Result<SocketAddr> {
    let address = match port {
        Some(port) => {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            // Checked here because rumqttd only logs a failed bind (and the probe below would
            // then reach whatever holds the port).
            let probe = TcpListener::bind(address)
                .with_context(|| format!("--mqtt-port {port}: cannot listen on {address}"))?;
            probe.local_addr()?
        }
        None => free_address()?,
    };
    let config: rumqttd::Config = serde_json::from_value(serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": 64,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 1_048_576,
            "max_segment_count": 10
        },
        "v4": {
            "1": {
                "name": "demo",
                "listen": address.to_string(),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 60_000,
                    "max_payload_size": 262_144,
                    "max_inflight_count": 100,
                    "dynamic_filters": true
                }
            }
        }
    }))
    .context("embedded broker config")?;
    let broker: JoinHandle<Result<(), String>> = std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            rumqttd::Broker::new(config)
                .start()
                .map_err(|e| e.to_string())
        })
        .context("start the embedded broker")?;
    let deadline = Instant::now() + BROKER_START;
    loop {
        // `start` returns only when its listener has given up.
        if broker.is_finished() {
            let reason = match broker.join() {
                Ok(Err(error)) => error,
                _ => format!("could not listen on {address}"),
            };
            anyhow::bail!("the embedded broker did not start: {reason}");
        }
        if TcpStream::connect(address).is_ok() {
            return Ok(address);
        }
        if Instant::now() > deadline {
            anyhow::bail!("the embedded broker did not start on {address}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--status-listen`, else 127.0.0.1:8099 when it is free, else a free port; port 0 becomes a
/// free port too, so that the banner names the real one.
fn page_address(given: Option<SocketAddr>) -> anyhow::Result<SocketAddr> {
    let wanted = given.unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, PAGE_PORT)));
    if wanted.port() != 0 && (given.is_some() || TcpListener::bind(wanted).is_ok()) {
        return Ok(wanted);
    }
    let free = TcpListener::bind(SocketAddr::new(wanted.ip(), 0))
        .with_context(|| format!("no free port for the status page on {}", wanted.ip()))?;
    Ok(free.local_addr()?)
}

/// 1883 when it is free, else any free port.
fn free_address() -> anyhow::Result<SocketAddr> {
    let preferred = SocketAddr::from((Ipv4Addr::LOCALHOST, MQTT_PORT));
    if TcpListener::bind(preferred).is_ok() {
        return Ok(preferred);
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("no free port for the embedded broker")?;
    Ok(listener.local_addr()?)
}
