//! The pipeline's rules, in process: a scripted source (the event channel), a recording sink
//! that plays the broker, and tokio's paused clock, so that seconds and hours pass at once and
//! "nothing was sent" is an exact statement about virtual time, not a margin on a busy machine.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::*;
use crate::config::RawOptions;
use crate::model::Snapshot;

/// What the recording sink's broker saw and holds.
#[derive(Default)]
struct BrokerState {
    connected: bool,
    /// Acknowledge every message as soon as it is handed over.
    auto_ack: bool,
    /// Every message handed to the sink, with the virtual time it was handed over.
    sent: Vec<(Instant, Message)>,
    unacked: VecDeque<Message>,
    retained: BTreeMap<String, String>,
    subscriptions: Vec<String>,
    events: VecDeque<SinkEvent>,
    disconnected: bool,
    aborted: bool,
}

/// The test's handle on the recording sink.
#[derive(Clone, Default)]
struct Broker {
    state: Arc<Mutex<BrokerState>>,
    wake: Arc<Notify>,
}

impl Broker {
    fn lock(&self) -> MutexGuard<'_, BrokerState> {
        self.state.lock().unwrap()
    }

    fn push(&self, event: SinkEvent) {
        self.lock().events.push_back(event);
        self.wake.notify_one();
    }

    fn connect(&self) {
        self.lock().connected = true;
        self.push(SinkEvent::Connected);
    }

    fn drop_connection(&self) {
        {
            let mut state = self.lock();
            state.connected = false;
            state.unacked.clear();
        }
        self.push(SinkEvent::Disconnected);
    }

    fn ack_all(&self) {
        let mut state = self.lock();
        while let Some(message) = state.unacked.pop_front() {
            state
                .retained
                .insert(message.topic.to_string(), message.payload.to_string());
            state.events.push_back(SinkEvent::Delivered(message));
        }
        drop(state);
        self.wake.notify_one();
    }

    fn receive(&self, topic: &str, payload: &str, retained: bool) {
        self.push(SinkEvent::Received {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            retained,
        });
    }

    /// Messages handed over at or after `since`.
    fn sent_since(&self, since: Instant) -> Vec<Message> {
        self.lock()
            .sent
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn sent_on(&self, topic: &str) -> Vec<(Instant, String)> {
        self.lock()
            .sent
            .iter()
            .filter(|(_, m)| &*m.topic == topic)
            .map(|(at, m)| (*at, m.payload.to_string()))
            .collect()
    }

    fn retained(&self, topic: &str) -> Option<String> {
        self.lock().retained.get(topic).cloned()
    }
}

struct RecordingSink {
    broker: Broker,
}

impl Sink for RecordingSink {
    fn is_connected(&self) -> bool {
        self.broker.lock().connected
    }

    fn can_send(&self) -> bool {
        let state = self.broker.lock();
        state.connected && state.unacked.len() < 16
    }

    fn send(&mut self, message: Message) -> Result<(), Message> {
        let mut state = self.broker.lock();
        if !state.connected {
            return Err(message);
        }
        state.sent.push((Instant::now(), message.clone()));
        if state.auto_ack {
            state
                .retained
                .insert(message.topic.to_string(), message.payload.to_string());
            state.events.push_back(SinkEvent::Delivered(message));
            drop(state);
            self.broker.wake.notify_one();
        } else {
            state.unacked.push_back(message);
        }
        Ok(())
    }

    fn subscribe(&mut self, filter: &str) {
        self.broker.lock().subscriptions.push(filter.to_owned());
    }

    fn unsubscribe(&mut self, filter: &str) {
        self.broker.lock().subscriptions.retain(|f| f != filter);
    }

    async fn next_event(&mut self) -> SinkEvent {
        loop {
            if let Some(event) = self.broker.lock().events.pop_front() {
                return event;
            }
            self.broker.wake.notified().await;
        }
    }

    async fn disconnect(&mut self) {
        let mut state = self.broker.lock();
        state.connected = false;
        state.disconnected = true;
    }

    fn abort(&mut self) {
        let mut state = self.broker.lock();
        state.connected = false;
        state.aborted = true;
    }
}

/// A full poll as DSMR-reader 5.11 answers it (the captured responses).
fn full_poll() -> Snapshot {
    crate::map::fixtures::snapshot()
}

