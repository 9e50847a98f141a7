//! Sink stage, MQTT: `MqttSink` hands messages to rumqttc and turns its packet events into
//! "delivered" reports for the dedup stage.
//!
//! Each connection gets a fresh rumqttc client and event loop. rumqttc would otherwise replay
//! unacknowledged publishes from its own buffer after a reconnect, out of step with our pending
//! queue; with a fresh pair the queue alone decides what is (re)sent, newest value first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS, StateError, TlsConfiguration, Transport,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Sink, SinkError, SinkEvent};
use crate::model::Message;

/// Messages handed to rumqttc but not yet acknowledged. Small, so that the pending queue (which
/// coalesces per topic) holds the backlog, not rumqttc's channel.
const WINDOW: usize = 16;
/// The same for QoS 2: one at a time. A broker may take fewer unfinished QoS 2 exchanges than
/// that (Mosquitto's `max_inflight_messages`, 20 by default, 1 in some setups); over its limit
/// Mosquitto drops the message but still completes the exchange, since MQTT 3.1.1 has no way
/// to say "quota exceeded". Acknowledged would then not mean held.
const WINDOW_QOS_2: usize = 1;
const KEEP_ALIVE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT_SECS: u64 = 5;
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
/// A connection that lasted this long was healthy: the next pause starts from a second again.
/// A shorter one that the broker ended counts as the broker dropping us right after connecting.
const STABLE_SESSION: Duration = Duration::from_secs(60);
/// Mosquitto drops a client the moment it reads the header of a packet over its
/// `max_packet_size`: a message written this shortly before the broker closed the connection
/// (and, at QoS 1 or 2, not acknowledged) may be the cause.
const SUSPECT_WINDOW: Duration = Duration::from_secs(1);
/// Smaller packets are never taken for the cause: the bridge's own CONNECT is about this large,
/// so no broker it works with at all refuses them, while every poll writes such messages.
const MIN_SUSPECT_PACKET: usize = 128;
/// Connections the broker ends shortly after they start, in a row, before the bridge says that
/// another client takes its client id.
const TAKEN_OVER_AFTER: u32 = 3;

/// Where and how to connect; resolved from options and, inside Home Assistant, the Supervisor.
#[derive(Clone)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub tls: bool,
    pub ca_pem: Option<Vec<u8>>,
    pub qos: u8,
    pub client_id: String,
    /// Retained `offline` here when the connection dies without a goodbye.
    pub will_topic: String,
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

