//! Single wrong answers from DSMR-reader: a reading stamped in the future, an impossible
//! negative value. Each is held back, and the real values after it go out.

use time::format_description::well_known::Rfc3339;

use crate::harness::{Bridge, Broker, Watcher, args, fixture, fixture_sim};

const READING: &str = "/api/v2/datalogger/dsmrreading";

/// The captured reading with its timestamp and power consumption replaced.
fn reading(timestamp: &str, power: &str) -> String {
    fixture("v2_datalogger_dsmrreading_latest.json")
        .replace("2026-11-26T14:02:14+01:00", timestamp)
        .replace(
            "\"electricity_currently_delivered\": \"0.404\"",
            &format!("\"electricity_currently_delivered\": \"{power}\""),
        )
}

/// One reading stamped 50 minutes ahead of the clock is not published, and the real readings
/// after it are (it used to make every real reading "older than one already published" for
/// up to an hour).
#[tokio::test]
async fn a_reading_from_the_future_does_not_freeze_the_readings() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let power = "future/reading/electricity_currently_delivered";
    let watcher = Watcher::connect(broker.port, &[power]).await;
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "future", &[]));
    watcher
        .wait_for("the first reading", |seen| {
            seen.iter().any(|s| s.payload == "0.404")
        })
        .await;

    let ahead = (time::OffsetDateTime::now_utc() + time::Duration::minutes(50))
        .format(&Rfc3339)
        .expect("a timestamp");
    sim.override_endpoint(READING, 200, "application/json", reading(&ahead, "9.999"));
    // Polled: either held back (and said so) or published.
    watcher
        .wait_for("the outlier polled", |seen| {
            seen.iter().any(|s| s.payload == "9.999") || bridge.log().contains("in the future")
        })
        .await;
    sim.override_endpoint(
        READING,
        200,
        "application/json",
        reading("2026-11-26T14:02:19+01:00", "0.500"),
    );
    watcher
        .wait_for("the real reading after the outlier", |seen| {
            seen.iter().any(|s| s.payload == "0.500")
        })
        .await;
    assert!(
        watcher.all().iter().all(|s| s.payload != "9.999"),
        "{:?}",
        watcher.all()
    );
}

/// A real DSMR-reader keeps a reading stamped in the future in its table, where it stays the
/// newest row until the clock passes it: the bridge asks only up to what it would accept, so
/// the real readings keep coming in the meantime.
#[tokio::test]
async fn a_future_row_in_dsmr_readers_table_does_not_hide_the_real_readings() {
    let broker = Broker::start();
    let sim = dsmr_sim::Simulator::start(crate::harness::sim_options())
        .await
        .expect("simulator");
    let power = "stray/reading/electricity_currently_delivered";
    let watcher = Watcher::connect(broker.port, &[power]).await;
    let _bridge = Bridge::start(&args(&sim.url(), broker.port, "stray", &[]));
    watcher
        .wait_for("the first power value", |seen| !seen.is_empty())
        .await;
    // 98.765 kW: a value no household draws, so the test can tell it from the real ones.
    sim.insert_stray_reading(time::Duration::minutes(50), 98_765);
    let stray_at = sim.requests(READING);
    let published = watcher.on(power).len();
    // The household's power changes from one second to the next.
    watcher
        .wait_for("three more power values after the stray row", |seen| {
            seen.len() >= published + 3
        })
        .await;
    assert!(sim.requests(READING) > stray_at);
    assert!(
        watcher.all().iter().all(|s| s.payload != "98.765"),
        "{:?}",
        watcher.all()
    );
}
