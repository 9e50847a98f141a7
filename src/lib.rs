//! dsmr-bridge: polls DSMR-reader's REST API and republishes the readings to MQTT with Home
//! Assistant discovery.
//!
//! ```text
//! config ─▶ source ─▶ map ─▶ dedup ─▶ sink
//!           (poll      (values,  (TTL cache,   (MQTT,
//!           DSMR-      state +   pending       retained,
//!           reader)    discovery) queue)       acked)
//! ```
//! `config` validates options up front (`broker` adds the Supervisor's answer inside Home
//! Assistant); `map` and `dedup` are pure and tested inline; `pipeline` drives them in one task
//! through two seams, the source's event channel and the `sink::Sink` trait, so its rules run
//! in tests on a paused clock. I/O lives only at the edges: `source` (DSMR-reader), `sink`
//! (the broker), `supervisor` (Home Assistant's Supervisor), `health` (the health file) and
//! `web` (the status page), the last two fed from the pipeline's `status`.

pub mod broker;
pub mod config;
pub mod dedup;
#[cfg(feature = "demo")]
pub mod demo;
pub mod health;
pub mod history;
pub mod map;
pub mod model;
pub mod pipeline;
pub mod privileges;
pub(crate) mod retry;
pub mod secrets;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod status;
pub mod supervisor;
pub mod tls;
pub mod web;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use config::Config;
use dedup::Stats;
use pipeline::Pipeline;
use sink::{BrokerConfig, MqttSink};
use source::{Cadence, DsmrClient};
use status::StatusReporter;

/// Runs the bridge until `shutdown` is cancelled; returns what dedup counted. Any failure to
/// set up is an error (the process exits non-zero, so the Supervisor sees a failed start).
/// `recent` holds the log's recent warnings, for the status page; `redactor` cuts the
/// secrets out of what the page shows (and learns the broker password the Supervisor gives).
pub async fn run(
    config: Config,
    recent: web::RecentLog,
    redactor: secrets::Redactor,
    shutdown: CancellationToken,
) -> anyhow::Result<Stats> {
    tls::install_crypto_provider();
    let client = DsmrClient::new(&config.dsmr)?;
    // Bound first: an address in use stops the start before anything is published.
    let page = match web::Listen::choose(broker::inside_home_assistant(), config.status_listen) {
        Some(listen) => Some((web::bind(listen).await?, listen)),
        None => None,
    };
    let Some(broker) = broker::locate(&config, &shutdown).await? else {
        return Ok(Stats::default());
    };
    if let Some(password) = &broker.password {
        redactor.add(
            "mqtt password",
            secrecy::ExposeSecret::expose_secret(password),
        );
    }
    let cadence = Cadence::new(config.dsmr.poll_interval);
    let (status, watched) = StatusReporter::new();
    let page_stop = shutdown.child_token();
    if let Some((listener, listen)) = page {
        let page = web::Page {
            status: status.subscribe(),
            recent,
            broker: format!("{}:{}", broker.host, broker.port),
            redactor,
        };
        tokio::spawn(web::serve(listener, listen, page, page_stop.clone()));
    }
    let health = tokio::spawn(health::keep_file(
        health::health_file(),
        config.dsmr.poll_interval,
        watched,
    ));
    let stats = run_with(config, broker, client, cadence, status, shutdown).await;
    page_stop.cancel();
    // The pipeline is gone, so the health file gets its final state and the task ends.
    let _ = health.await;
    stats
}

/// `run` with the broker, the DSMR-reader client and the poll cadence already chosen (the
/// benchmark runs a simulated day with a scaled cadence), reporting to `status`.
pub async fn run_with(
    config: Config,
    broker: BrokerConfig,
    client: DsmrClient,
    cadence: Cadence,
    status: StatusReporter,
    shutdown: CancellationToken,
) -> anyhow::Result<Stats> {
    // User info in the URL is a credential: never logged.
    let shown_url = source::without_credentials(&config.dsmr.url);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        dsmr_reader = %shown_url,
        broker = %format_args!("{}:{}", broker.host, broker.port),
        base_topic = %config.topics.base,
        poll_interval_s = config.dsmr.poll_interval.as_secs(),
        "Starting dsmr-bridge"
    );
    let sink = MqttSink::start(&broker)?;
    // The history import runs beside the poll loop and never holds it up.
    let history = match config.history.clone() {
        Some(history_config) => match history::dsmr::ArchiveClient::new(&config.dsmr) {
            Ok(archive) => Some(tokio::spawn(history::run(
                history_config,
                archive,
                status.clone(),
                shutdown.child_token(),
            ))),
            Err(e) => {
                tracing::error!(error = %e, "history: cannot start; the live values keep flowing");
                None
            }
        },
        None => None,
    };
    let (events, source_events) = mpsc::channel(8);
    let source_stop = shutdown.child_token();
    // The pipeline asks for fresh meter statistics when a register looks wrong.
    let (source_requests, requests) = mpsc::channel(1);
    let source = tokio::spawn(source::run(
        client,
        cadence,
        events,
        requests,
        source_stop.clone(),
    ));
    let stats = Pipeline::new(&config, sink, status, source_requests)
        .run(source_events, shutdown)
        .await;
    source_stop.cancel();
    let _ = source.await;
    if let Some(history) = history {
        history.abort();
        let _ = history.await;
    }
    Ok(stats)
}
