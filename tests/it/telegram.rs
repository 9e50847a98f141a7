//! What the meter's telegram carries beyond DSMR-reader's fields, end to end: the simulated
//! DSMR-reader serves a Belgian or a Dutch-with-water telegram in meter statistics, the bridge
//! publishes the capacity tariff and the M-Bus devices to a real Mosquitto; real Home
//! Assistant Cores take the water and heat meters for the Energy dashboard.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use dsmr_sim::{P1Profile, SimOptions, Simulator};

use crate::eventually::eventually;
use crate::ha_core;
use crate::harness::{Bridge, Broker, SIM_KEY, Watcher, args, fixture, retained, sim_options};

const ELECTRICITY: &str = "homeassistant/device/dsmrbridge_12345678901234567890123456789000/config";
const WATER: &str = "homeassistant/device/dsmrbridge_W0000000000000001/config";
const NEW_WATER: &str = "homeassistant/device/dsmrbridge_W0000000000000002/config";

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn last(watcher: &Watcher, topic: &str) -> Option<String> {
    watcher.on(topic).pop().map(|s| s.payload)
}

/// Meter statistics as the fixture, with `telegram` (in `tests/fixtures/`) as its telegram.
fn statistics_with(telegram: &str) -> String {
    let mut stats = parse(&fixture("v2_datalogger_meter-statistics.json"));
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
    let config = parse(&last(&watcher, ELECTRICITY).unwrap());
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
    let config = parse(&last(&watcher, WATER).unwrap());
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
    let new = parse(&last(&watcher, NEW_WATER).unwrap());
    assert_eq!(new["device"]["serial_number"], "W0000000000000002");
}

/// The Dutch telegram with water on channel 1 and gas (DSMR-reader's) on 2, and a heat meter
/// counting GJ on channel 3.
fn water_heat_and_gas_telegram() -> String {
    let heat_id: String = "H0000000000000001"
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    fixture("telegram_dutch_water_gas.txt").replace(
        "0-2:24.1.0(003)",
        &format!(
            "0-3:24.1.0(004)\r\n0-3:96.1.0({heat_id})\r\n0-3:24.2.1(261126140000W)(00045.678*GJ)\r\n0-2:24.1.0(003)"
        ),
    )
}

/// The telegram's entities on real Home Assistant Cores: the water and heat readings and the
/// Belgian capacity tariff arrive through Core's own MQTT integration with their classes and
/// units; the Energy dashboard takes the water meter as a water source and the heat meter as a
/// device's consumption with no issue from `energy/validate`; the monthly maximum has
/// long-term statistics of its mean (and min and max). Core's clock starts shortly before a
/// five-minute boundary (libfaketime): statistics exist from the first compile after it, and
/// `energy/validate` wants them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_takes_the_water_and_heat_meters_for_the_energy_dashboard() {
    let broker = Broker::start();
    let sim = crate::harness::fixture_sim().await;
    sim.override_endpoint(
        "/api/v2/datalogger/meter-statistics",
        200,
        "application/json",
        {
            let mut stats = parse(&fixture("v2_datalogger_meter-statistics.json"));
            stats["latest_telegram"] = Value::String(water_heat_and_gas_telegram());
            stats.to_string()
        },
    );
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "core", &[]));
    // A Belgian household beside it, under a base topic of its own (its meters have ids of
    // their own): DSMR-reader's Fluvius parser leaves the version and failure counts null.
    let belgian = crate::harness::fixture_sim().await;
    belgian.override_endpoint(
        "/api/v2/datalogger/meter-statistics",
        200,
        "application/json",
        {
            let mut stats = parse(&statistics_with("telegram_belgian_capacity_history.txt"));
            for field in [
                "dsmr_version",
                "power_failure_count",
                "long_power_failure_count",
            ] {
                stats[field] = Value::Null;
            }
            stats.to_string()
        },
    );
    let belgian_bridge = Bridge::start(&args(&belgian.url(), broker.port, "corebe", &[]));
    let watcher = Watcher::connect(broker.port, &["core/telegram/#", "corebe/telegram/#"]).await;
    // Retained before Core connects, so its entities have states at once.
    watcher
        .wait_for("both readings and the monthly maximum", |seen| {
            [
                "core/telegram/mbus1/water",
                "core/telegram/mbus3/heat",
                "corebe/telegram/maximum_demand_month",
            ]
            .iter()
            .all(|t| seen.iter().any(|s| s.topic == *t))
        })
        .await;
    // Both Cores at once: each waits for its first statistics compile.
    tokio::join!(
        core_takes_the_telegrams_entities("2025.4.4", broker.port),
        core_takes_the_telegrams_entities("2026.2.3", broker.port),
    );
    drop((bridge, belgian_bridge));
}

