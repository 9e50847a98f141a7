//! Source tests: how the bridge asks DSMR-reader across clock changes, around endpoints that
//! fail on their own, and when DSMR-reader hangs at shutdown. Real parts throughout: the
//! bridge binary, the simulated DSMR-reader over HTTP, and Mosquitto.

use std::time::Duration;

use dsmr_sim::{SimOptions, Simulator, TimeZone};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{OffsetDateTime, UtcOffset};

use crate::harness::{Bridge, Broker, args, retained, sim_options};

const LONG: Duration = Duration::from_secs(60);

/// The reading timestamp the broker retains for `base`, if any.
async fn retained_timestamp(port: u16, base: &str) -> Option<OffsetDateTime> {
    let topic = format!("{base}/reading/timestamp");
    let held = retained(port, &topic).await;
    held.get(&topic)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

/// Runs a bridge against a DSMR-reader in `zone` whose meter clock passes a clock change at
/// `change` (UTC), sped up 30 times, and waits until the broker retains a reading from five
/// minutes after the change: polling went on across it.
async fn polls_across(zone: TimeZone, change: OffsetDateTime, base: &str) {
    let broker = Broker::start();
    let sim = Simulator::start(SimOptions {
        start: change - time::Duration::minutes(2),
        speed: 30.0,
        zone: Some(zone),
        ..sim_options()
    })
    .await
    .expect("simulator");
    let bridge = Bridge::start(&args(&sim.url(), broker.port, base, &[]));
    let after = change + time::Duration::minutes(5);
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let held = retained_timestamp(broker.port, base).await;
        if held.is_some_and(|t| t >= after) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broker's newest reading is {held:?}, not after {after}; the requests were:\n{}",
            sim.request_log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = bridge.log();
    assert!(
        !log.contains("DSMR-reader poll failed"),
        "every poll answered across the change:\n{log}"
    );
}

/// The autumn change in Europe/Amsterdam: 02:00–03:00 local happens twice, and a naive
/// filter time in it is refused by DSMR-reader.
#[tokio::test]
async fn polling_goes_on_across_the_autumn_clock_change() {
    polls_across(
        TimeZone::europe_amsterdam(),
        datetime!(2026-10-25 01:00:00 UTC),
        "dst-autumn",
    )
    .await;
}

/// The spring change in Europe/Amsterdam: 02:00–03:00 local does not exist.
#[tokio::test]
async fn polling_goes_on_across_the_spring_clock_change() {
    polls_across(
        TimeZone::europe_amsterdam(),
        datetime!(2026-03-29 01:00:00 UTC),
        "dst-spring",
    )
    .await;
}

/// A DSMR-reader set to another zone (Europe/London: 01:00–02:00 local repeats).
#[tokio::test]
async fn polling_goes_on_across_a_clock_change_in_another_zone() {
    polls_across(
        TimeZone::eu("Europe/London", UtcOffset::UTC),
        datetime!(2026-10-25 01:00:00 UTC),
        "dst-london",
    )
    .await;
}