/// The same poll with the power reading changed and the reading `seconds` later.
fn poll_with_power(power: &str, seconds: u32) -> Snapshot {
    let mut poll = full_poll();
    let reading = poll.reading.as_mut().unwrap();
    reading.insert("electricity_currently_delivered".into(), power.into());
    let at = time::macros::datetime!(2026-11-26 14:02:14 +01:00)
        + time::Duration::seconds(i64::from(seconds));
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    reading.insert("timestamp".into(), at.into());
    poll
}

const POWER: &str = "dsmr-bridge/reading/electricity_currently_delivered";
const REGISTER: &str = "dsmr-bridge/reading/electricity_delivered_1";
const READER_STATUS: &str = "dsmr-bridge/dsmr-reader/status";
const BRIDGE_STATUS: &str = "dsmr-bridge/status";
const HA_STATUS: &str = "homeassistant/status";

fn is_config(m: &Message) -> bool {
    m.topic.starts_with("homeassistant/device/")
}

struct Harness {
    broker: Broker,
    source: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
    status: tokio::sync::watch::Receiver<crate::status::Status>,
    requests: mpsc::Receiver<SourceRequest>,
    task: JoinHandle<Stats>,
}

impl Harness {
    fn start(cache_ttl_s: u64, auto_ack: bool) -> Self {
        let config = Config::try_from(RawOptions {
            dsmr_reader_url: Some("http://dsmr.local:7777/".into()),
            dsmr_reader_api_key: Some("key".into()),
            cache_ttl: Some(cache_ttl_s),
            ..RawOptions::default()
        })
        .unwrap();
        let broker = Broker::default();
        broker.lock().auto_ack = auto_ack;
        let (reporter, status) = StatusReporter::new();
        let (request_tx, requests) = mpsc::channel(1);
        let pipeline = Pipeline::new(
            &config,
            RecordingSink {
                broker: broker.clone(),
            },
            reporter,
            request_tx,
        );
        let (source, events) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pipeline.run(events, shutdown.clone()));
        Self {
            broker,
            source,
            shutdown,
            status,
            requests,
            task,
        }
    }

    /// A poll whose reading DSMR-reader answered, as the source reports it.
    async fn poll(&self, snapshot: Snapshot) {
        self.source
            .send(SourceEvent::Poll(Box::new(snapshot)))
            .await
            .unwrap();
        self.source.send(SourceEvent::Answered).await.unwrap();
        settle().await;
    }

    async fn event(&self, event: SourceEvent) {
        self.source.send(event).await.unwrap();
        settle().await;
    }

    /// Connected, first poll, start-up scan over, a second poll (which confirms the
    /// registers' first values), everything delivered.
    async fn running() -> Self {
        let h = Self::start(3600, true);
        h.broker.connect();
        h.poll(full_poll()).await;
        h.event(SourceEvent::Reachable).await;
        tokio::time::sleep(SCAN_WINDOW).await;
        h.poll(full_poll()).await;
        h
    }
}

/// Lets the pipeline task handle everything it was given (virtual time moves by 1 ms).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Discovery waits until the retained configs on the broker have been collected for the scan
/// window; then it announces the devices and empties the configs this bridge no longer makes.
#[tokio::test(start_paused = true)]
async fn discovery_waits_for_the_scan_window_then_removes_leftovers() {
    let h = Harness::start(3600, true);
    let start = Instant::now();
    h.broker.connect();
    settle().await;
    assert!(
        h.broker
            .lock()
            .subscriptions
            .contains(&"homeassistant/device/+/config".to_owned()),
        "scans the retained discovery configs"
    );
    let leftover = "homeassistant/device/dsmrbridge_oldmeter/config";
    h.broker.receive(
        leftover,
        r#"{"availability":[{"topic":"dsmr-bridge/status"}],"components":{"electricity_delivered_1":{}}}"#,
        true,
    );
    h.poll(full_poll()).await;
    assert_eq!(h.broker.retained(POWER).as_deref(), Some("0.404"));

    tokio::time::sleep_until(start + SCAN_WINDOW - Duration::from_millis(10)).await;
    assert!(
        !h.broker.sent_since(start).iter().any(is_config),
        "no discovery config before the scan window ends"
    );

    tokio::time::sleep_until(start + SCAN_WINDOW + Duration::from_millis(1)).await;
    let configs: Vec<Message> = h
        .broker
        .sent_since(start)
        .into_iter()
        .filter(is_config)
        .collect();
    assert!(
        configs
            .iter()
            .any(|m| &*m.topic == leftover && m.payload.is_empty())
    );
    // DSMR-reader's device first: the meters name it as their via_device.
    assert!(configs[0].topic.ends_with("_reader/config"), "{configs:?}");
    assert!(
        configs
            .iter()
            .filter(|m| !m.payload.is_empty())
            .all(|m| m.payload.contains("\"via_device\"") || m.topic.ends_with("_reader/config"))
    );
    assert!(
        !h.broker
            .lock()
            .subscriptions
            .contains(&"homeassistant/device/+/config".to_owned()),
        "the scan subscription ends with the window"
    );
    assert_eq!(
        h.broker.lock().subscriptions,
        vec![HA_STATUS.to_owned()],
        "Home Assistant's status stays subscribed"
    );
}

