//! Map stage, test inputs: the captured DSMR-reader 5.11 answers in `tests/fixtures/`, unwrapped
//! as the source stage does, and the meter variants built from them (single-phase, without
//! gas, Belgian).

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

use super::catalog::Endpoint;
use super::{MeterState, Topics, state_messages};
use crate::model::{Object, Snapshot};

/// The capture's wall clock: six seconds after the fixture reading.
pub(crate) const NOW: OffsetDateTime = datetime!(2026-11-26 14:02:20 +01:00);

/// `(topic, payload)` of the state messages for `indices`.
pub(crate) fn published(
    state: &MeterState,
    topics: &Topics,
    indices: Vec<crate::map::catalog::Key>,
) -> Vec<(String, String)> {
    state_messages(state, topics, indices)
        .map(|m| (m.topic.to_string(), m.payload.to_string()))
        .collect()
}

pub(crate) fn fixture_text(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) fn fixture(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).unwrap()
}

fn object(value: &Value) -> Object {
    value.as_object().cloned().expect("a JSON object")
}

pub(crate) fn reading() -> Object {
    object(&fixture("v2_datalogger_dsmrreading_latest.json")["results"][0])
}

pub(crate) fn meter_stats() -> Object {
    object(&fixture("v2_datalogger_meter-statistics.json"))
}

pub(crate) fn today() -> Object {
    object(&fixture("v2_consumption_today.json"))
}

pub(crate) fn peak() -> Object {
    object(&fixture("v2_consumption_quarter-hour-peak-electricity_latest.json")["results"][0])
}

pub(crate) fn version() -> Object {
    object(&fixture("v2_application_version.json"))
}

pub(crate) fn monitoring() -> Object {
    object(&fixture("v2_application_monitoring.json"))
}

/// The captured answer of an endpoint, unwrapped as the source stage does.
pub(crate) fn endpoint_object(endpoint: Endpoint) -> Object {
    match endpoint {
        Endpoint::Reading => reading(),
        Endpoint::MeterStats => meter_stats(),
        Endpoint::Today => today(),
        Endpoint::Peak => peak(),
        Endpoint::Version => version(),
        Endpoint::Monitoring => monitoring(),
        Endpoint::Health | Endpoint::Telegram => Object::new(),
    }
}

