//! The bridge started over what an earlier run left on the broker: retained registers and
//! discovery configs are the state Home Assistant already has, and a start must not undo it.

use rumqttc::QoS;

use crate::harness::{Bridge, Broker, Watcher, args, fixture, fixture_sim};

/// The broker holds a register from an earlier run (a spike, 99999.000) and the meter reads
/// less: the bridge never publishes the lower value (Home Assistant would count a meter
/// reset), says so once, and keeps publishing everything else.
#[tokio::test]
async fn a_retained_register_is_never_undercut_after_a_restart() {
    let broker = Broker::start();
    let register = "restart/reading/electricity_delivered_1";
    let power = "restart/reading/electricity_currently_delivered";
    let watcher = Watcher::connect(broker.port, &[register, power]).await;
    watcher
        .client
        .publish(register, QoS::AtLeastOnce, true, "99999.000")
        .await
        .expect("publish the earlier run's register");
    watcher
        .wait_for("the retained spike", |seen| {
            seen.iter().any(|s| s.topic == register)
        })
        .await;
    let sim = fixture_sim().await;
    let bridge = Bridge::start(&args(
        &sim.url(),
        broker.port,
        "restart",
        &["--cache-ttl", "0"],
    ));
    // With the cache off every poll publishes the power: ten polls, each of which could have
    // published the register.
    watcher
        .wait_for("ten polls", |seen| {
            seen.iter().filter(|s| s.topic == power).count() >= 10
        })
        .await;
    let published: Vec<String> = watcher
        .on(register)
        .into_iter()
        .map(|s| s.payload)
        .collect();
    assert_eq!(published, vec!["99999.000"], "{}", bridge.log());
    bridge
        .wait_log("lower than the value the broker retained")
        .await;
    assert_eq!(
        bridge
            .log()
            .matches("lower than the value the broker retained")
            .count(),
        1,
        "said once"
    );
}

const ELECTRICITY: &str = "homeassistant/device/dsmrbridge_12345678901234567890123456789000/config";
const GAS: &str = "homeassistant/device/dsmrbridge_12345678901234567890123456789001/config";

/// Meter statistics as DSMR-reader answers them right after its own restart: no telegram yet.
fn statistics_without_telegram() -> String {
    let mut stats: serde_json::Value =
        serde_json::from_str(&fixture("v2_datalogger_meter-statistics.json")).expect("JSON");
    stats["latest_telegram"] = serde_json::Value::Null;
    stats.to_string()
}

/// A restart of the bridge while DSMR-reader has no telegram yet (`latest_telegram: null`)
/// keeps the meter devices the broker retains: their configs are never emptied (Home
/// Assistant would delete the devices, with the user's entity ids and areas) and no
/// placeholder device appears; once the telegram names the meter, its devices are announced
/// as before.
#[tokio::test]
async fn meter_devices_survive_a_start_without_a_telegram() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let watcher = Watcher::connect(broker.port, &["homeassistant/device/#"]).await;
    let mut first = Bridge::start(&args(&sim.url(), broker.port, "devices", &[]));
    watcher
        .wait_for("the meter devices", |seen| {
            [ELECTRICITY, GAS]
                .iter()
                .all(|t| seen.iter().any(|s| s.topic == *t && !s.payload.is_empty()))
        })
        .await;
    first.signal("TERM");
    assert_eq!(first.wait_exit(), Some(0));

    let stats = "/api/v2/datalogger/meter-statistics";
    sim.override_endpoint(
        stats,
        200,
        "application/json",
        statistics_without_telegram(),
    );
    watcher.clear();
    let second = Bridge::start(&args(&sim.url(), broker.port, "devices", &[]));
    let reader = "homeassistant/device/dsmrbridge_devices_reader/config";
    watcher
        .wait_for("the second run's discovery", |seen| {
            seen.iter().any(|s| s.topic == reader && !s.retained)
        })
        .await;
    sim.override_endpoint(
        stats,
        200,
        "application/json",
        fixture("v2_datalogger_meter-statistics.json"),
    );
    // Meter statistics come again within a minute (every 12 polls here).
    watcher
        .wait_for("the meter devices announced again", |seen| {
            seen.iter()
                .any(|s| s.topic == ELECTRICITY && !s.retained && !s.payload.is_empty())
        })
        .await;
    let seen = watcher.all();
    let emptied: Vec<&str> = seen
        .iter()
        .filter(|s| s.payload.is_empty())
        .map(|s| s.topic.as_str())
        .collect();
    assert!(
        emptied.is_empty(),
        "configs emptied: {emptied:?}\n{}",
        second.log()
    );
    let placeholders: Vec<&str> = seen
        .iter()
        .filter(|s| {
            s.topic.contains("dsmrbridge_devices_electricity")
                || s.topic.contains("dsmrbridge_devices_gas")
        })
        .map(|s| s.topic.as_str())
        .collect();
    assert!(
        placeholders.is_empty(),
        "placeholder devices: {placeholders:?}"
    );
}