/// Home Assistant's birth message makes the bridge send every config, availability and state
/// once more, after a random delay of 1–3 s; a second birth in that delay adds nothing.
#[tokio::test(start_paused = true)]
async fn home_assistant_birth_republishes_everything_once_after_a_delay() {
    let h = Harness::running().await;
    let delivered: Vec<Message> = h
        .broker
        .sent_since(Instant::now() - Duration::from_secs(60));
    let configs = delivered.iter().filter(|m| is_config(m)).count();
    assert!(configs >= 3, "three devices announced: {configs}");

    let birth = Instant::now();
    h.broker.receive(HA_STATUS, "online", false);
    settle().await;
    h.broker.receive(HA_STATUS, "online", false);
    tokio::time::sleep_until(
        birth + Duration::from_millis(BIRTH_DELAY_MIN_MS) - Duration::from_millis(1),
    )
    .await;
    assert!(
        h.broker.sent_since(birth).is_empty(),
        "nothing before the delay"
    );

    tokio::time::sleep_until(
        birth + Duration::from_millis(BIRTH_DELAY_MIN_MS + BIRTH_DELAY_SPREAD_MS),
    )
    .await;
    let again = h.broker.sent_since(birth);
    let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &again {
        *per_topic.entry(&m.topic).or_default() += 1;
    }
    assert!(per_topic.values().all(|&n| n == 1), "{per_topic:?}");
    assert_eq!(again.iter().filter(|m| is_config(m)).count(), configs);
    for topic in [BRIDGE_STATUS, READER_STATUS, REGISTER, POWER] {
        assert!(per_topic.contains_key(topic), "{topic} republished");
    }
    // Configs first, so Home Assistant knows the entities when their states arrive.
    let first_state = again.iter().position(|m| !is_config(m)).unwrap();
    assert!(again[..first_state].iter().all(is_config));
    assert_eq!(again.len() - first_state, per_topic.len() - configs);
}

/// A dropped connection puts what the broker did not acknowledge back in the queue; after the
/// reconnect every topic is sent once, with its newest value, and what the broker had already
/// acknowledged is sent again (the broker may have lost it).
#[tokio::test(start_paused = true)]
async fn reconnect_requeues_unacknowledged_and_republishes_everything() {
    let h = Harness::start(3600, false);
    h.broker.connect();
    h.poll(poll_with_power("0.400", 0)).await;
    tokio::time::sleep(SCAN_WINDOW).await;
    // The second reading confirms the registers' first values.
    h.poll(poll_with_power("0.400", 3)).await;
    for _ in 0..10 {
        h.broker.ack_all();
        settle().await;
    }
    // The next batch is handed over but never acknowledged.
    h.poll(poll_with_power("0.500", 5)).await;
    assert!(!h.broker.lock().unacked.is_empty());
    let acked_register = h.broker.retained(REGISTER);
    assert_eq!(acked_register.as_deref(), Some("37562.774"));

    h.broker.drop_connection();
    settle().await;
    // Values keep changing while the broker is away; only the newest may arrive.
    h.poll(poll_with_power("0.600", 10)).await;
    h.poll(poll_with_power("0.700", 15)).await;
    let reconnect = Instant::now();
    h.broker.connect();
    settle().await;
    for _ in 0..10 {
        h.broker.ack_all();
        settle().await;
    }
    let after = h.broker.sent_since(reconnect);
    let power: Vec<&str> = after
        .iter()
        .filter(|m| &*m.topic == POWER)
        .map(|m| &*m.payload)
        .collect();
    assert_eq!(
        power,
        vec!["0.700"],
        "only the newest power value after the reconnect"
    );
    assert!(
        after.iter().any(|m| &*m.topic == REGISTER),
        "an acknowledged, unchanged register is sent again after a reconnect"
    );
    let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &after {
        *per_topic.entry(&m.topic).or_default() += 1;
    }
    assert!(per_topic.values().all(|&n| n == 1), "{per_topic:?}");
    assert_eq!(h.broker.retained(POWER).as_deref(), Some("0.700"));
    assert_eq!(h.broker.retained(BRIDGE_STATUS).as_deref(), Some("online"));
}