pub fn qos_of(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

impl BrokerConfig {
    fn options(&self) -> Result<MqttOptions, SinkError> {
        let mut options = MqttOptions::new(&self.client_id, &self.host, self.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_request_channel_capacity(WINDOW * 2)
            .set_max_packet_size(256 * 1024, 256 * 1024)
            .set_last_will(LastWill::new(
                &self.will_topic,
                "offline",
                qos_of(self.qos.max(1)),
                true,
            ));
        if let Some(user) = &self.username {
            let password = self
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned())
                .unwrap_or_default();
            options.set_credentials(user, password);
        }
        if self.tls {
            let config = crate::tls::client_config(self.ca_pem.as_deref())?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        Ok(options)
    }
}

enum DriverEvent {
    Connected(AsyncClient),
    /// `closed_by_broker`: the broker ended the connection (no timeout or error of ours).
    Lost {
        closed_by_broker: bool,
    },
    Sent(u16),
    Acked(u16),
    Received(rumqttc::Publish),
}

/// A message rumqttc wrote to the connection, and when.
struct Written {
    message: Message,
    at: Instant,
}

/// Size of the PUBLISH packet that carries `message` (MQTT 3.1.1): fixed header, topic,
/// packet id at QoS 1 and 2, payload. What a broker's `max_packet_size` is compared with.
fn packet_size(message: &Message, qos: QoS) -> usize {
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + message.topic.len() + packet_id + message.payload.len();
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// What the bridge learned about why the broker drops its connection: a message too large for
/// it (MQTT 3.1.1 brokers just close the connection), or another client with our client id.
#[derive(Default)]
struct Drops {
    /// The message suspected at the last drop, and its packet size.
    suspect: Option<(Arc<str>, usize)>,
    /// Packets this large or larger are not sent: the broker dropped us twice on one.
    packet_limit: Option<usize>,
    /// Topics already named in the log as too large.
    named: HashSet<Arc<str>>,
    /// Connections in a row that the broker ended shortly after they started, without a
    /// suspect message.
    short_sessions: u32,
    taken_over_named: bool,
}

/// The pipeline's handle on the broker connection.
pub struct MqttSink {
    events: mpsc::Receiver<DriverEvent>,
    client: Option<AsyncClient>,
    /// Handed to rumqttc, waiting for their packet id (rumqttc reports ids in send order).
    awaiting_id: VecDeque<Message>,
    by_pkid: HashMap<u16, Written>,
    /// At QoS 0, the last messages written (nothing acknowledges them): the suspects when
    /// the broker drops the connection.
    recent: VecDeque<Written>,
    connected_at: Option<Instant>,
    drops: Drops,
    client_id: String,
    /// Events of the sink's own (messages it will not send), reported before the driver's.
    local: VecDeque<SinkEvent>,
    qos: QoS,
    /// Unacknowledged messages allowed at once: `WINDOW`, or `WINDOW_QOS_2`.
    window: usize,
    stop: CancellationToken,
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl MqttSink {
    /// Starts connecting in the background; reconnects with capped backoff until dropped.
    pub(crate) fn start(config: &BrokerConfig) -> Result<Self, SinkError> {
        let options = config.options()?;
        let (tx, rx) = mpsc::channel(WINDOW * 4);
        let stop = CancellationToken::new();
        let endpoint = format!("{}:{}", config.host, config.port);
        let driver = tokio::spawn(drive(options, tx, stop.clone(), endpoint));
        Ok(Self {
            events: rx,
            client: None,
            awaiting_id: VecDeque::new(),
            by_pkid: HashMap::new(),
            recent: VecDeque::new(),
            connected_at: None,
            drops: Drops::default(),
            client_id: config.client_id.clone(),
            local: VecDeque::new(),
            qos: qos_of(config.qos),
            window: if config.qos == 2 {
                WINDOW_QOS_2
            } else {
                WINDOW
            },
            stop,
            driver: Some(driver),
        })
    }
}

impl Sink for MqttSink {
    fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    fn can_send(&self) -> bool {
        self.client.is_some() && self.awaiting_id.len() + self.by_pkid.len() < self.window
    }

    fn send(&mut self, message: Message) -> Result<(), Message> {
        let Some(client) = &self.client else {
            return Err(message);
        };
        let size = packet_size(&message, self.qos);
        if self.drops.packet_limit.is_some_and(|limit| size >= limit) {
            if self.drops.named.insert(message.topic.clone()) {
                name_too_large(&message.topic, size);
            } else {
                debug!(topic = %message.topic, bytes = size, "not sent: larger than the broker takes");
            }
            self.local.push_back(SinkEvent::Refused(message));
            return Ok(());
        }
        match client.try_publish(
            message.topic.as_ref(),
            self.qos,
            true,
            message.payload.as_bytes().to_vec(),
        ) {
            Ok(()) => {
                self.awaiting_id.push_back(message);
                Ok(())
            }
            Err(error) => {
                debug!(topic = %message.topic, error = %error, "publish not accepted by the client; kept queued");
                Err(message)
            }
        }
    }

    fn subscribe(&mut self, filter: &str) {
        if let Some(client) = &self.client
            && let Err(error) = client.try_subscribe(filter, QoS::AtLeastOnce)
        {
            warn!(filter, error = %error, "subscribe failed");
        }
    }

    fn unsubscribe(&mut self, filter: &str) {
        if let Some(client) = &self.client {
            let _ = client.try_unsubscribe(filter);
        }
    }

    /// Cancel-safe: it only reads a channel.
    async fn next_event(&mut self) -> SinkEvent {
        loop {
            if let Some(event) = self.local.pop_front() {
                return event;
            }
            let Some(event) = self.events.recv().await else {
                // The driver stopped (shutdown); nothing more will come.
                self.client = None;
                return std::future::pending().await;
            };
            match event {
                DriverEvent::Connected(client) => {
                    self.client = Some(client);
                    self.connected_at = Some(Instant::now());
                    self.awaiting_id.clear();
                    self.by_pkid.clear();
                    self.recent.clear();
                    return SinkEvent::Connected;
                }
                DriverEvent::Lost { closed_by_broker } => {
                    self.client = None;
                    self.explain_drop(closed_by_broker);
                    self.awaiting_id.clear();
                    self.by_pkid.clear();
                    self.recent.clear();
                    return SinkEvent::Disconnected;
                }
                DriverEvent::Sent(pkid) => {
                    let Some(message) = self.awaiting_id.pop_front() else {
                        continue;
                    };
                    let at = Instant::now();
                    if self.qos == QoS::AtMostOnce {
                        if self.recent.len() == WINDOW {
                            self.recent.pop_front();
                        }
                        self.recent.push_back(Written {
                            message: message.clone(),
                            at,
                        });
                        return SinkEvent::Delivered(message);
                    }
                    self.by_pkid.insert(pkid, Written { message, at });
                }
                DriverEvent::Acked(pkid) => {
                    if let Some(written) = self.by_pkid.remove(&pkid) {
                        return SinkEvent::Delivered(written.message);
                    }
                }
                DriverEvent::Received(publish) => {
                    return SinkEvent::Received {
                        topic: publish.topic,
                        payload: publish.payload.to_vec(),
                        retained: publish.retain,
                    };
                }
            }
        }
    }

    /// Waits a moment for the DISCONNECT to go out.
    async fn disconnect(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.try_disconnect();
        }
        if let Some(driver) = self.driver.take()
            && tokio::time::timeout(Duration::from_millis(500), driver)
                .await
                .is_err()
        {
            debug!("broker connection did not close in time");
        }
        self.stop.cancel();
    }

    fn abort(&mut self) {
        self.client = None;
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
        self.stop.cancel();
    }
}

impl MqttSink {
    /// Looks for a pattern in the broker dropping the connection: right after writing the same
    /// large message twice (over the broker's `max_packet_size`), or repeatedly soon after
    /// connecting with nothing written (another client connecting with our client id, which
    /// makes the broker drop the older connection). Each is named once in the log.
    fn explain_drop(&mut self, closed_by_broker: bool) {
        let now = Instant::now();
        let session = self
            .connected_at
            .take()
            .map_or(Duration::ZERO, |at| now - at);
        let recent = |w: &&Written| now - w.at <= SUSPECT_WINDOW;
        let suspect = self
            .by_pkid
            .values()
            .chain(&self.recent)
            .filter(recent)
            .map(|w| (w, packet_size(&w.message, self.qos)))
            .filter(|(_, size)| *size >= MIN_SUSPECT_PACKET)
            .max_by_key(|(_, size)| *size)
            .map(|(w, size)| (w.message.topic.clone(), size));
        let drops = &mut self.drops;
        match suspect.filter(|_| closed_by_broker) {
            Some(suspect) => {
                drops.short_sessions = 0;
                if drops.suspect.as_ref() == Some(&suspect) {
                    let (topic, size) = suspect;
                    drops.packet_limit = Some(drops.packet_limit.map_or(size, |l| l.min(size)));
                    if drops.named.insert(topic.clone()) {
                        name_too_large(&topic, size);
                    }
                    drops.suspect = None;
                } else {
                    debug!(topic = %suspect.0, bytes = suspect.1, "the broker dropped the connection right after this message");
                    drops.suspect = Some(suspect);
                }
            }
            None if closed_by_broker && session < STABLE_SESSION => {
                drops.suspect = None;
                drops.short_sessions += 1;
                if drops.short_sessions >= TAKEN_OVER_AFTER && !drops.taken_over_named {
                    drops.taken_over_named = true;
                    warn!(
                        client_id = %self.client_id,
                        "The broker keeps dropping the connection soon after it starts: another client with the same client id connects, most likely a second bridge with the same base_topic. Give each bridge its own base_topic; reconnecting less and less often meanwhile"
                    );
                }
            }
            None => {
                drops.suspect = None;
                drops.short_sessions = 0;
                if session >= STABLE_SESSION {
                    drops.taken_over_named = false;
                }
            }
        }
    }
}

fn name_too_large(topic: &str, size: usize) {
    warn!(
        topic,
        bytes = size,
        "The broker disconnects on a message this large; raise max_packet_size in the broker's configuration. The message is not sent again, everything else is"
    );
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Pauses between connection attempts: from 1 s, growing, never over `MAX_RECONNECT_DELAY`.
fn reconnect_backoff() -> backon::ExponentialBackoff {
    crate::retry::pauses(Duration::from_secs(1), MAX_RECONNECT_DELAY)
}

/// Why a connection attempt failed, in words that say what to fix.
fn describe(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => {
                "the broker refused the user name or password (check mqtt_username and mqtt_password)".into()
            }
            ConnectReturnCode::NotAuthorized => {
                "the broker says not authorized (check mqtt_username and mqtt_password, and the broker's ACL)".into()
            }
            other => format!("the broker refused the connection: {other:?}"),
        },
        ConnectionError::Tls(e) => format!("TLS failed: {e} (check mqtt_tls, mqtt_ca_file and the broker's certificate)"),
        ConnectionError::Io(e) => e.to_string(),
        ConnectionError::NetworkTimeout => "no answer from the broker".into(),
        other => other.to_string(),
    }
}

/// Owns the rumqttc event loop of each connection; one task for the bridge's lifetime.
struct Driver {
    options: MqttOptions,
    events: mpsc::Sender<DriverEvent>,
    stop: CancellationToken,
    endpoint: String,
    backoff: backon::ExponentialBackoff,
    /// Since the last successful connection: each error said once.
    failures: crate::retry::Failures,
    ever_connected: bool,
}

/// The broker ended the connection (closed or reset it), as opposed to a timeout or an error
/// of ours.
fn closed_by_broker(error: &ConnectionError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let io = match error {
        ConnectionError::MqttState(StateError::ConnectionAborted) => return true,
        ConnectionError::Io(e) | ConnectionError::MqttState(StateError::Io(e)) => e,
        ConnectionError::MqttState(StateError::Deserialization(rumqttc::mqttbytes::Error::Io(
            e,
        ))) => e,
        _ => return false,
    };
    matches!(
        io.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

#[derive(PartialEq, Eq)]
enum Flow {
    Reconnect,
    Stop,
}

async fn drive(
    options: MqttOptions,
    events: mpsc::Sender<DriverEvent>,
    stop: CancellationToken,
    endpoint: String,
) {
    let mut driver = Driver {
        options,
        events,
        stop,
        endpoint,
        backoff: reconnect_backoff(),
        failures: crate::retry::Failures::default(),
        ever_connected: false,
    };
    loop {
        let (client, mut eventloop) = AsyncClient::new(driver.options.clone(), WINDOW * 2);
        eventloop
            .network_options
            .set_connection_timeout(CONNECT_TIMEOUT_SECS);
        let flow = driver.run_connection(&client, &mut eventloop).await;
        if flow == Flow::Stop || driver.stop.is_cancelled() || driver.events.is_closed() {
            return;
        }
        let delay = driver.backoff.next().unwrap_or(MAX_RECONNECT_DELAY);
        debug!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting to the broker after a pause"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = driver.stop.cancelled() => return,
        }
    }
}

impl Driver {
    async fn run_connection(&mut self, client: &AsyncClient, eventloop: &mut EventLoop) -> Flow {
        let mut connected = false;
        let mut connected_at = Instant::now();
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                // Only an abandoned connection attempt stops here; a live session ends through
                // `disconnect`, which lets the DISCONNECT packet out first.
                () = self.stop.cancelled(), if !connected => return Flow::Stop,
            };
            let forward = match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    connected_at = Instant::now();
                    if self.failures.recovered() || self.ever_connected {
                        info!(broker = %self.endpoint, "Connected to the broker again");
                    } else {
                        info!(broker = %self.endpoint, "Connected to the broker");
                    }
                    self.ever_connected = true;
                    Some(DriverEvent::Connected(client.clone()))
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Some(DriverEvent::Sent(pkid)),
                Ok(Event::Incoming(Packet::PubAck(ack))) => Some(DriverEvent::Acked(ack.pkid)),
                Ok(Event::Incoming(Packet::PubComp(ack))) => Some(DriverEvent::Acked(ack.pkid)),
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    Some(DriverEvent::Received(publish))
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return Flow::Stop,
                Ok(_) => None,
                Err(error) => {
                    let closed_by_broker = closed_by_broker(&error);
                    let error = describe(&error);
                    if connected {
                        // Only a connection that lasted resets the pauses: one the broker
                        // drops at once (a message too large for it, another client with our
                        // client id) would otherwise be retried every second or two.
                        if connected_at.elapsed() >= STABLE_SESSION {
                            self.backoff = reconnect_backoff();
                        }
                        warn!(broker = %self.endpoint, error = %error, "Lost the broker connection; reconnecting with backoff, messages wait in the queue");
                        let _ = self
                            .events
                            .send(DriverEvent::Lost { closed_by_broker })
                            .await;
                    } else if self.failures.failed(&error) {
                        warn!(broker = %self.endpoint, error = %error, "Cannot connect to the broker; retrying with backoff");
                    } else {
                        debug!(broker = %self.endpoint, error = %error, "broker still unreachable");
                    }
                    if connected {
                        // The outage starts now: its first failed attempt is news.
                        self.failures.recovered();
                        self.failures.failed(&error);
                    }
                    return Flow::Reconnect;
                }
            };
            if let Some(event) = forward
                && self.events.send(event).await.is_err()
            {
                return Flow::Stop;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size a broker's `max_packet_size` is compared with, header and packet id included.
    #[test]
    fn packet_size_counts_the_whole_publish() {
        let small = Message::new("a/b", "1");
        assert_eq!(packet_size(&small, QoS::AtMostOnce), 1 + 1 + 2 + 3 + 1);
        assert_eq!(packet_size(&small, QoS::AtLeastOnce), 1 + 1 + 2 + 3 + 2 + 1);
        let config = Message::new("homeassistant/device/x/config", "x".repeat(15_000));
        assert_eq!(
            packet_size(&config, QoS::AtLeastOnce),
            1 + 2 + 2 + 29 + 2 + 15_000
        );
    }
}
