//! Map stage: DSMR-reader's JSON becomes checked values, state messages and discovery messages.
//! No I/O and no clock of its own: the caller passes `now`.

pub mod catalog;
pub mod discovery;
mod telegram;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{info, warn};

use crate::model::{Message, Object, Snapshot};
use catalog::{Device, Endpoint, Kind, SENSORS, Sensor};
pub use telegram::MeterIdentity;

/// Readings stamped further ahead than this are a broken clock, not a fast meter.
const MAX_FUTURE: time::Duration = time::Duration::hours(1);
/// The gas register's own timestamp lags the reading by up to an hour (hourly DSMR 4 gas). One
/// after the reading, or further behind, is the gas meter's clock being wrong: taken as is it
/// would widen (or, far ahead, switch off) the jump check for the next value.
const MAX_GAS_LAG: time::Duration = time::Duration::hours(2);

/// Why a field's value was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The JSON had the wrong type or text that is not a number/timestamp.
    Malformed,
    /// A meter register at 0 or below.
    Zero,
    /// A meter register lower than the last value published.
    Decrease,
    /// A register rising faster than any household can consume.
    Jump,
}

impl Rejection {
    fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "value is not valid for this field",
            Self::Zero => "meter register reads 0; Home Assistant would count a meter reset",
            Self::Decrease => {
                "meter register is lower than the last value published; Home Assistant would count a meter reset"
            }
            Self::Jump => "meter register rose more than any household can consume in that time",
        }
    }
}