/// An unchanged value is not sent again within the TTL, and once more when it has expired.
#[tokio::test(start_paused = true)]
async fn unchanged_value_goes_out_again_once_per_ttl() {
    let h = Harness::running().await;
    let first = h.broker.sent_on(REGISTER);
    assert_eq!(first.len(), 1);
    let delivered_at = first[0].0;
    // Two hours and a bit of polls every 5 s with the same register value.
    let mut seconds = 0;
    while Instant::now() < delivered_at + Duration::from_secs(2 * 3600 + 10) {
        seconds += 5;
        h.poll(poll_with_power(
            if seconds % 10 == 0 { "0.1" } else { "0.2" },
            seconds,
        ))
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let sent = h.broker.sent_on(REGISTER);
    assert_eq!(sent.len(), 3, "{sent:?}");
    let ttl = Duration::from_secs(3600);
    for pair in sent.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= ttl && gap < ttl + Duration::from_secs(6), "{gap:?}");
        assert_eq!(pair[0].1, pair[1].1);
    }
}

/// On shutdown `offline` goes out ahead of anything still queued, then the session ends with
/// a DISCONNECT.
#[tokio::test(start_paused = true)]
async fn shutdown_sends_offline_first_then_disconnects() {
    let h = Harness::start(3600, false);
    h.broker.connect();
    h.poll(full_poll()).await;
    h.shutdown.cancel();
    settle().await;
    let stop = Instant::now();
    // What the sink held unacknowledged goes first; the first message handed over after the
    // shutdown is `offline`.
    h.broker.ack_all();
    settle().await;
    let after = h.broker.sent_since(stop);
    assert_eq!(
        after.first().map(|m| (&*m.topic, &*m.payload)),
        Some((BRIDGE_STATUS, "offline")),
        "{after:?}"
    );
    for _ in 0..10 {
        h.broker.ack_all();
        settle().await;
    }
    let stats = h.task.await.unwrap();
    assert!(stats.published > 0);
    let state = h.broker.lock();
    assert!(state.disconnected && !state.aborted);
    assert_eq!(
        state.retained.get(BRIDGE_STATUS).map(String::as_str),
        Some("offline")
    );
    drop(state);
    assert!(!h.status.borrow().broker_connected);
}

/// A broker that stops acknowledging does not hold the shutdown beyond its bound: the bridge
/// drops the connection without DISCONNECT, so the broker's last will says `offline`.
#[tokio::test(start_paused = true)]
async fn shutdown_without_acknowledgement_leaves_offline_to_the_last_will() {
    let h = Harness::start(3600, false);
    h.broker.connect();
    h.poll(full_poll()).await;
    let stop = Instant::now();
    h.shutdown.cancel();
    h.task.await.unwrap();
    assert_eq!(Instant::now() - stop, FLUSH_TIMEOUT);
    let state = h.broker.lock();
    assert!(state.aborted && !state.disconnected);
}

/// With the broker away at shutdown nothing waits at all: the last will covers it.
#[tokio::test(start_paused = true)]
async fn shutdown_while_the_broker_is_away_is_immediate() {
    let h = Harness::start(3600, true);
    h.poll(full_poll()).await;
    let stop = Instant::now();
    h.shutdown.cancel();
    h.task.await.unwrap();
    assert_eq!(Instant::now(), stop);
    assert!(h.broker.lock().aborted);
}

/// DSMR-reader's availability entity follows the source: `offline` when it is unreachable,
/// `online` when it answers again, and the status the edges show follows too.
#[tokio::test(start_paused = true)]
async fn dsmr_reader_availability_follows_the_source() {
    let h = Harness::running().await;
    assert!(h.status.borrow().broker_connected);
    assert!(h.status.borrow().last_poll.is_some());
    assert_eq!(h.broker.retained(READER_STATUS).as_deref(), Some("online"));
    assert_eq!(h.status.borrow().dsmr_reachable, Some(true));

    h.event(SourceEvent::Unreachable).await;
    assert_eq!(h.broker.retained(READER_STATUS).as_deref(), Some("offline"));
    assert_eq!(h.status.borrow().dsmr_reachable, Some(false));
    // Values keep their last state on the broker; availability makes them unavailable.
    assert_eq!(h.broker.retained(REGISTER).as_deref(), Some("37562.774"));

    h.event(SourceEvent::Reachable).await;
    assert_eq!(h.broker.retained(READER_STATUS).as_deref(), Some("online"));
    let online = h
        .broker
        .sent_on(READER_STATUS)
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Vec<_>>();
    assert_eq!(online, vec!["online", "offline", "online"]);

    h.broker.drop_connection();
    settle().await;
    assert!(!h.status.borrow().broker_connected);
}