/// One Core of `version` against the broker at `broker_port`, which holds both households.
async fn core_takes_the_telegrams_entities(version: &'static str, broker_port: u16) {
    let now = OffsetDateTime::now_utc();
    // 50 s before a five-minute boundary.
    let minute = now.minute() - now.minute() % 5;
    let start = now
        .replace_minute(minute)
        .unwrap()
        .replace_second(0)
        .unwrap()
        + time::Duration::minutes(5)
        - time::Duration::seconds(50);
    let setup = ha_core::Setup {
        faketime: Some(start),
        rate: None,
        config_dir: None,
    };
    // Starting blocks until Core answers: off the runtime, so both Cores start at once.
    let Some(core) = tokio::task::spawn_blocking(move || ha_core::start(version, setup))
        .await
        .expect("start Core")
    else {
        return;
    };
    core.add_mqtt(broker_port).await;
    let mut ha = core.socket().await;
    // The entity ids Core gave the bridge's unique ids.
    let wanted = [
        "dsmrbridge_W0000000000000001_mbus1_water",
        "dsmrbridge_H0000000000000001_mbus3_heat",
        "dsmrbridge_1SAG3101021605_maximum_demand_month",
        "dsmrbridge_1SAG3101021605_capacity_tariff_basis",
    ];
    let mut ids = Vec::new();
    for unique_id in wanted {
        let found = eventually(format!("{version}: {unique_id} in the entity registry"))
            .until(async || {
                let list = ha
                    .call(json!({"type": "config/entity_registry/list"}))
                    .await
                    .map_err(|e| e.to_string())?;
                list.as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["unique_id"] == unique_id)
                    .and_then(|e| e["entity_id"].as_str().map(str::to_owned))
                    .ok_or_else(|| format!("{} entities", list.as_array().map_or(0, Vec::len)))
            })
            .await;
        ids.push(found);
    }
    let http = reqwest::Client::new();
    let classes = [
        ("water", "m³", "total_increasing"),
        ("energy", "GJ", "total_increasing"),
        ("power", "kW", "measurement"),
        ("power", "kW", "measurement"),
    ];
    for (id, (class, unit, state_class)) in ids.iter().zip(classes) {
        let state: Value = http
            .get(format!("{}api/states/{id}", core.url()))
            .bearer_auth(&core.token)
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("state JSON");
        let attributes = &state["attributes"];
        assert_eq!(attributes["device_class"], class, "{version}: {state}");
        assert_eq!(
            attributes["unit_of_measurement"], unit,
            "{version}: {state}"
        );
        assert_eq!(attributes["state_class"], state_class, "{version}: {state}");
    }
    // Available once Core has the bridge's and DSMR-reader's retained status.
    eventually(format!("{version}: the water reading in Core"))
        .until(async || {
            let state: Value = http
                .get(format!("{}api/states/{}", core.url(), ids[0]))
                .bearer_auth(&core.token)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if state["state"] == "123.456" {
                Ok(())
            } else {
                Err(state.to_string())
            }
        })
        .await;
    let water = json!({"type": "water", "stat_energy_from": ids[0], "stat_cost": null,
                       "entity_energy_price": null, "number_energy_price": null});
    ha.call(
        json!({"type": "energy/save_prefs", "energy_sources": [water],
                   "device_consumption": [{"stat_consumption": ids[1]}]}),
    )
    .await
    .expect("the Energy dashboard takes both");
    // Statistics exist after the first compile (10 s past the boundary, or the next one
    // on a slow start); until then Core says `statistics_not_defined`.
    eventually(format!("{version}: a clean energy/validate"))
        .within(std::time::Duration::from_secs(420))
        .every(std::time::Duration::from_secs(2))
        .until(async || {
            let verdict = ha
                .call(json!({"type": "energy/validate"}))
                .await
                .map_err(|e| e.to_string())?;
            let issues: Vec<&Value> = ["energy_sources", "device_consumption"]
                .iter()
                .flat_map(|k| verdict[*k].as_array().into_iter().flatten())
                .flat_map(|per| per.as_array().into_iter().flatten())
                .collect();
            let sources = verdict["energy_sources"].as_array().map_or(0, Vec::len);
            let devices = verdict["device_consumption"].as_array().map_or(0, Vec::len);
            if issues.is_empty() && sources == 1 && devices == 1 {
                Ok(())
            } else {
                Err(verdict.to_string())
            }
        })
        .await;
    // Long-term statistics keep the monthly maximum's mean, min and max.
    let listed = ha
        .call(json!({"type": "recorder/list_statistic_ids", "statistic_type": "mean"}))
        .await
        .expect("statistic ids");
    let maximum = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["statistic_id"] == ids[2].as_str())
        .unwrap_or_else(|| panic!("{version}: {} not among {listed}", ids[2]));
    assert_eq!(
        maximum["statistics_unit_of_measurement"], "kW",
        "{version}: {maximum}"
    );
}
