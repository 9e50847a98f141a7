//! Map stage, test inputs: the captured DSMR-reader 5.11 answers in `tests/fixtures/`, unwrapped
//! as the source stage does, and the meter variants built from them (single-phase, without
//! gas, Belgian).

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::model::{Object, Snapshot};

/// The capture's wall clock: six seconds after the fixture reading.
pub const NOW: OffsetDateTime = datetime!(2026-11-26 14:02:20 +01:00);

pub fn fixture_text(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn fixture(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).unwrap()
}

fn object(value: &Value) -> Object {
    value.as_object().cloned().expect("a JSON object")
}

pub fn reading() -> Object {
    object(&fixture("v2_datalogger_dsmrreading_latest.json")["results"][0])
}

pub fn meter_stats() -> Object {
    object(&fixture("v2_datalogger_meter-statistics.json"))
}

pub fn today() -> Object {
    object(&fixture("v2_consumption_today.json"))
}

pub fn peak() -> Object {
    object(&fixture("v2_consumption_quarter-hour-peak-electricity_latest.json")["results"][0])
}

pub fn version() -> Object {
    object(&fixture("v2_application_version.json"))
}

pub fn monitoring() -> Object {
    object(&fixture("v2_application_monitoring.json"))
}

/// The captured three-phase Dutch DSMR 5 meter with gas, every endpoint answered.
pub fn snapshot() -> Snapshot {
    Snapshot {
        meter_stats: Some(meter_stats()),
        reading: Some(reading()),
        today: Some(today()),
        peak: Some(peak()),
        version: Some(version()),
        monitoring: Some(monitoring()),
    }
}

fn telegram_mut(snapshot: &mut Snapshot) -> (&mut Object, String) {
    let stats = snapshot.meter_stats.as_mut().expect("meter statistics");
    let telegram = stats["latest_telegram"].as_str().unwrap().to_owned();
    (stats, telegram)
}

/// Keeps the telegram lines for which `keep` holds (the CRC no longer matches; nothing here
/// checks it, as DSMR-reader already did).
fn filter_telegram(snapshot: &mut Snapshot, keep: impl Fn(&str) -> bool) {
    let (stats, telegram) = telegram_mut(snapshot);
    let kept: Vec<&str> = telegram.split("\r\n").filter(|l| keep(l)).collect();
    stats.insert("latest_telegram".into(), json!(kept.join("\r\n")));
}

/// What DSMR-reader answers for a single-phase meter: L2 and L3 values are null.
pub fn single_phase(mut snapshot: Snapshot) -> Snapshot {
    const L2_L3: [&str; 8] = [
        "phase_currently_delivered_l2",
        "phase_currently_delivered_l3",
        "phase_currently_returned_l2",
        "phase_currently_returned_l3",
        "phase_voltage_l2",
        "phase_voltage_l3",
        "phase_power_current_l2",
        "phase_power_current_l3",
    ];
    let reading = snapshot.reading.as_mut().expect("a reading");
    for field in L2_L3 {
        reading.insert(field.into(), Value::Null);
    }
    let stats = snapshot.meter_stats.as_mut().expect("meter statistics");
    for field in [
        "voltage_sag_count_l2",
        "voltage_sag_count_l3",
        "voltage_swell_count_l2",
        "voltage_swell_count_l3",
    ] {
        stats.insert(field.into(), Value::Null);
    }
    // OBIS codes of L2 (41, 42, 51, 52) and L3 (61, 62, 71, 72).
    filter_telegram(&mut snapshot, |line| {
        !["1-0:4", "1-0:5", "1-0:6", "1-0:7"]
            .iter()
            .any(|p| line.starts_with(p))
    });
    snapshot
}

/// What DSMR-reader answers for a home without a gas meter: null gas fields in the reading,
/// 0 in today's totals, no M-Bus lines in the telegram.
pub fn without_gas(mut snapshot: Snapshot) -> Snapshot {
    let reading = snapshot.reading.as_mut().expect("a reading");
    reading.insert("extra_device_timestamp".into(), Value::Null);
    reading.insert("extra_device_delivered".into(), Value::Null);
    if let Some(today) = snapshot.today.as_mut() {
        today.insert("gas".into(), json!(0.0));
        today.insert("gas_cost".into(), json!(0.0));
    }
    filter_telegram(&mut snapshot, |line| !line.starts_with("0-1:"));
    snapshot
}

/// The same meter as a Belgian (Fluvius e-MUCS) one: `tests/fixtures/telegram_belgian_fluvius.txt`
/// is the captured Dutch telegram with a Fluvius header, the `0-0:96.1.4` version line instead of
/// `1-3:0.2.8`, the quarter-hour peak lines, Belgian gas lines and no power-failure counters;
/// DSMR-reader's Fluvius parser leaves `dsmr_version` and those counters null.
pub fn belgian(mut snapshot: Snapshot) -> Snapshot {
    let stats = snapshot.meter_stats.as_mut().expect("meter statistics");
    stats.insert(
        "latest_telegram".into(),
        json!(fixture_text("telegram_belgian_fluvius.txt")),
    );
    for field in [
        "dsmr_version",
        "power_failure_count",
        "long_power_failure_count",
    ] {
        stats.insert(field.into(), Value::Null);
    }
    snapshot
}

/// The meter statistics' tariff indicator set to `tariff`.
pub fn with_tariff(mut snapshot: Snapshot, tariff: u8) -> Snapshot {
    let stats = snapshot.meter_stats.as_mut().expect("meter statistics");
    stats.insert("electricity_tariff".into(), json!(tariff));
    snapshot
}