/// A register that falls (as when the meter was swapped and meter statistics, asked only once
/// a minute, still name the old one) is held back, and the source is asked for meter
/// statistics at once; an ordinary poll asks for nothing.
#[tokio::test(start_paused = true)]
async fn a_register_held_back_asks_the_source_for_meter_statistics() {
    let mut h = Harness::running().await;
    h.poll(poll_with_power("0.300", 5)).await;
    assert!(
        h.requests.try_recv().is_err(),
        "a normal poll asks for nothing"
    );

    let mut swapped = poll_with_power("0.300", 10);
    let reading = swapped.reading.as_mut().unwrap();
    reading.insert("electricity_delivered_1".into(), "12.345".into());
    swapped.meter_stats = None;
    h.poll(swapped).await;
    assert!(matches!(
        h.requests.try_recv(),
        Ok(SourceRequest::MeterStatistics)
    ));
    assert_eq!(h.broker.retained(REGISTER).as_deref(), Some("37562.774"));
}

/// DSMR-reader turns out not to have the quarter-hour peak any more (a downgrade to 4.x): the
/// electricity meter's discovery config is sent again without the peak's components, the
/// other entities stay.
#[tokio::test(start_paused = true)]
async fn an_absent_endpoint_removes_its_entities_from_discovery() {
    let h = Harness::running().await;
    let configs = |h: &Harness| -> String {
        h.broker
            .lock()
            .retained
            .iter()
            .filter(|(topic, _)| topic.starts_with("homeassistant/device/"))
            .map(|(_, payload)| payload.clone())
            .collect()
    };
    // Home Assistant removes a component whose config is only its platform.
    let removed = r#""quarter_hour_peak":{"platform":"sensor"}"#;
    let before = configs(&h);
    assert!(before.contains("quarter_hour_peak") && !before.contains(removed));
    h.event(SourceEvent::Absent(crate::source::Endpoint::Peak))
        .await;
    let after = configs(&h);
    assert!(after.contains(removed), "{after}");
    assert!(after.contains("electricity_delivered_1"), "{after}");
}

/// The same poll with register `electricity_delivered_1` at `value`, read `seconds` later.
fn poll_with_register(value: &str, seconds: u32) -> Snapshot {
    let mut poll = poll_with_power("0.400", seconds);
    let reading = poll.reading.as_mut().unwrap();
    reading.insert("electricity_delivered_1".into(), value.into());
    poll
}

/// Values handed to the sink for `topic`, in order.
fn payloads_on(broker: &Broker, topic: &str) -> Vec<String> {
    broker.sent_on(topic).into_iter().map(|(_, p)| p).collect()
}

