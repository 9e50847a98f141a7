//! Brokers with limits of their own (in-flight messages, packet size, one session per client
//! id): what the bridge reports as delivered is what the broker holds, and a limit the bridge
//! runs into is named in its log.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{Bridge, Broker, args, fixture_sim, retained};

const LONG: Duration = Duration::from_secs(30);

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
        .wait_log_count("published topic=homeassistant/device/", 3, LONG)
        .await;
    bridge
        .wait_log(&format!("published topic={base}/dsmr-reader/version"), LONG)
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
