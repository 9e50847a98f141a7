//! Brokers with limits of their own (in-flight messages, packet size, one session per client
//! id): what the bridge reports as delivered is what the broker holds, and a limit the bridge
//! runs into is named in its log.

use std::collections::BTreeMap;

use crate::eventually::eventually;
use crate::harness::{Bridge, Broker, args, fixture_sim, retained};

/// The last payload per topic of the bridge's "published" lines: what it counts as delivered.
fn delivered(log: &str) -> BTreeMap<String, String> {
    log.lines()
        .filter_map(|line| {
            let rest = line.split_once(" published topic=")?.1;
            let (topic, payload) = rest.split_once(" payload=")?;
            Some((topic.to_owned(), payload.to_owned()))
        })
        .collect()
}

/// Runs a bridge at `qos` against a broker that takes one message in flight at a time, until
/// it has announced itself online, and returns what it reported as delivered that the broker
/// does not hold, with the count of what it reported.
async fn reported_but_not_held(qos: &str, base: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let broker = Broker::start_configured("max_inflight_messages 1\n");
    let sim = fixture_sim().await;
    let bridge = Bridge::start(&args(&sim.url(), broker.port, base, &["--mqtt-qos", qos]));
    // The three discovery configs come after the start's scan of what the broker retains;
    // DSMR-reader's version comes with the first poll.
    bridge
        .wait_log_count("published topic=homeassistant/device/", 3)
        .await;
    bridge
        .wait_log(&format!("published topic={base}/dsmr-reader/version"))
        .await;

    let reported = delivered(&bridge.log());
    let mut held = retained(broker.port, &format!("{base}/#")).await;
    held.extend(retained(broker.port, "homeassistant/#").await);
    let missing = reported
        .iter()
        .filter(|(topic, payload)| held.get(*topic) != Some(payload))
        .map(|(topic, _)| topic.clone())
        .collect();
    (missing, reported)
}

/// Mosquitto's `max_inflight_messages` also caps the QoS 2 messages a client has in flight
/// towards it; over it, it answers PUBREC with "quota exceeded", which MQTT 3.1.1 cannot
/// carry, completes the handshake and drops the message. QoS 2 goes one message at a time.
#[tokio::test]
async fn qos_2_with_one_message_in_flight_delivers_what_it_reports() {
    let (missing, reported) = reported_but_not_held("2", "inflight2").await;
    assert!(
        missing.is_empty(),
        "reported as delivered but not held by the broker ({} of {}): {missing:?}",
        missing.len(),
        reported.len()
    );
    assert!(reported.len() > 50, "{} topics", reported.len());
    assert_eq!(
        reported
            .keys()
            .filter(|t| t.starts_with("homeassistant/"))
            .count(),
        3,
        "three discovery configs: {:?}",
        reported.keys().collect::<Vec<_>>()
    );
}

/// QoS 1 is not held back by that limit (a PUBACK ends the exchange at once), and keeps its
/// window of several messages.
#[tokio::test]
async fn qos_1_with_one_message_in_flight_delivers_what_it_reports() {
    let (missing, reported) = reported_but_not_held("1", "inflight1").await;
    assert!(missing.is_empty(), "{missing:?}");
    assert!(reported.len() > 50, "{} topics", reported.len());
}

/// Mosquitto closes the connection of a client that sends a packet over its `max_packet_size`
/// (MQTT 3.1.1 has no way to say why). The bridge finds the message it happens on, says so
/// once, stops sending that message after the second time and delivers everything else.
#[tokio::test]
async fn a_message_over_the_brokers_packet_limit_is_named_and_given_up() {
    // The electricity meter's discovery config is about 15 kB; the others are under 8 kB.
    let broker = Broker::start_configured("max_packet_size 8192\n");
    let sim = fixture_sim().await;
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "packet", &[]));
    let electricity = "homeassistant/device/dsmrbridge_12345678901234567890123456789000/config";
    bridge
        .wait_log("The broker disconnects on a message this large")
        .await;
    bridge
        .wait_log_count("published topic=homeassistant/device/", 2)
        .await;
    let log = bridge.log();
    let line = log
        .lines()
        .find(|l| l.contains("The broker disconnects on a message this large"))
        .unwrap();
    assert!(
        line.contains("max_packet_size") && line.contains(electricity),
        "{line}"
    );
    assert!(
        !log.contains(&format!("published topic={electricity}")),
        "{log}"
    );

    // Home Assistant restarts: everything is sent again, the oversized config is not, and the
    // connection stays up. The reader's config coming again is the sign the round is done.
    let reader = "homeassistant/device/dsmrbridge_packet_reader/config";
    let connects = log.matches("Connected to the broker").count();
    let watcher = crate::harness::Watcher::connect(broker.port, &[]).await;
    watcher
        .client
        .publish(
            "homeassistant/status",
            rumqttc::QoS::AtLeastOnce,
            false,
            "online",
        )
        .await
        .unwrap();
    bridge
        .wait_log_count(&format!("published topic={reader}"), 2)
        .await;
    let log = bridge.log();
    assert_eq!(
        log.matches("Connected to the broker").count(),
        connects,
        "{log}"
    );
    assert!(
        connects <= 3,
        "one first connection and two on the oversized message: {log}"
    );
    assert_eq!(
        log.matches("The broker disconnects on a message this large")
            .count(),
        1,
        "{log}"
    );
    bridge
        .wait_log("published topic=packet/reading/electricity_delivered_1")
        .await;
    let held = retained(broker.port, "#").await;
    assert!(held.contains_key(reader), "{held:?}");
    assert!(!held.contains_key(electricity));
    assert_eq!(
        held.get("packet/reading/electricity_delivered_1")
            .map(String::as_str),
        Some("37562.774")
    );
}

/// Two bridges with the same base_topic have the same client id, and the broker drops the
/// older connection whenever the other connects. Each bridge says what is going on, once, and
/// waits longer each time instead of taking the connection back within a second or two.
#[tokio::test]
async fn two_bridges_with_one_base_topic_say_so_and_back_off() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let first = Bridge::start(&args(&sim.url(), broker.port, "twin", &[]));
    first.wait_log("Connected to the broker").await;
    let second = Bridge::start(&args(&sim.url(), broker.port, "twin", &[]));
    let cause = "another client with the same client id";
    let kicked = eventually("a bridge naming the cause")
        .until(async || {
            if first.log().contains(cause) {
                Ok(&first)
            } else if second.log().contains(cause) {
                Ok(&second)
            } else {
                Err(format!("logs:\n{}\n---\n{}", first.log(), second.log()))
            }
        })
        .await;
    let line = kicked
        .log()
        .lines()
        .find(|l| l.contains(cause))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("dsmr-bridge_twin") && line.contains("base_topic"),
        "{line}"
    );
    // Over the same number of reconnects the pauses grow (1, 2, 4 s and more) instead of
    // staying at a second or two: the connection changes hands less and less often.
    let pause = "reconnecting to the broker after a pause delay_ms=";
    kicked.wait_log_count(pause, 3).await;
    let pauses: Vec<u64> = kicked
        .log()
        .lines()
        .filter_map(|l| {
            l.split_once(pause)?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(pauses[2] >= 4000, "{pauses:?}");
    assert_eq!(kicked.log().matches(cause).count(), 1, "{}", kicked.log());
}
