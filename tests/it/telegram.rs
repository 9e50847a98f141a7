//! What the meter's telegram carries beyond DSMR-reader's fields, end to end: the simulated
//! DSMR-reader serves a Belgian or a Dutch-with-water telegram in meter statistics, the bridge
//! publishes the capacity tariff and the M-Bus devices to a real Mosquitto.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use dsmr_sim::{P1Profile, SimOptions, Simulator};

use crate::harness::{Bridge, Broker, SIM_KEY, Watcher, args, fixture, retained, sim_options};

const ELECTRICITY: &str = "homeassistant/device/dsmrbridge_12345678901234567890123456789000/config";
const WATER: &str = "homeassistant/device/dsmrbridge_W0000000000000001/config";
const NEW_WATER: &str = "homeassistant/device/dsmrbridge_W0000000000000002/config";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn last(watcher: &Watcher, topic: &str) -> Option<String> {
    watcher.on(topic).pop().map(|s| s.payload)
}

/// Meter statistics as the fixture, with `telegram` (in `tests/fixtures/`) as its telegram.
fn statistics_with(telegram: &str) -> String {
    let mut stats = json(&fixture("v2_datalogger_meter-statistics.json"));
    stats["latest_telegram"] = Value::String(fixture(telegram));
    stats.to_string()
}

/// A Belgian household: the meter's own capacity-tariff figures on the electricity meter,
/// with the classes Home Assistant keeps statistics of; the basis is the average of the last
/// 12 monthly maxima of the telegram, each at least 2.5 kW.
#[tokio::test]
async fn a_belgian_meter_publishes_the_capacity_tariff() {
    let broker = Broker::start();
    // Ten seconds before a quarter hour ends, so the month has a maximum at once.
    let sim = Simulator::start(SimOptions {
        p1: P1Profile::Belgian,
        start: datetime!(2026-11-26 14:14:50 +1),
        ..sim_options()
    })
    .await
    .expect("simulator");
    let _bridge = Bridge::start(&args(&sim.url(), broker.port, "be", &[]));
    let watcher = Watcher::connect(broker.port, &["homeassistant/#", "be/telegram/#"]).await;
    let topics = [
        "be/telegram/current_average_demand",
        "be/telegram/maximum_demand_month",
        "be/telegram/maximum_demand_month_timestamp",
        "be/telegram/capacity_tariff_basis",
    ];
    watcher
        .wait_for(
            "the capacity tariff and the meter's config with it",
            |seen| {
                topics.iter().all(|t| seen.iter().any(|s| s.topic == *t))
                    && seen.iter().any(|s| {
                        s.topic == ELECTRICITY && s.payload.contains("capacity_tariff_basis")
                    })
            },
        )
        .await;
    let config = json(&last(&watcher, ELECTRICITY).unwrap());
    let components = &config["components"];
    for key in [
        "current_average_demand",
        "maximum_demand_month",
        "capacity_tariff_basis",
    ] {
        assert_eq!(components[key]["unit_of_measurement"], "kW", "{key}");
        assert_eq!(components[key]["device_class"], "power", "{key}");
        assert_eq!(components[key]["state_class"], "measurement", "{key}");
    }
    assert_eq!(
        components["maximum_demand_month_timestamp"]["device_class"],
        "timestamp"
    );
    // The simulated meter's 13 past months (newest first); the bill takes 12, each ≥ 2.5 kW.
    let past: Vec<f64> = sim_past_maxima(&sim).await;
    assert_eq!(past.len(), 13);
    let basis: f64 = past[..12].iter().map(|kw| kw.max(2.5)).sum::<f64>() / 12.0;
    assert_eq!(
        last(&watcher, "be/telegram/capacity_tariff_basis").as_deref(),
        Some(format!("{basis:.3}").as_str())
    );
    let at = last(&watcher, "be/telegram/maximum_demand_month_timestamp").unwrap();
    assert_eq!(
        OffsetDateTime::parse(&at, &Rfc3339).unwrap(),
        datetime!(2026-11-26 14:14:50 +1)
    );
    // No M-Bus device of its own for the gas meter DSMR-reader already reports.
    let held = retained(broker.port, "homeassistant/#").await;
    assert_eq!(held.len(), 3, "{:?}", held.keys());
}

