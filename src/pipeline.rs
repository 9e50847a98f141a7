//! The pipeline: source events are mapped to messages, deduplicated, and drained to the sink
//! as fast as the broker acknowledges them. One task owns all of it, so no locks. It does no
//! I/O of its own: the source arrives on a channel, the broker behind the `Sink` trait, and
//! its status goes out through a `watch`; the tests below drive it on a paused clock.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::Config;
use crate::dedup::{Dedup, Stats};
use crate::map::catalog;
use crate::map::discovery::Discovery;
use crate::map::{self, MeterState, RetainedRegister, Topics};
use crate::model::Message;
use crate::sink::{Sink, SinkEvent};
use crate::source::{self, SourceEvent, SourceRequest};
use crate::status::StatusReporter;

/// How long to collect retained discovery configs and meter registers at startup before
/// cleaning up leftovers and publishing registers.
const SCAN_WINDOW: Duration = Duration::from_secs(2);
/// Home Assistant needs a moment after its birth message before it takes configs; a random
/// part spreads the load when several bridges restart together.
const BIRTH_DELAY_MIN_MS: u64 = 1000;
const BIRTH_DELAY_SPREAD_MS: u64 = 2000;
/// Flushing on shutdown is bounded: the Supervisor kills the app after its stop timeout.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
const SUMMARY_EVERY: Duration = Duration::from_secs(300);

/// Tracing target of the "published" lines.
pub(crate) const PUBLISHED_TARGET: &str = "dsmr_bridge::published";
/// A payload shown at `info` (`Config::show_published`) is cut after this many characters.
const SHOWN_PAYLOAD: usize = 60;

/// A payload as a line shows it: a discovery config (several kB) as its start and its size.
struct Shown<'p>(&'p str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(SHOWN_PAYLOAD) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

enum Scan {
    NotStarted,
    Collecting { until: Instant },
    Done,
}

pub(crate) struct Pipeline<S> {
    topics: Topics,
    ha_status_topic: String,
    discovery: Option<Discovery>,
    scan: Scan,
    /// Register values found retained during the scan: `(table index, payload)`.
    retained_registers: Vec<(catalog::Key, String)>,
    state: MeterState,
    dedup: Dedup,
    sink: S,
    republish_at: Option<Instant>,
    polled_values: u64,
    /// `Config::show_published`.
    show_published: bool,
    status: StatusReporter,
    /// Back to the source: a register held back may mean a new meter whose identity is in
    /// meter statistics, which the source asks for only once a minute otherwise.
    source_requests: mpsc::Sender<SourceRequest>,
}

