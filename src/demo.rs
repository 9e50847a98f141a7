//! Demo: the whole bridge against the simulated DSMR-reader and an embedded broker, so that
//! `dsmr-bridge demo` shows what it does on a machine with no meter and no broker.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use anyhow::Context;
use secrecy::SecretString;
use tracing::info;

use crate::config::{Config, RawOptions};
use dsmr_sim::{SimOptions, Simulator};

/// The broker port everyone expects; the demo takes another one when it is in use.
const MQTT_PORT: u16 = 1883;

/// Picks 1883 when it is free, else any free port.
fn broker_address() -> anyhow::Result<SocketAddr> {
    let preferred = SocketAddr::from((Ipv4Addr::LOCALHOST, MQTT_PORT));
    if TcpListener::bind(preferred).is_ok() {
        return Ok(preferred);
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("no free port for the embedded broker")?;
    Ok(listener.local_addr()?)
}

/// Starts rumqttd on `address` in a thread of its own (its API blocks).
pub fn start_embedded_broker(address: SocketAddr) -> anyhow::Result<()> {
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
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            if let Err(error) = rumqttd::Broker::new(config).start() {
                tracing::error!(error = %error, "embedded broker stopped");
            }
        })
        .context("start the embedded broker")?;
    // Wait until it accepts connections, so the bridge's first attempt succeeds.
    for _ in 0..100 {
        if std::net::TcpStream::connect(address).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    anyhow::bail!("the embedded broker did not start on {address}")
}

/// Runs until Ctrl-C. Options given on the command line (`--mqtt-host` to show the fake meter
/// in a real Home Assistant, `--base-topic`, ...) apply; the DSMR-reader ones are the simulator's.
pub async fn run(flags: RawOptions) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    let shutdown = crate::shutdown::on_signals()?;
    let sim_options = SimOptions::default();
    let key = sim_options.api_key.clone();
    let sim = Simulator::start(sim_options)
        .await
        .context("start the simulated DSMR-reader")?;
    info!(url = %sim.url(), "Simulated DSMR-reader running: a three-phase meter with gas and solar panels");

    let mut demo = RawOptions {
        dsmr_reader_url: Some(sim.url().to_string()),
        dsmr_reader_api_key: Some(SecretString::from(key)),
        ..RawOptions::default()
    };
    if flags.mqtt_host.is_none() {
        let address = broker_address()?;
        start_embedded_broker(address)?;
        if address.port() == MQTT_PORT {
            info!(broker = %address, "Embedded MQTT broker running");
        } else {
            info!(broker = %address, "Port 1883 is in use; embedded MQTT broker running on another port");
        }
        info!(
            "Watch it with: mosquitto_sub -h 127.0.0.1 -p {} -t 'dsmr-bridge/#' -t 'homeassistant/#' -v",
            address.port()
        );
        demo.mqtt_host = Some(address.ip().to_string());
        demo.mqtt_port = Some(address.port());
    }
    let raw = RawOptions {
        dsmr_reader_url: None,
        dsmr_reader_api_key: None,
        dsmr_reader_ca_file: None,
        ..flags
    }
    .over(demo);
    let config = Config::try_from(raw)?;
    crate::run(config, shutdown).await?;
    sim.shutdown();
    Ok(())
}