/// Checks a JSON value against the field's kind and returns the exact text to publish.
/// Decimal text is kept as DSMR-reader sent it (`"2000.000"` stays `2000.000`).
pub fn parse_value(kind: Kind, value: &Value) -> Result<Option<String>, Rejection> {
    const MAX_TEXT: usize = 64;
    match (kind, value) {
        (_, Value::Null) => Ok(None),
        (Kind::Decimal, Value::String(s)) if is_decimal(s) => Ok(Some(s.clone())),
        (Kind::Decimal, Value::Number(n)) => {
            let text = n.to_string();
            if is_decimal(&text) {
                Ok(Some(text))
            } else {
                Err(Rejection::Malformed)
            }
        }
        (Kind::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        (Kind::Timestamp, Value::String(s))
            if s.len() <= MAX_TEXT && parse_timestamp(s).is_some() =>
        {
            Ok(Some(s.clone()))
        }
        (Kind::Text, Value::String(s))
            if !s.is_empty() && s.len() <= MAX_TEXT && !s.chars().any(char::is_control) =>
        {
            Ok(Some(s.clone()))
        }
        _ => Err(Rejection::Malformed),
    }
}

/// `-?digits(.digits)?`, at most 32 characters: what DSMR-reader's DecimalFields produce.
fn is_decimal(s: &str) -> bool {
    if s.is_empty() || s.len() > 32 {
        return false;
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let mut parts = unsigned.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Last published value and its time, per register and device.
#[derive(Debug, Default)]
struct RegisterGuard {
    last: std::collections::HashMap<(Arc<str>, usize), (f64, OffsetDateTime)>,
}

impl RegisterGuard {
    fn check(
        &self,
        device: &Arc<str>,
        index: usize,
        value: f64,
        at: OffsetDateTime,
        max_per_hour: f64,
    ) -> Result<(), Rejection> {
        if value <= 0.0 {
            return Err(Rejection::Zero);
        }
        let Some(&(previous, previous_at)) = self.last.get(&(device.clone(), index)) else {
            return Ok(());
        };
        if value < previous {
            return Err(Rejection::Decrease);
        }
        // A minute of slack absorbs clock jitter between the meter and DSMR-reader.
        let hours = ((at - previous_at).as_seconds_f64() / 3600.0).max(0.0) + 1.0 / 60.0;
        if value - previous > max_per_hour * hours {
            return Err(Rejection::Jump);
        }
        Ok(())
    }

    fn record(&mut self, device: &Arc<str>, index: usize, value: f64, at: OffsetDateTime) {
        self.last.insert((device.clone(), index), (value, at));
    }
}

/// Everything the bridge knows about the meter: the last accepted value of every table entry,
/// which entities exist, and the device identities.
#[derive(Debug)]
pub struct MeterState {
    values: Vec<Option<String>>,
    exists: Vec<bool>,
    identity: MeterIdentity,
    reader_version: Option<String>,
    guard: RegisterGuard,
    last_reading_at: Option<OffsetDateTime>,
    warned: HashSet<(usize, Rejection)>,
    warned_reading: Option<&'static str>,
    entities_changed: bool,
    has_data: bool,
    gas_index: usize,
}

impl MeterState {
    /// `fallback_id` names the meter devices until (or unless) the telegram gives an equipment id.
    pub fn new(fallback_id: &str) -> Self {
        Self {
            values: vec![None; SENSORS.len()],
            exists: vec![false; SENSORS.len()],
            identity: MeterIdentity::fallback(fallback_id),
            reader_version: None,
            guard: RegisterGuard::default(),
            last_reading_at: None,
            warned: HashSet::new(),
            warned_reading: None,
            entities_changed: false,
            has_data: false,
            gas_index: catalog::index_of("gas_delivered").expect("gas register in the table"),
        }
    }

    pub fn identity(&self) -> &MeterIdentity {
        &self.identity
    }

    pub fn reader_version(&self) -> Option<&str> {
        self.reader_version.as_deref()
    }

    /// Whether a first poll has been applied (discovery cleanup waits for it).
    pub fn has_data(&self) -> bool {
        self.has_data
    }

    pub fn value(&self, index: usize) -> Option<&str> {
        self.values[index].as_deref()
    }

    /// Whether Home Assistant should have an entity for this entry.
    pub fn entity_exists(&self, index: usize) -> bool {
        self.exists[index] && self.publishable(index)
    }

    /// Gas-meter values only count once the meter has reported a gas register: DSMR-reader
    /// fills day totals with 0 for homes without gas.
    fn publishable(&self, index: usize) -> bool {
        SENSORS[index].device != Device::Gas || self.exists[self.gas_index]
    }

    /// True once after the set of entities (or a device identity) changed.
    pub fn take_entities_changed(&mut self) -> bool {
        std::mem::take(&mut self.entities_changed)
    }

    /// Applies one poll. Returns the table indices whose current value should be offered for
    /// publishing (every valid value fetched in this poll, changed or not: dedup decides).
    pub fn apply(&mut self, snapshot: &Snapshot, now: OffsetDateTime) -> Vec<usize> {
        let mut offered = Vec::new();
        if let Some(stats) = &snapshot.meter_stats {
            self.apply_identity(stats);
            self.apply_endpoint(Endpoint::MeterStats, stats, now, &mut offered);
        }
        if let Some(reading) = &snapshot.reading
            && let Some(at) = self.accept_reading(reading, now)
        {
            self.apply_endpoint(Endpoint::Reading, reading, at, &mut offered);
            self.last_reading_at = Some(at);
        }
        for (endpoint, object) in [
            (Endpoint::Today, &snapshot.today),
            (Endpoint::Peak, &snapshot.peak),
            (Endpoint::Version, &snapshot.version),
            (Endpoint::Monitoring, &snapshot.monitoring),
        ] {
            if let Some(object) = object {
                self.apply_endpoint(endpoint, object, now, &mut offered);
            }
        }
        if let Some(version) = &snapshot.version
            && let Some(Value::String(v)) = version.get("version")
            && self.reader_version.as_deref() != Some(v)
            && parse_value(Kind::Text, &Value::String(v.clone())).is_ok()
        {
            self.reader_version = Some(v.clone());
            self.entities_changed = true;
        }
        self.has_data |= snapshot.reading.is_some() || snapshot.meter_stats.is_some();
        offered.retain(|&i| self.publishable(i));
        offered
    }

    /// Sets DSMR-reader's reachability and returns its table index.
    pub fn set_reachable(&mut self, reachable: bool) -> usize {
        let index = catalog::health_index();
        self.values[index] = Some(if reachable { "online" } else { "offline" }.to_owned());
        if !self.exists[index] {
            self.exists[index] = true;
            self.entities_changed = true;
        }
        index
    }

    /// Every entry with a current value, for a full republish.
    pub fn current(&self) -> impl Iterator<Item = usize> + '_ {
        (0..SENSORS.len()).filter(|&i| self.values[i].is_some() && self.publishable(i))
    }

    fn apply_identity(&mut self, stats: &Object) {
        let Some(Value::String(telegram)) = stats.get("latest_telegram") else {
            return;
        };
        let found = MeterIdentity::from_telegram(telegram, &self.identity);
        // Going from the fallback id to the telegram's is the normal start, not a swap.
        if found.electricity != self.identity.electricity
            && self.identity.electricity_serial.is_some()
        {
            info!(
                old = %self.identity.electricity,
                new = %found.electricity,
                "Electricity meter identity changed; Home Assistant gets a new device for it"
            );
        }
        if found.gas != self.identity.gas && self.identity.gas_serial.is_some() {
            info!(old = %self.identity.gas, new = %found.gas, "Gas meter identity changed");
        }
        if found != self.identity {
            self.identity = found;
            self.entities_changed = true;
        }
    }

    /// A reading older than the last one, or stamped in the future, is skipped as a whole.
    fn accept_reading(&mut self, reading: &Object, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let at = match reading.get("timestamp") {
            Some(Value::String(s)) => parse_timestamp(s),
            _ => None,
        };
        let problem = match at {
            None => Some("reading has no valid timestamp; skipped"),
            Some(at) if at > now + MAX_FUTURE => Some(
                "reading is stamped more than an hour in the future; skipped (check the meter's or DSMR-reader's clock)",
            ),
            Some(at) if self.last_reading_at.is_some_and(|last| at < last) => {
                Some("reading is older than one already published; skipped")
            }
            Some(_) => None,
        };
        match problem {
            Some(message) => {
                if self.warned_reading != Some(message) {
                    warn!(timestamp = ?reading.get("timestamp"), "{message}");
                    self.warned_reading = Some(message);
                }
                None
            }
            None => {
                self.warned_reading = None;
                at
            }
        }
    }

    fn apply_endpoint(
        &mut self,
        endpoint: Endpoint,
        object: &Object,
        at: OffsetDateTime,
        offered: &mut Vec<usize>,
    ) {
        for (index, sensor) in SENSORS
            .iter()
            .enumerate()
            .filter(|(_, s)| s.endpoint == endpoint)
        {
            let Some(raw) = object.get(sensor.field) else {
                continue;
            };
            match self.check(index, sensor, raw, object, at) {
                Ok(Some(text)) => {
                    self.warned.retain(|(i, _)| *i != index);
                    if !self.exists[index] {
                        self.exists[index] = true;
                        self.entities_changed |= sensor.announce;
                    }
                    self.values[index] = Some(text);
                    offered.push(index);
                }
                // Null: the meter does not report it now; keep the last value, offer nothing.
                Ok(None) => {}
                Err(rejection) => {
                    if self.warned.insert((index, rejection)) {
                        warn!(
                            field = sensor.field,
                            value = %raw,
                            last = self.values[index].as_deref().unwrap_or("none"),
                            "Not published: {}",
                            rejection.reason()
                        );
                    }
                }
            }
        }
    }

    fn check(
        &mut self,
        index: usize,
        sensor: &Sensor,
        raw: &Value,
        object: &Object,
        at: OffsetDateTime,
    ) -> Result<Option<String>, Rejection> {
        let Some(text) = parse_value(sensor.kind, raw)? else {
            return Ok(None);
        };
        if let Some(max_per_hour) = sensor.register_max_per_hour {
            let value: f64 = text.parse().map_err(|_| Rejection::Malformed)?;
            // The gas register has its own timestamp; it only moves every 5 minutes or hour.
            let at = match (sensor.device, object.get("extra_device_timestamp")) {
                (Device::Gas, Some(Value::String(s))) => parse_timestamp(s).map_or(at, |gas_at| {
                    gas_at.clamp(at.checked_sub(MAX_GAS_LAG).unwrap_or(at), at)
                }),
                _ => at,
            };
            let device = self.identity.id_of(sensor.device).clone();
            self.guard.check(&device, index, value, at, max_per_hour)?;
            self.guard.record(&device, index, value, at);
        }
        Ok(Some(text))
    }
}

/// Full state topics, built once: `<base>/<table topic>` per table entry.
#[derive(Debug, Clone)]
pub struct Topics {
    pub base: String,
    pub bridge_status: Arc<str>,
    pub reader_status: Arc<str>,
    state: Vec<Arc<str>>,
}

impl Topics {
    pub fn new(base: &str) -> Self {
        let state: Vec<Arc<str>> = SENSORS
            .iter()
            .map(|s| Arc::from(format!("{base}/{}", s.topic)))
            .collect();
        Self {
            base: base.to_owned(),
            bridge_status: Arc::from(format!("{base}/status")),
            reader_status: state[catalog::health_index()].clone(),
            state,
        }
    }

    pub fn state(&self, index: usize) -> &Arc<str> {
        &self.state[index]
    }
}

/// The state messages for the given table entries, in table order of `indices`.
pub fn state_messages<'a>(
    state: &'a MeterState,
    topics: &'a Topics,
    indices: impl IntoIterator<Item = usize> + 'a,
) -> impl Iterator<Item = Message> + 'a {
    indices.into_iter().filter_map(|i| {
        state.value(i).map(|v| Message {
            topic: topics.state(i).clone(),
            payload: v.to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn fixture_snapshot() -> Snapshot {
        let reading = fixture("v2_datalogger_dsmrreading_latest.json")["results"][0]
            .as_object()
            .cloned();
        Snapshot {
            reading,
            meter_stats: fixture("v2_datalogger_meter-statistics.json")
                .as_object()
                .cloned(),
            today: fixture("v2_consumption_today.json").as_object().cloned(),
            peak: fixture("v2_consumption_quarter-hour-peak-electricity_latest.json")["results"][0]
                .as_object()
                .cloned(),
            version: fixture("v2_application_version.json").as_object().cloned(),
            monitoring: fixture("v2_application_monitoring.json")
                .as_object()
                .cloned(),
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-11-26 14:02:20 +01:00);

    fn published(
        state: &MeterState,
        topics: &Topics,
        indices: Vec<usize>,
    ) -> Vec<(String, String)> {
        state_messages(state, topics, indices)
            .map(|m| (m.topic.to_string(), m.payload))
            .collect()
    }

    #[test]
    fn decimals_keep_their_exact_text() {
        assert_eq!(
            parse_value(Kind::Decimal, &json!("37562.774")),
            Ok(Some("37562.774".into()))
        );
        assert_eq!(
            parse_value(Kind::Decimal, &json!("2000.000")),
            Ok(Some("2000.000".into()))
        );
        assert_eq!(
            parse_value(Kind::Decimal, &json!(5.052)),
            Ok(Some("5.052".into()))
        );
        assert_eq!(
            parse_value(Kind::Decimal, &json!(0.1)),
            Ok(Some("0.1".into()))
        );
        assert_eq!(parse_value(Kind::Decimal, &json!(null)), Ok(None));
        for bad in [
            json!("NaN"),
            json!("1e5"),
            json!(""),
            json!("1."),
            json!(true),
            json!({}),
            json!(1e300),
        ] {
            assert_eq!(
                parse_value(Kind::Decimal, &bad),
                Err(Rejection::Malformed),
                "{bad}"
            );
        }
        assert_eq!(parse_value(Kind::Integer, &json!(7)), Ok(Some("7".into())));
        assert_eq!(
            parse_value(Kind::Integer, &json!(7.5)),
            Err(Rejection::Malformed)
        );
        assert!(
            parse_value(Kind::Timestamp, &json!("2026-11-26T14:02:14+01:00"))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            parse_value(Kind::Timestamp, &json!("yesterday")),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn fixture_meter_maps_to_dsmr_reader_topics() {
        let mut state = MeterState::new("dsmr-bridge");
        let topics = Topics::new("dsmr-bridge");
        let offered = state.apply(&fixture_snapshot(), NOW);
        let messages = published(&state, &topics, offered);
        let get = |t: &str| {
            messages
                .iter()
                .find(|(topic, _)| topic == t)
                .map(|(_, p)| p.as_str())
        };
        assert_eq!(
            get("dsmr-bridge/reading/electricity_delivered_1"),
            Some("37562.774")
        );
        assert_eq!(
            get("dsmr-bridge/reading/electricity_returned_2"),
            Some("30050.219")
        );
        assert_eq!(
            get("dsmr-bridge/reading/timestamp"),
            Some("2026-11-26T14:02:14+01:00")
        );
        assert_eq!(get("dsmr-bridge/reading/phase_power_current_l1"), Some("7"));
        assert_eq!(
            get("dsmr-bridge/consumption/gas/delivered"),
            Some("11268.833")
        );
        assert_eq!(get("dsmr-bridge/meter-stats/electricity_tariff"), Some("1"));
        assert_eq!(get("dsmr-bridge/meter-stats/dsmr_version"), Some("50"));
        assert_eq!(
            get("dsmr-bridge/day-consumption/electricity1_cost"),
            Some("1.21")
        );
        assert_eq!(get("dsmr-bridge/day-consumption/gas"), Some("1.513"));
        assert_eq!(
            get("dsmr-bridge/consumption/quarter-hour-peak-electricity/average_delivered"),
            Some("0.577")
        );
        assert_eq!(get("dsmr-bridge/dsmr-reader/version"), Some("5.11.0"));
        assert_eq!(get("dsmr-bridge/dsmr-reader/problems"), Some("0"));
        assert!(state.take_entities_changed());
        assert_eq!(
            state.identity().electricity.as_ref(),
            "dsmrbridge_12345678901234567890123456789000"
        );
        assert_eq!(
            state.identity().gas.as_ref(),
            "dsmrbridge_12345678901234567890123456789001"
        );
    }

    fn reading_with(at: &str, delivered_1: Value) -> Snapshot {
        let mut reading = fixture("v2_datalogger_dsmrreading_latest.json")["results"][0]
            .as_object()
            .cloned()
            .unwrap();
        reading.insert("timestamp".into(), json!(at));
        reading.insert("electricity_delivered_1".into(), delivered_1);
        Snapshot {
            reading: Some(reading),
            ..Snapshot::default()
        }
    }

    fn register_value(
        state: &mut MeterState,
        snapshot: &Snapshot,
        now: OffsetDateTime,
    ) -> Option<String> {
        let topics = Topics::new("b");
        let offered = state.apply(snapshot, now);
        published(state, &topics, offered)
            .into_iter()
            .find(|(t, _)| t == "b/reading/electricity_delivered_1")
            .map(|(_, p)| p)
    }

    #[test]
    fn registers_never_go_to_zero_down_or_jump() {
        let mut state = MeterState::new("x");
        let t0 = "2026-11-26T14:02:14+01:00";
        assert_eq!(
            register_value(&mut state, &reading_with(t0, json!("100.000")), NOW).as_deref(),
            Some("100.000")
        );
        let t1 = "2026-11-26T14:02:19+01:00";
        assert_eq!(
            register_value(&mut state, &reading_with(t1, json!("0.000")), NOW),
            None
        );
        assert_eq!(
            register_value(&mut state, &reading_with(t1, json!("99.000")), NOW),
            None
        );
        assert_eq!(
            register_value(&mut state, &reading_with(t1, json!("5000.000")), NOW),
            None
        );
        assert_eq!(
            register_value(&mut state, &reading_with(t1, json!(null)), NOW),
            None
        );
        assert_eq!(
            register_value(&mut state, &reading_with(t1, json!("100.001")), NOW).as_deref(),
            Some("100.001")
        );
        // Other fields of a reading with a bad register still go out.
        let offered = state.apply(&reading_with(t1, json!("1.000")), NOW);
        assert!(offered.contains(&catalog::index_of("electricity_currently_delivered").unwrap()));
        // The last good value stays the one to republish.
        assert_eq!(
            state.value(catalog::index_of("electricity_delivered_1").unwrap()),
            Some("100.001")
        );
    }

    #[test]
    fn old_and_future_readings_are_skipped() {
        let mut state = MeterState::new("x");
        assert!(
            register_value(
                &mut state,
                &reading_with("2026-11-26T14:02:14+01:00", json!("100.000")),
                NOW
            )
            .is_some()
        );
        assert_eq!(
            register_value(
                &mut state,
                &reading_with("2026-11-26T14:01:00+01:00", json!("100.500")),
                NOW
            ),
            None
        );
        assert_eq!(
            register_value(
                &mut state,
                &reading_with("2026-11-27T14:01:00+01:00", json!("100.500")),
                NOW
            ),
            None
        );
        assert!(
            register_value(
                &mut state,
                &reading_with("2026-11-26T14:02:20+01:00", json!("100.500")),
                NOW
            )
            .is_some()
        );
    }

    #[test]
    fn zero_returned_register_creates_no_entity() {
        let mut state = MeterState::new("x");
        let mut snapshot = fixture_snapshot();
        let reading = snapshot.reading.as_mut().unwrap();
        reading.insert("electricity_returned_1".into(), json!("0.000"));
        state.apply(&snapshot, NOW);
        assert!(!state.entity_exists(catalog::index_of("electricity_returned_1").unwrap()));
        assert!(state.entity_exists(catalog::index_of("electricity_returned_2").unwrap()));
    }

    #[test]
    fn single_phase_meter_without_gas_has_no_l2_l3_or_gas_values() {
        let mut state = MeterState::new("x");
        let mut snapshot = fixture_snapshot();
        let reading = snapshot.reading.as_mut().unwrap();
        for field in [
            "phase_currently_delivered_l2",
            "phase_currently_delivered_l3",
            "phase_currently_returned_l2",
            "phase_currently_returned_l3",
            "phase_voltage_l2",
            "phase_voltage_l3",
            "phase_power_current_l2",
            "phase_power_current_l3",
            "extra_device_timestamp",
            "extra_device_delivered",
        ] {
            reading.insert(field.into(), Value::Null);
        }
        let stats = snapshot.meter_stats.as_mut().unwrap();
        for field in [
            "voltage_sag_count_l2",
            "voltage_sag_count_l3",
            "voltage_swell_count_l2",
            "voltage_swell_count_l3",
        ] {
            stats.insert(field.into(), Value::Null);
        }
        let offered = state.apply(&snapshot, NOW);
        for i in offered.iter().copied() {
            let s = &SENSORS[i];
            assert!(
                !s.key.ends_with("_l2") && !s.key.ends_with("_l3"),
                "{}",
                s.key
            );
            assert_ne!(s.device, Device::Gas, "{}", s.key);
        }
        // `today` still says gas: 1.513 but the meter reports no gas register.
        assert!(!state.entity_exists(catalog::index_of("gas_today").unwrap()));
    }

    #[test]
    fn meter_swap_starts_a_new_device_with_its_own_registers() {
        let mut state = MeterState::new("x");
        state.apply(&fixture_snapshot(), NOW);
        state.take_entities_changed();
        let mut swapped = fixture_snapshot();
        let stats = swapped.meter_stats.as_mut().unwrap();
        let telegram = stats["latest_telegram"].as_str().unwrap().replace(
            "0-0:96.1.1(12345678901234567890123456789000)",
            "0-0:96.1.1(99999999999999999999999999999999)",
        );
        stats.insert("latest_telegram".into(), json!(telegram));
        let reading = swapped.reading.as_mut().unwrap();
        reading.insert("timestamp".into(), json!("2026-11-26T14:05:00+01:00"));
        reading.insert("electricity_delivered_1".into(), json!("0.010"));
        let topics = Topics::new("b");
        let offered = state.apply(&swapped, NOW + time::Duration::minutes(3));
        assert!(state.take_entities_changed());
        assert_eq!(
            state.identity().electricity.as_ref(),
            "dsmrbridge_99999999999999999999999999999999"
        );
        let messages = published(&state, &topics, offered);
        assert!(messages.contains(&("b/reading/electricity_delivered_1".into(), "0.010".into())));
    }
}