/// The past monthly maxima in kW from the simulator's telegram, newest first.
async fn sim_past_maxima(sim: &Simulator) -> Vec<f64> {
    dsmr_bridge::tls::install_crypto_provider();
    let url = sim
        .url()
        .join("api/v2/datalogger/meter-statistics")
        .unwrap();
    let stats: Value = reqwest::Client::new()
        .get(url)
        .header("Authorization", format!("Token {SIM_KEY}"))
        .send()
        .await
        .expect("meter statistics")
        .json()
        .await
        .expect("JSON");
    let telegram = stats["latest_telegram"].as_str().expect("a telegram");
    let line = telegram
        .lines()
        .find(|l| l.starts_with("0-0:98.1.0"))
        .expect("the buffer line");
    line.split('(')
        .filter_map(|g| g.strip_suffix("*kW)"))
        .map(|kw| kw.parse().unwrap())
        .collect()
}

/// A Dutch household with a water meter on M-Bus channel 1: a Water meter device via the
/// electricity meter, its reading as the telegram has it; after a restart a lower reading of
/// the same meter is never published; a swapped water meter (new id) is a new device whose
/// reading starts where it is.
#[tokio::test]
async fn a_water_meter_gets_its_own_device_across_restarts_and_a_swap() {
    let broker = Broker::start();
    let sim = Simulator::start(SimOptions {
        p1: P1Profile::DutchWithWater,
        ..sim_options()
    })
    .await
    .expect("simulator");
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "nl", &[]));
    let watcher = Watcher::connect(broker.port, &["homeassistant/#", "nl/#"]).await;
    watcher
        .wait_for("the water meter and its reading", |seen| {
            seen.iter().any(|s| s.topic == WATER)
                && seen.iter().any(|s| s.topic == "nl/telegram/mbus1/water")
        })
        .await;
    let config = json(&last(&watcher, WATER).unwrap());
    assert_eq!(config["device"]["name"], "Water meter");
    assert_eq!(config["device"]["serial_number"], "W0000000000000001");
    assert_eq!(
        config["device"]["via_device"],
        "dsmrbridge_12345678901234567890123456789000"
    );
    let water = &config["components"]["mbus1_water"];
    assert_eq!(water["device_class"], "water");
    assert_eq!(water["unit_of_measurement"], "m³");
    assert_eq!(water["state_class"], "total_increasing");
    assert_eq!(
        config["components"]["mbus1_timestamp"]["device_class"],
        "timestamp"
    );
    // The reading is the telegram's for its own time.
    let at = last(&watcher, "nl/telegram/mbus1/timestamp").unwrap();
    let (_, liters) = dsmr_sim::meter::water_reading(OffsetDateTime::parse(&at, &Rfc3339).unwrap());
    let published = last(&watcher, "nl/telegram/mbus1/water").unwrap();
    let first: f64 = published.parse().unwrap();
    assert!(
        (first * 1000.0).round() as u64 <= liters + 1,
        "{published} vs {liters} L at {at}"
    );
    // Gas stays DSMR-reader's gas device, with no second one for channel 2.
    assert!(watcher.all().iter().all(|s| !s.topic.contains("mbus2")));
    let held = retained(broker.port, "homeassistant/#").await;
    assert_eq!(
        held.len(),
        4,
        "reader, electricity, gas, water: {:?}",
        held.keys()
    );
    drop(bridge);

    // The same water meter reads lower after a restart (123.456 m³): held back.
    sim.override_endpoint(
        "/api/v2/datalogger/meter-statistics",
        200,
        "application/json",
        statistics_with("telegram_dutch_water_gas.txt"),
    );
    watcher.clear();
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "nl", &[]));
    bridge
        .wait_log("lower than the value the broker retained")
        .await;
    assert!(
        watcher
            .on("nl/telegram/mbus1/water")
            .iter()
            .all(|s| s.payload.parse::<f64>().unwrap() >= first),
        "{}",
        bridge.log()
    );

    // A new water meter: a new device, its reading from 0.012 m³ on; the old one goes.
    sim.override_endpoint(
        "/api/v2/datalogger/meter-statistics",
        200,
        "application/json",
        statistics_with("telegram_dutch_water_swapped.txt"),
    );
    watcher
        .wait_for("the new water meter's reading", |seen| {
            seen.iter()
                .any(|s| s.topic == NEW_WATER && !s.payload.is_empty())
                && seen
                    .iter()
                    .any(|s| s.topic == "nl/telegram/mbus1/water" && s.payload == "0.012")
                && seen
                    .iter()
                    .any(|s| s.topic == WATER && s.payload.is_empty())
        })
        .await;
    let new = json(&last(&watcher, NEW_WATER).unwrap());
    assert_eq!(new["device"]["serial_number"], "W0000000000000002");
}
