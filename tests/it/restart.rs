//! The bridge started over what an earlier run left on the broker: retained registers and
//! discovery configs are the state Home Assistant already has, and a start must not undo it.

use std::time::Duration;

use rumqttc::QoS;

use crate::harness::{Bridge, Broker, Watcher, args, fixture_sim};

const LONG: Duration = Duration::from_secs(20);

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
        .wait_for("the retained spike", LONG, |seen| {
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
        .wait_for("ten polls", LONG, |seen| {
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
        .wait_log("lower than the value the broker retained", LONG)
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
