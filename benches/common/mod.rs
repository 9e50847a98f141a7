//! Shared by the benchmarks: the simulated installation and its day, the bridge's options, and
//! the pipeline's map stage replayed on snapshots, exactly as `pipeline.rs` drives it.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::Context;
use dsmr_bridge::config::{Config, RawOptions};
use dsmr_bridge::map::{MeterState, Topics, state_messages};
use dsmr_bridge::model::{Message, Snapshot};
use dsmr_bridge::source::{Cadence, DsmrClient, Endpoint, Schedule};
use dsmr_sim::{SimOptions, Simulator};
use secrecy::SecretString;
use time::OffsetDateTime;
use time::macros::datetime;

pub const API_KEY: &str = "bench-key";
pub const BASE_TOPIC: &str = "dsmr-bridge";
/// The simulated day: a spring Tuesday in the Netherlands (CEST), so there is heating gas in the
/// morning, solar return around noon and both tariffs. Fixed (and in the past, so the bridge's
/// "reading from the future" check never fires) so every run sees the same household.
pub const DAY_START: OffsetDateTime = datetime!(2024-04-16 00:00 +02:00);
pub const SEED: u64 = 1;
/// The bridge's defaults, in simulated time.
pub const POLL: Duration = Duration::from_secs(5);
pub const CACHE_TTL: Duration = Duration::from_secs(3600);
/// Polls per hour at the default interval.
pub const POLLS_PER_HOUR: u64 = 720;

pub fn sim_options(start: OffsetDateTime, speed: f64, seed: u64) -> SimOptions {
    SimOptions {
        api_key: API_KEY.to_owned(),
        start,
        speed,
        seed,
        ..SimOptions::default()
    }
}

/// The bridge's configuration as a user would write it (defaults everywhere else).
pub fn config(dsmr_url: &str, mqtt_port: Option<u16>, base: &str) -> anyhow::Result<Config> {
    Config::try_from(RawOptions {
        dsmr_reader_url: Some(dsmr_url.to_owned()),
        dsmr_reader_api_key: Some(SecretString::from(API_KEY)),
        mqtt_host: Some("127.0.0.1".to_owned()),
        mqtt_port,
        base_topic: Some(base.to_owned()),
        ..RawOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("bench config: {e}"))
}

/// `n` polls 5 simulated seconds apart from `start`, asking what the source's `Schedule` asks
/// at the default interval (the newest reading every poll, meter statistics and today's totals
/// every 12th, the peak and monitoring every 60th, the version on the first). The simulator's
/// clock is stepped, not running, so the same arguments always give the same snapshots.
pub async fn snapshots(
    start: OffsetDateTime,
    n: usize,
    seed: u64,
) -> anyhow::Result<Vec<Snapshot>> {
    dsmr_bridge::tls::install_crypto_provider();
    let sim = Simulator::start(sim_options(start, 1.0, seed)).await?;
    sim.pause_clock(true);
    let config = config(sim.url().as_str(), None, BASE_TOPIC)?;
    let client = DsmrClient::new(&config.dsmr)?;
    let origin = tokio::time::Instant::now();
    let mut schedule = Schedule::new(Cadence::new(POLL), origin);
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let offset = POLL * k as u32;
        sim.set_time(start + offset);
        let at = origin + offset;
        let mut snapshot = Snapshot::default();
        for endpoint in schedule.due(at).iter() {
            match endpoint {
                Endpoint::MeterStatistics => {
                    snapshot.meter_stats = Some(client.meter_statistics().await?);
                }
                Endpoint::Reading => snapshot.reading = client.latest_reading(None, None).await?,
                Endpoint::Today => snapshot.today = client.today().await?,
                Endpoint::Peak => snapshot.peak = client.quarter_hour_peak().await?,
                Endpoint::Monitoring => snapshot.monitoring = Some(client.monitoring().await?),
                Endpoint::Version => snapshot.version = Some(client.version().await?),
            }
            schedule.fetched(endpoint, at);
        }
        out.push(snapshot);
    }
    sim.shutdown();
    Ok(out)
}

/// A runtime for the async helpers above and the end-to-end benchmark's simulator and
/// pass-through.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// The map stage as the pipeline drives it: every valid value of a poll is offered (changed or
/// not; dedup decides), and DSMR-reader's reachability once after the first poll.
pub struct Mapper {
    pub state: MeterState,
    pub topics: Topics,
    reachable_sent: bool,
}

impl Mapper {
    pub fn new(base: &str) -> Self {
        Self {
            state: MeterState::new(base),
            topics: Topics::new(base),
            reachable_sent: false,
        }
    }

    /// The state messages one poll offers to dedup, in the pipeline's order.
    pub fn poll(&mut self, snapshot: &Snapshot, now: OffsetDateTime) -> Vec<Message> {
        let offered = self.state.apply(snapshot, now);
        let mut messages: Vec<Message> =
            state_messages(&self.state, &self.topics, offered).collect();
        if !self.reachable_sent {
            self.reachable_sent = true;
            let index = self.state.set_reachable(true);
            messages.extend(state_messages(&self.state, &self.topics, [index]));
        }
        messages
    }
}

/// Topic plus payload bytes: what `dedup::Stats::published_bytes` counts (MQTT framing not
/// included).
pub fn message_bytes(topic: &str, payload: &str) -> u64 {
    (topic.len() + payload.len()) as u64
}