impl<S: Sink> Pipeline<S> {
    pub(crate) fn new(
        config: &Config,
        sink: S,
        status: StatusReporter,
        source_requests: mpsc::Sender<SourceRequest>,
    ) -> Self {
        let topics = Topics::new(&config.topics.base);
        let instance = config
            .device_id
            .clone()
            .unwrap_or_else(|| config.topics.base.clone());
        let discovery = config.topics.discovery.then(|| {
            let mut url = config.dsmr.url.clone();
            // The configuration link in Home Assistant must not carry credentials.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Discovery::new(
                &config.topics.discovery_prefix,
                config.mqtt.qos,
                Some(url.to_string()),
            )
        });
        // What an earlier run published stays the floor of every register, across restarts.
        let mut state = MeterState::new(&instance);
        state.expect_retained_registers();
        Self {
            topics,
            ha_status_topic: format!("{}/status", config.topics.discovery_prefix),
            scan: Scan::NotStarted,
            retained_registers: Vec::new(),
            discovery,
            state,
            dedup: Dedup::new(config.cache_ttl),
            sink,
            republish_at: None,
            polled_values: 0,
            show_published: config.show_published,
            status,
            source_requests,
        }
    }

    /// Runs until `shutdown`, then says `offline` and flushes what it can.
    pub(crate) async fn run(
        mut self,
        mut source: mpsc::Receiver<SourceEvent>,
        shutdown: CancellationToken,
    ) -> Stats {
        let mut summary = tokio::time::interval_at(Instant::now() + SUMMARY_EVERY, SUMMARY_EVERY);
        summary.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            let scan_until = match self.scan {
                Scan::Collecting { until } => until,
                _ => far,
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.sink.next_event() => self.on_sink(event),
                Some(event) = source.recv() => self.on_source(event),
                () = tokio::time::sleep_until(self.republish_at.unwrap_or(far)), if self.republish_at.is_some() => {
                    self.republish_at = None;
                    info!("Republishing discovery and state for Home Assistant");
                    self.republish_all();
                }
                () = tokio::time::sleep_until(scan_until), if matches!(self.scan, Scan::Collecting { .. }) => {
                    self.finish_scan();
                }
                _ = summary.tick() => self.log_summary(),
            }
            self.pump();
            self.report_traffic();
        }
        self.stop().await;
        self.dedup.stats()
    }

    fn on_sink(&mut self, event: SinkEvent) {
        match event {
            SinkEvent::Connected => {
                self.status.set_connected(true);
                self.sink.subscribe(&self.ha_status_topic);
                if let Scan::NotStarted = self.scan {
                    if let Some(discovery) = &self.discovery {
                        self.sink.subscribe(&discovery.scan_filter());
                    }
                    for index in catalog::Key::registers() {
                        self.sink.subscribe(self.topics.state(index));
                    }
                    self.scan = Scan::Collecting {
                        until: Instant::now() + SCAN_WINDOW,
                    };
                }
                // The broker may have lost its retained store (or be a different broker).
                self.republish_all();
            }
            SinkEvent::Disconnected => {
                self.status.set_connected(false);
                self.dedup.connection_lost();
            }
            SinkEvent::Delivered(message) => {
                if self.show_published {
                    info!(target: PUBLISHED_TARGET, topic = %message.topic, payload = %Shown(&message.payload), "published");
                } else {
                    debug!(target: PUBLISHED_TARGET, topic = %message.topic, payload = %message.payload, "published");
                }
                self.dedup.delivered(&message);
            }
            SinkEvent::Refused(message) => self.dedup.refused(&message),
            SinkEvent::Received {
                topic,
                payload,
                retained,
            } => {
                if topic == self.ha_status_topic {
                    if payload == b"online" && self.republish_at.is_none() {
                        let delay = Duration::from_millis(
                            BIRTH_DELAY_MIN_MS + fastrand::u64(0..BIRTH_DELAY_SPREAD_MS),
                        );
                        info!(
                            delay_ms = delay.as_millis() as u64,
                            "Home Assistant came online; republishing after a short delay"
                        );
                        self.republish_at = Some(Instant::now() + delay);
                    }
                } else if retained && matches!(self.scan, Scan::Collecting { .. }) {
                    self.on_retained(&topic, payload);
                }
            }
        }
    }

    /// A retained message found by the startup scan: a register or a discovery config an
    /// earlier run left on the broker.
    fn on_retained(&mut self, topic: &str, payload: Vec<u8>) {
        if let Some(index) = catalog::Key::registers().find(|&i| &**self.topics.state(i) == topic) {
            if let Ok(text) = String::from_utf8(payload) {
                debug!(topic = %topic, payload = %text, "found a retained register of this bridge");
                self.retained_registers.push((index, text));
            }
        } else if let Some(discovery) = &mut self.discovery
            && discovery.observe_retained(topic, &payload, &self.topics)
        {
            debug!(topic = %topic, "found a retained discovery config of this bridge");
        }
    }

    fn on_source(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Poll(snapshot) => {
                let now = SystemTime::now();
                let offered = self.state.apply(&snapshot, OffsetDateTime::now_utc());
                self.report_meter(now, snapshot.reading.is_some());
                if self.state.take_identity_doubt() {
                    // A full channel already holds the same request.
                    let _ = self
                        .source_requests
                        .try_send(SourceRequest::MeterStatistics);
                }
                self.polled_values += offered.len() as u64;
                self.offer_discovery_if_changed();
                for message in map::state_messages(&self.state, &self.topics, offered) {
                    self.dedup.offer(message);
                }
            }
            SourceEvent::Absent(endpoint) => {
                let endpoint = match endpoint {
                    source::Endpoint::MeterStatistics => catalog::Endpoint::MeterStats,
                    source::Endpoint::Reading => catalog::Endpoint::Reading,
                    source::Endpoint::Today => catalog::Endpoint::Today,
                    source::Endpoint::Peak => catalog::Endpoint::Peak,
                    source::Endpoint::Monitoring => catalog::Endpoint::Monitoring,
                    source::Endpoint::Version => catalog::Endpoint::Version,
                };
                self.state.forget(endpoint);
                self.offer_discovery_if_changed();
            }
            SourceEvent::Failed(error) => self.status.failed(SystemTime::now(), error),
            SourceEvent::Answered => self.status.polled(SystemTime::now()),
            SourceEvent::SideFailing(endpoint, error) => {
                self.status.side_failing(endpoint.path(), error);
            }
            SourceEvent::Reachable | SourceEvent::Unreachable => {
                let reachable = matches!(event, SourceEvent::Reachable);
                self.status.set_reachable(reachable);
                let index = self.state.set_reachable(reachable);
                self.offer_discovery_if_changed();
                for message in map::state_messages(&self.state, &self.topics, [index]) {
                    self.dedup.offer(message);
                }
            }
        }
    }

    /// Discovery waits for the startup scan (so leftovers are known) and the first poll (so
    /// the entity set is known).
    fn discovery_ready(&self) -> bool {
        matches!(self.scan, Scan::Done) && self.state.has_data()
    }

    fn offer_discovery_if_changed(&mut self) {
        if self.state.take_entities_changed() && self.discovery_ready() {
            self.offer_discovery();
        }
    }

    fn offer_discovery(&mut self) {
        if let Some(discovery) = &mut self.discovery {
            for message in discovery.messages(&self.state, &self.topics) {
                self.dedup.offer(message);
            }
        }
    }

    fn offer_discovery_again(&mut self) {
        if let Some(discovery) = &mut self.discovery {
            for message in discovery.messages(&self.state, &self.topics) {
                self.dedup.offer_again(message);
            }
        }
    }

    fn finish_scan(&mut self) {
        if let Some(discovery) = &self.discovery {
            self.sink.unsubscribe(&discovery.scan_filter());
        }
        for index in catalog::Key::registers() {
            self.sink.unsubscribe(self.topics.state(index));
        }
        let retained = std::mem::take(&mut self.retained_registers)
            .into_iter()
            .filter_map(|(index, text)| {
                let value: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
                let device = self
                    .discovery
                    .as_ref()
                    .and_then(|d| d.retained_device_of(index.sensor().device));
                Some(RetainedRegister {
                    index,
                    value,
                    text,
                    device,
                })
            })
            .collect();
        self.state.retained_registers(retained);
        self.scan = Scan::Done;
        if self.state.has_data() {
            self.offer_discovery();
        }
    }

    /// Configs first, then availability, then every current state: what Home Assistant
    /// needs after its own restart or a broker that lost its retained messages.
    /// What is still queued from before (a poll that came before the broker connection) is
    /// offered again, not anew: the status page counts no discard for it.
    fn republish_all(&mut self) {
        self.dedup.forget_delivered();
        if self.discovery_ready() {
            self.offer_discovery_again();
        }
        self.dedup
            .offer_again(Message::new(self.topics.bridge_status.clone(), "online"));
        for message in map::state_messages(&self.state, &self.topics, self.state.current()) {
            self.dedup.offer_again(message);
        }
    }

    /// The values the status page shows, as published; `reading`: the poll brought one.
    fn report_meter(&self, at: SystemTime, reading: bool) {
        let meter = catalog::Key::all()
            .filter(|key| key.sensor().on_page)
            .filter_map(|key| Some((key.sensor().key, self.state.value(key)?.to_owned())))
            .collect();
        self.status
            .meter(at, self.state.reader_version(), meter, reading);
    }

    /// Counters for the status page, after every step of the loop (sent only on change).
    fn report_traffic(&self) {
        let entities = if self.discovery.is_some() && self.discovery_ready() {
            catalog::Key::all()
                .filter(|&i| self.state.entity_exists(i))
                .count()
        } else {
            0
        };
        self.status.traffic(self.dedup.stats(), entities);
    }

    fn pump(&mut self) {
        while self.sink.can_send() {
            let Some(message) = self.dedup.next_to_send() else {
                break;
            };
            if let Err(message) = self.sink.send(message) {
                self.dedup.send_failed(message);
                break;
            }
        }
    }

    fn log_summary(&self) {
        let s = self.dedup.stats();
        info!(
            polled_values = self.polled_values,
            published = s.published,
            suppressed_by_cache = s.suppressed_by_cache,
            discarded_in_queue = s.discarded_in_queue,
            replaced_in_queue = s.replaced_in_queue,
            dropped = s.dropped,
            queued = self.dedup.queue_len(),
            "Traffic since start"
        );
    }

    async fn stop(&mut self) {
        if !self.sink.is_connected() {
            info!("Stopping; the broker is away, so its last will marks the bridge offline");
            self.sink.abort();
            return;
        }
        let offline = Message::new(self.topics.bridge_status.clone(), "offline");
        self.dedup.offer_first(offline.clone());
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        let mut offline_delivered = false;
        loop {
            self.pump();
            if self.dedup.is_idle() || !self.sink.is_connected() {
                break;
            }
            tokio::select! {
                event = self.sink.next_event() => {
                    if let SinkEvent::Delivered(message) = &event
                        && *message == offline
                    {
                        offline_delivered = true;
                    }
                    if !matches!(event, SinkEvent::Received { .. }) {
                        self.on_sink(event);
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if offline_delivered || self.dedup.is_idle() {
            info!(
                unsent = self.dedup.queue_len(),
                "Stopping; published offline"
            );
            self.sink.disconnect().await;
        } else {
            // Without a DISCONNECT the broker publishes the last will: offline all the same.
            info!("Stopping before the broker confirmed offline; leaving it to the last will");
            self.sink.abort();
        }
        self.status.set_connected(false);
    }
}

#[cfg(test)]
mod tests;