/// After a restart the broker still holds the register an earlier run published (here a
/// spike, 99999.000). The meter reads less: publishing that would be a meter reset to Home
/// Assistant, so it is held back for as long as the meter reads less, and the retained value
/// stays. Other values flow.
#[tokio::test(start_paused = true)]
async fn a_register_below_the_retained_value_is_never_published_after_a_restart() {
    let h = Harness::start(0, true);
    h.broker.connect();
    settle().await;
    let scanned = h.broker.lock().subscriptions.contains(&REGISTER.to_owned());
    h.broker
        .lock()
        .retained
        .insert(REGISTER.to_owned(), "99999.000".to_owned());
    h.broker.receive(REGISTER, "99999.000", true);
    for n in 0..20u32 {
        h.poll(poll_with_register(&format!("37562.{:03}", 774 + n), 5 * n))
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(payloads_on(&h.broker, REGISTER), Vec::<String>::new());
    assert_eq!(h.broker.retained(REGISTER).as_deref(), Some("99999.000"));
    assert_eq!(h.broker.retained(POWER).as_deref(), Some("0.400"));
    assert!(
        scanned,
        "the register's retained value is read back at start"
    );
    assert!(
        !h.broker.lock().subscriptions.contains(&REGISTER.to_owned()),
        "the register's subscription ends with the scan"
    );
}

/// A spike on the first poll after the start is not published (nothing to check it against
/// yet, so a first value waits for a second reading that agrees); the real values after it are.
#[tokio::test(start_paused = true)]
async fn a_spike_on_the_first_poll_is_not_published_and_real_values_follow() {
    let h = Harness::start(0, true);
    h.broker.connect();
    tokio::time::sleep(SCAN_WINDOW).await;
    h.poll(poll_with_register("99999.000", 0)).await;
    for (n, value) in ["37562.774", "37562.775", "37562.776"]
        .into_iter()
        .enumerate()
    {
        tokio::time::sleep(Duration::from_secs(5)).await;
        h.poll(poll_with_register(value, 5 * (n as u32 + 1))).await;
    }
    assert_eq!(
        payloads_on(&h.broker, REGISTER),
        vec!["37562.775", "37562.776"]
    );
}

/// A register that agrees with the value the broker retained goes out after the start as soon
/// as a second reading confirms it.
#[tokio::test(start_paused = true)]
async fn a_register_above_the_retained_value_is_published_once_confirmed() {
    let h = Harness::start(0, true);
    h.broker.connect();
    settle().await;
    h.broker.receive(REGISTER, "37562.000", true);
    h.poll(poll_with_register("37562.774", 0)).await;
    tokio::time::sleep(SCAN_WINDOW).await;
    h.poll(poll_with_register("37562.774", 5)).await;
    assert_eq!(payloads_on(&h.broker, REGISTER), vec!["37562.774"]);
}

/// Negative power or a negative day total cannot be: the broker keeps the last real value,
/// and the next real value goes out.
#[tokio::test(start_paused = true)]
async fn impossible_negative_values_are_not_published() {
    let h = Harness::running().await;
    const TODAY: &str = "dsmr-bridge/day-consumption/electricity_merged";
    let today = h.broker.retained(TODAY);
    assert!(today.is_some());
    let mut negative = poll_with_power("-0.404", 5);
    negative
        .today
        .as_mut()
        .unwrap()
        .insert("electricity_merged".into(), (-1.5).into());
    h.poll(negative).await;
    assert_eq!(h.broker.retained(POWER).as_deref(), Some("0.404"));
    assert_eq!(h.broker.retained(TODAY), today);
    h.poll(poll_with_power("0.500", 10)).await;
    assert_eq!(payloads_on(&h.broker, POWER), vec!["0.404", "0.500"]);
}

/// The status page's view: the meter as published, a point of power, what dedup counted and
/// the entities announced, and the last failed poll in words.
#[tokio::test(start_paused = true)]
async fn the_status_carries_the_meter_traffic_and_last_error() {
    let h = Harness::running().await;
    {
        let status = h.status.borrow();
        let power = status
            .meter
            .iter()
            .find(|(k, _)| *k == "electricity_currently_delivered")
            .map(|(_, v)| v.as_str());
        assert_eq!(power, Some("0.404"));
        assert_eq!(status.power.back().map(|p| p.delivered_w), Some(404));
        assert!(status.traffic.published > 0);
        assert!(
            status.traffic.suppressed_by_cache > 0,
            "the second poll repeats the first"
        );
        assert!(status.entities > 10, "{} entities", status.entities);
        assert!(status.last_error.is_none());
    }
    h.event(SourceEvent::Failed(
        "DSMR-reader did not answer in time".into(),
    ))
    .await;
    let status = h.status.borrow();
    assert_eq!(
        status.last_error.as_ref().map(|(_, e)| e.as_str()),
        Some("DSMR-reader did not answer in time")
    );
}

/// The first poll may come before the broker connection: its messages wait in the queue, and
/// the connection's republish of every state finds them there. Nothing was superseded or
/// discarded, and the status page's counters say so (after some starts they said "Superseded
/// in the queue 48" with no outage).
#[tokio::test(start_paused = true)]
async fn a_poll_before_the_broker_connects_supersedes_nothing() {
    let h = Harness::start(3600, true);
    h.poll(full_poll()).await;
    h.event(SourceEvent::Reachable).await;
    h.broker.connect();
    settle().await;
    let traffic = h.status.borrow().traffic;
    assert!(traffic.published > 0, "{traffic:?}");
    assert_eq!(traffic.discarded_in_queue, 0, "{traffic:?}");
    assert_eq!(traffic.replaced_in_queue, 0, "{traffic:?}");
    assert_eq!(traffic.offered, traffic.published, "{traffic:?}");
}