/// The captured three-phase Dutch DSMR 5 meter with gas, every endpoint answered.
pub(crate) fn snapshot() -> Snapshot {
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
pub(crate) fn single_phase(mut snapshot: Snapshot) -> Snapshot {
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
pub(crate) fn without_gas(mut snapshot: Snapshot) -> Snapshot {
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
pub(crate) fn belgian(mut snapshot: Snapshot) -> Snapshot {
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

/// The captured snapshot with `tests/fixtures/<name>` as its telegram.
pub(crate) fn with_telegram(mut snapshot: Snapshot, name: &str) -> Snapshot {
    let stats = snapshot.meter_stats.as_mut().expect("meter statistics");
    stats.insert("latest_telegram".into(), json!(fixture_text(name)));
    snapshot
}

/// The equipment id of the electricity meter that replaces the captured one in `swapped_meter`.
pub(crate) const NEW_METER: &str = "99999999999999999999999999999999";

/// The meter statistics after the electricity meter was swapped: a new equipment id.
pub(crate) fn swapped_meter(mut snapshot: Snapshot) -> Snapshot {
    let (stats, telegram) = telegram_mut(&mut snapshot);
    let telegram = telegram.replace(
        "0-0:96.1.1(12345678901234567890123456789000)",
        &format!("0-0:96.1.1({NEW_METER})"),
    );
    stats.insert("latest_telegram".into(), json!(telegram));
    snapshot
}

/// The meter statistics' tariff indicator set to `tariff`.
pub(crate) fn with_tariff(mut snapshot: Snapshot, tariff: u8) -> Snapshot {
    let stats = snapshot.meter_stats.as_mut().expect("meter statistics");
    stats.insert("electricity_tariff".into(), json!(tariff));
    snapshot
}

/// Generated inputs for property tests: scalars DSMR-reader sends and near-misses of them,
/// nested JSON, timestamps; and the oracle for what may be published.
pub(crate) mod arbitrary {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestCaseError};
    use serde_json::{Number, Value, json};
    use time::format_description::well_known::Rfc3339;
    use time::{OffsetDateTime, UtcOffset};

    use super::NOW;
    use crate::map::catalog::Kind;

    pub(crate) fn config(cases: u32) -> ProptestConfig {
        // No regression files in the source tree: a failure prints its minimal input.
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    pub(crate) fn number(f: f64) -> Value {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }

    pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
        at.format(&Rfc3339).unwrap()
    }

    /// Timestamps near `NOW` in several offsets, near-misses of RFC 3339, and extremes.
    pub(crate) fn timestamp() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (-7200i64..7200, prop::sample::select(vec![0i8, 1, 2, -5, 14])).prop_map(
                |(seconds, hours)| {
                    let offset = UtcOffset::from_hms(hours, 0, 0).unwrap();
                    rfc3339((NOW + time::Duration::seconds(seconds)).to_offset(offset))
                }
            ),
            2 => "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
            1 => prop::sample::select(vec![
                "9999-12-31T23:59:59+00:00",
                "0000-01-01T00:00:00Z",
                "1970-01-01T00:00:00Z",
                "2026-02-30T00:00:00+01:00",
                "2026-11-26T24:00:00+01:00",
                "2026-06-30T23:59:60Z",
                "2026-11-26T14:02:14",
                "2026-11-26",
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// Scalars DSMR-reader sends, near-misses of them, huge numbers and junk.
    pub(crate) fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            2 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            2 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            2 => any::<f64>().prop_map(number),
            1 => prop::sample::select(vec![0.0, -0.0, 1e308, -1e308, 5e-324, f64::MAX, 0.1, 37562.774])
                .prop_map(number),
            4 => "-?[0-9]{1,8}\\.[0-9]{1,3}".prop_map(Value::String),
            1 => "[0-9]{20,40}(\\.[0-9]{1,5})?".prop_map(Value::String),
            2 => prop::sample::select(vec![
                "NaN", "inf", "-Infinity", "1e5", "1E-3", "-0", " 1.0", "1.0 ", "1.", ".5", "+1",
                "0x1f", "1_000", "١٢٣", "１２３", "", "-", "--1", "1.2.3", "null", "true", "5.11.0",
            ])
            .prop_map(|s| Value::String(s.to_owned())),
            3 => timestamp().prop_map(Value::String),
            2 => any::<String>().prop_map(Value::String),
            1 => (1usize..400).prop_map(|n| Value::String("9".repeat(n))),
            1 => (1usize..3).prop_map(|n| Value::String("x".repeat(n * 60_000))),
        ]
    }

    /// Lists and objects of anything, a few levels deep.
    pub(crate) fn json_value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((".{0,12}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A scalar under up to 127 levels of lists or objects: as deep as serde_json parses.
    pub(crate) fn nested() -> impl Strategy<Value = Value> {
        (scalar(), 1usize..127, any::<bool>()).prop_map(|(mut value, depth, objects)| {
            for _ in 0..depth {
                value = if objects {
                    json!({ "value": value })
                } else {
                    json!([value])
                };
            }
            value
        })
    }

    pub(crate) fn value() -> impl Strategy<Value = Value> {
        prop_oneof![6 => scalar(), 3 => json_value(), 1 => nested()]
    }

    /// `-?digits(.digits)?`, at most 32 characters, a finite number: written out again here
    /// rather than calling `is_decimal`, so the test does not trust the code it tests.
    pub(crate) fn plain_decimal(text: &str) -> bool {
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (int, frac) = match unsigned.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (unsigned, None),
        };
        text.len() <= 32
            && !int.is_empty()
            && int.chars().all(|c| c.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
            && text.parse::<f64>().is_ok_and(f64::is_finite)
    }

    /// What may be published for a JSON value of this kind: its own text, and only if valid.
    pub(crate) fn check_published(
        kind: Kind,
        raw: &Value,
        text: &str,
    ) -> Result<(), TestCaseError> {
        let source = match raw {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(TestCaseError::fail(format!(
                    "{kind:?}: {text:?} from {other}"
                )));
            }
        };
        prop_assert_eq!(text, source.as_str(), "not the field's own text");
        match kind {
            Kind::Decimal => prop_assert!(plain_decimal(text), "decimal {text:?}"),
            Kind::Integer => prop_assert!(
                raw.is_number() && text.parse::<i128>().is_ok(),
                "integer {text:?}"
            ),
            Kind::Timestamp => prop_assert!(
                raw.is_string()
                    && text.len() <= 64
                    && OffsetDateTime::parse(text, &Rfc3339).is_ok(),
                "timestamp {text:?}"
            ),
            Kind::Text => prop_assert!(
                raw.is_string()
                    && !text.is_empty()
                    && text.len() <= 64
                    && !text.chars().any(char::is_control),
                "text {text:?}"
            ),
        }
        Ok(())
    }
}
