//! Map stage, meter state: each poll's answers are checked and kept as the last accepted
//! value of every table entry, with which entities exist and who the meters are.
//! No I/O and no clock of its own: the caller passes `now`.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::catalog::{Device, Endpoint, Key, Kind, PerKey, SENSORS, Sensor};
use super::guard::{Reader, RegisterGuard, RetainedRegister};
use super::telegram::{self, MeterIdentity, TelegramProblem, TelegramReadings};
use super::value::{Accepted, Rejection, displays_as, parse_timestamp, parse_value};
use crate::model::{Object, Snapshot};

/// Readings stamped further ahead of the wall clock than this are an outlier (or a broken
/// clock), not a fast meter. Taken, one would make every real reading after it "older than one
/// already published" until the wall clock caught up with it.
pub const MAX_FUTURE: time::Duration = time::Duration::minutes(5);
/// The gas register's own timestamp lags the reading by up to an hour (hourly DSMR 4 gas). One
/// after the reading, or further behind, is the gas meter's clock being wrong: taken as is it
/// would widen (or, far ahead, switch off) the jump check for the next value.
const MAX_GAS_LAG: time::Duration = time::Duration::hours(2);

/// Everything the bridge knows about the meter: the last accepted value of every table entry,
/// which entities exist, and the device identities.
#[derive(Debug)]
pub struct MeterState {
    /// Shared with the messages offered for them, so offering, queueing and caching a value
    /// copies a pointer, not the text.
    values: PerKey<Option<Arc<str>>>,
    exists: PerKey<bool>,
    identity: MeterIdentity,
    /// Of the telegram lines the identity was last read from.
    identity_fingerprint: Option<u64>,
    /// Meter statistics have carried a telegram: the identity is the meter's, not a guess.
    identity_known: bool,
    reader_version: Option<String>,
    guard: RegisterGuard,
    last_reading_at: Option<OffsetDateTime>,
    warned: HashSet<(Key, Rejection)>,
    warned_reading: Option<SkippedReading>,
    /// Telegram problems already logged: one warning per kind, for as long as the bridge runs.
    warned_telegram: HashSet<TelegramProblem>,
    entities_changed: bool,
    /// A meter register was held back by the register guard since the last
    /// `take_identity_doubt`.
    identity_doubt: bool,
    has_data: bool,
    gas: Key,
}

impl MeterState {
    /// `fallback_id` names the meter devices until (or unless) the telegram gives an equipment id.
    pub fn new(fallback_id: &str) -> Self {
        // DSMR-reader's reachability is known from the first poll on, and its device has to
        // exist before the meter devices that name it as `via_device`.
        let mut exists = PerKey::new(|_| false);
        exists[Key::health()] = true;
        Self {
            values: PerKey::new(|_| None),
            exists,
            identity: MeterIdentity::fallback(fallback_id),
            identity_fingerprint: None,
            identity_known: false,
            reader_version: None,
            guard: RegisterGuard::default(),
            last_reading_at: None,
            warned: HashSet::new(),
            warned_reading: None,
            warned_telegram: HashSet::new(),
            entities_changed: false,
            identity_doubt: false,
            has_data: false,
            gas: Key::of("gas_delivered").expect("gas register in the table"),
        }
    }

    pub(crate) fn identity(&self) -> &MeterIdentity {
        &self.identity
    }

    /// Whether a telegram has named the meters (after a restart DSMR-reader has none for a
    /// while, and the identity is the fallback until then).
    pub(crate) fn identity_known(&self) -> bool {
        self.identity_known
    }

    pub(crate) fn reader_version(&self) -> Option<&str> {
        self.reader_version.as_deref()
    }

    /// Whether a first poll has been applied (discovery cleanup waits for it).
    pub(crate) fn has_data(&self) -> bool {
        self.has_data
    }

    pub fn value(&self, index: Key) -> Option<&str> {
        self.values[index].as_deref()
    }

    /// The value as the messages offered for it share it.
    pub(super) fn shared_value(&self, index: Key) -> Option<&Arc<str>> {
        self.values[index].as_ref()
    }

    /// Whether Home Assistant should have an entity for this entry.
    pub(crate) fn entity_exists(&self, index: Key) -> bool {
        self.exists[index] && self.publishable(index)
    }

    /// Gas-meter values only count once the meter has reported a gas register: DSMR-reader
    /// fills day totals with 0 for homes without gas. And not when the telegram shows that
    /// DSMR-reader's "gas" meter is a water or heat meter: they would be its values, as gas.
    fn publishable(&self, index: Key) -> bool {
        index.sensor().device != Device::Gas
            || (self.exists[self.gas] && self.identity.gas_device_is_not_gas().is_none())
    }

    /// True once after the set of entities (or a device identity) changed.
    pub(crate) fn take_entities_changed(&mut self) -> bool {
        std::mem::take(&mut self.entities_changed)
    }

    /// True once after an `apply` in which the register guard held a meter register back (0, a
    /// drop or a jump). A swapped meter shows up like that before its new identity is known, so
    /// the caller should fetch fresh meter statistics (with the telegram) at once.
    pub(crate) fn take_identity_doubt(&mut self) -> bool {
        std::mem::take(&mut self.identity_doubt)
    }

    /// Applies one poll. Returns the table indices whose current value should be offered for
    /// publishing (every valid value fetched in this poll, changed or not: dedup decides).
    pub fn apply(&mut self, snapshot: &Snapshot, now: OffsetDateTime) -> Vec<Key> {
        let mut offered = Vec::with_capacity(SENSORS.len());
        if let Some(stats) = &snapshot.meter_stats {
            self.apply_identity(stats);
            self.apply_endpoint(Endpoint::MeterStats, stats, now, &mut offered);
            if let Some(Value::String(telegram)) = stats.get("latest_telegram") {
                let fields = self.telegram_fields(telegram);
                self.apply_endpoint(Endpoint::Telegram, &fields, now, &mut offered);
            }
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

    /// DSMR-reader does not have `endpoint`: its entities go (Home Assistant removes them at
    /// the next discovery) until it answers again.
    pub(crate) fn forget(&mut self, endpoint: Endpoint) {
        for index in Key::all() {
            let sensor = index.sensor();
            // The telegram comes with meter statistics.
            let gone = sensor.endpoint == endpoint
                || (endpoint == Endpoint::MeterStats && sensor.endpoint == Endpoint::Telegram);
            if gone && self.exists[index] {
                self.exists[index] = false;
                self.values[index] = None;
                self.entities_changed |= index.sensor().announce;
            }
        }
    }

    /// From now on, no meter register's first value is published before `retained_registers`
    /// says what the broker holds from an earlier run.
    pub(crate) fn expect_retained_registers(&mut self) {
        self.guard.expect_retained();
    }

    /// The registers the broker retained from an earlier run: a first value lower than these
    /// is held back (for the same meter), as Home Assistant would count a meter reset.
    pub(crate) fn retained_registers(&mut self, retained: Vec<RetainedRegister>) {
        self.guard.retained_registers(retained);
    }

    /// Sets DSMR-reader's reachability and returns its table index.
    pub fn set_reachable(&mut self, reachable: bool) -> Key {
        let index = Key::health();
        let status = if reachable { "online" } else { "offline" };
        if self.value(index) != Some(status) {
            self.values[index] = Some(Arc::from(status));
        }
        index
    }

    /// Every entry with a current value, for a full republish.
    pub fn current(&self) -> impl Iterator<Item = Key> + '_ {
        Key::all().filter(|&i| self.values[i].is_some() && self.publishable(i))
    }

    fn apply_identity(&mut self, stats: &Object) {
        let Some(Value::String(telegram)) = stats.get("latest_telegram") else {
            return;
        };
        if !self.identity_known {
            self.identity_known = true;
            // Discovery held the meter devices back until now.
            self.entities_changed = true;
        }
        let fingerprint = telegram::identity_fingerprint(telegram);
        if self.identity_fingerprint == Some(fingerprint) {
            return;
        }
        self.identity_fingerprint = Some(fingerprint);
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
        if found.tariffs != self.identity.tariffs {
            let [one, two] = found.tariffs.labels();
            info!(
                tariff_1 = one,
                tariff_2 = two,
                "Tariffs labelled by the meter's country (from its telegram)"
            );
        }
        // The telegram names the meters the fallback ids stood for: the same registers.
        let devices = [Device::Electricity, Device::Gas]
            .into_iter()
            .chain((1..=4).map(Device::MBus));
        for device in devices {
            let (old, new) = (self.identity.id_of(device), found.id_of(device));
            if old != new && !self.identity.is_identified(device) {
                self.guard.rename(old, new);
            }
        }
        if found != self.identity {
            self.identity = found;
            self.entities_changed = true;
        }
    }

    /// The telegram's Belgian and M-Bus values as fields of `Endpoint::Telegram` entries, so
    /// they pass the same checks as DSMR-reader's (kind, sign, register guard). The M-Bus
    /// device DSMR-reader already reports as its gas meter (the same equipment id) is left
    /// out: it is the gas device. Each problem is logged once.
    fn telegram_fields(&mut self, telegram: &str) -> Object {
        let (fields, problems) = telegram_fields(telegram, &self.identity);
        for problem in problems {
            if self.warned_telegram.insert(problem) {
                problem.warn();
            }
        }
        fields
    }

    /// A reading older than the last one, or stamped in the future, is skipped as a whole.
    /// The last one only counts while it is not itself ahead of the wall clock (the bridge's
    /// clock was set back): otherwise it would hold every reading back until then.
    fn accept_reading(&mut self, reading: &Object, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let at = match reading.get("timestamp") {
            Some(Value::String(s)) => parse_timestamp(s),
            _ => None,
        };
        let skipped = match at {
            None => Some(SkippedReading::NoTimestamp),
            Some(at) if at > now + MAX_FUTURE => Some(SkippedReading::Future),
            Some(at)
                if self
                    .last_reading_at
                    .is_some_and(|last| at < last && last <= now + MAX_FUTURE) =>
            {
                Some(SkippedReading::Older)
            }
            Some(_) => None,
        };
        match skipped {
            Some(why) => {
                if self.warned_reading != Some(why) {
                    why.warn(reading.get("timestamp").unwrap_or(&Value::Null));
                    self.warned_reading = Some(why);
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
        offered: &mut Vec<Key>,
    ) {
        for (index, sensor) in Key::all()
            .map(|k| (k, k.sensor()))
            .filter(|(_, s)| s.endpoint == endpoint)
        {
            let Some(raw) = object.get(sensor.field) else {
                continue;
            };
            match self.check(index, sensor, raw, object, at) {
                Ok(Some(Checked { accepted, register })) => {
                    if let Some(RegisterReading { device, value, at }) = register {
                        self.guard.record(&device, index, value, at);
                    }
                    self.warned.retain(|(i, _)| *i != index);
                    if !self.exists[index] {
                        self.exists[index] = true;
                        self.entities_changed |= index.sensor().announce;
                    }
                    if let Accepted::Changed(text) = accepted {
                        self.values[index] = Some(Arc::from(text));
                    }
                    offered.push(index);
                }
                // Null: the meter does not report it now; keep the last value, offer nothing.
                Ok(None) => {}
                Err(rejection) => {
                    if rejection.keeps_entity() && !self.exists[index] {
                        self.exists[index] = true;
                        self.entities_changed |= index.sensor().announce;
                    }
                    self.identity_doubt |= rejection.by_register_guard();
                    if self.warned.insert((index, rejection)) {
                        let retained = self.guard.retained(index).map(|r| r.text.as_str());
                        let last = match rejection {
                            Rejection::BelowRetained => retained,
                            _ => self.values[index].as_deref(),
                        };
                        rejection.warn(sensor.field, raw, last.unwrap_or("none"));
                    }
                }
            }
        }
    }

    /// Checks a field's value against its kind and, for a meter register, against the register
    /// guard. Changes nothing but the guard's first value in waiting: what a register reading
    /// must be recorded as comes back with it.
    fn check<'v>(
        &mut self,
        index: Key,
        sensor: &Sensor,
        raw: &'v Value,
        object: &Object,
        at: OffsetDateTime,
    ) -> Result<Option<Checked<'v>>, Rejection> {
        let current = self.values[index].as_deref();
        let text = match (sensor.kind, raw, current) {
            // Counters arrive as JSON numbers: compare with the last text rather than format a
            // new one on every poll. The last text passed `parse_value` for this kind, so an
            // identical rendering would pass again.
            (Kind::Decimal | Kind::Integer, Value::Number(n), Some(current))
                if displays_as(n, current) =>
            {
                None
            }
            _ => match parse_value(sensor.kind, raw)? {
                Some(text) => Some(text).filter(|text| current != Some(&**text)),
                None => return Ok(None),
            },
        };
        if sensor.non_negative
            && let Some(text) = &text
            && text.starts_with('-')
            && text.parse::<f64>().is_ok_and(|v| v < 0.0)
        {
            return Err(Rejection::Negative);
        }
        if let (Some(max), Some(text)) = (sensor.max, &text)
            && text.parse::<f64>().is_ok_and(|v| v > max)
        {
            return Err(Rejection::TooLarge);
        }
        let register = match sensor.register_max_per_hour {
            Some(max_per_hour) => {
                let shown = text.as_deref().or(current).ok_or(Rejection::Malformed)?;
                let value: f64 = shown.parse().map_err(|_| Rejection::Malformed)?;
                // Gas and M-Bus registers have their own timestamp; it only moves every 5
                // minutes or hour.
                let own_time = match sensor.device {
                    Device::Gas => Some("extra_device_timestamp"),
                    Device::MBus(n) => MBUS_TIME_FIELDS
                        .get(usize::from(n).wrapping_sub(1))
                        .copied(),
                    _ => None,
                };
                let at = match own_time.and_then(|field| object.get(field)) {
                    Some(Value::String(s)) => parse_timestamp(s).map_or(at, |own_at| {
                        own_at.clamp(at.checked_sub(MAX_GAS_LAG).unwrap_or(at), at)
                    }),
                    _ => at,
                };
                let device = self.identity.id_of(sensor.device);
                let reader = Reader {
                    device,
                    identified: self.identity.is_identified(sensor.device),
                };
                if let Err(rejection) = self.guard.check(reader, index, value, at, max_per_hour) {
                    if rejection == Rejection::Unconfirmed {
                        self.guard.propose(device, index, value, at);
                    }
                    return Err(rejection);
                }
                Some(RegisterReading {
                    device: device.clone(),
                    value,
                    at,
                })
            }
            None => None,
        };
        Ok(Some(Checked {
            accepted: text.map_or(Accepted::Unchanged, Accepted::Changed),
            register,
        }))
    }
}

/// The telegram's values as the fields `MeterState::telegram_fields` describes, and its
/// problems.
fn telegram_fields(telegram: &str, identity: &MeterIdentity) -> (Object, Vec<TelegramProblem>) {
    use time::format_description::well_known::Rfc3339;
    let readings = TelegramReadings::parse(telegram);
    let mut problems = readings.problems.clone();
    let mut fields = Object::new();
    let mut put = |field: String, text: String| {
        fields.insert(field, Value::String(text));
    };
    if let Some(demand) = &readings.average_demand {
        put("current_average_demand".into(), demand.clone());
    }
    if let Some((at, kw)) = &readings.month_maximum {
        put("maximum_demand_month".into(), kw.clone());
        if let Ok(at) = at.format(&Rfc3339) {
            put("maximum_demand_month_timestamp".into(), at);
        }
    }
    if let Some(basis) = readings.capacity_tariff_basis() {
        put("capacity_tariff_basis".into(), format!("{basis:.3}"));
    }
    for (slot, channel) in readings.mbus.iter().enumerate() {
        let (Some(kind), Some(reading)) = (channel.kind(), &channel.reading) else {
            continue;
        };
        let Some(suffix) = telegram::register_unit(kind, &reading.unit) else {
            continue;
        };
        let serial = &identity.mbus[slot].serial;
        if serial.is_some() && *serial == identity.gas_serial {
            if kind == telegram::MBusKind::Gas {
                continue;
            }
            problems.push(TelegramProblem::GasDeviceIsNot(kind));
        }
        let n = slot + 1;
        put(
            format!("mbus{n}_{}{suffix}", kind.as_str()),
            reading.value.clone(),
        );
        if let Ok(at) = reading.at.format(&Rfc3339) {
            put(MBUS_TIME_FIELDS[slot].into(), at);
        }
    }
    (fields, problems)
}

/// The fields of the M-Bus devices' reading times, per channel: a register's own timestamp.
const MBUS_TIME_FIELDS: [&str; 4] = [
    "mbus1_timestamp",
    "mbus2_timestamp",
    "mbus3_timestamp",
    "mbus4_timestamp",
];

/// A value that passed `MeterState::check`.
struct Checked<'v> {
    accepted: Accepted<'v>,
    /// For a meter register: what the register guard records once the value is taken.
    register: Option<RegisterReading>,
}

struct RegisterReading {
    device: Arc<str>,
    value: f64,
    at: OffsetDateTime,
}

/// Why a whole reading was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SkippedReading {
    NoTimestamp,
    Future,
    Older,
}

impl SkippedReading {
    fn warn(self, timestamp: &Value) {
        match self {
            Self::NoTimestamp => {
                warn!(timestamp = %timestamp, "reading has no valid timestamp; skipped");
            }
            Self::Future => warn!(
                timestamp = %timestamp,
                "reading is stamped more than 5 minutes in the future; skipped (check the meter's, DSMR-reader's and this host's clocks)"
            ),
            Self::Older => warn!(
                timestamp = %timestamp,
                "reading is older than one already published; skipped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::map::Topics;
    use crate::map::fixtures::{self, NOW, published};

    fn fixture_snapshot() -> Snapshot {
        fixtures::snapshot()
    }

    #[test]
    fn unchanged_values_keep_their_text_and_changed_ones_replace_it() {
        let mut state = MeterState::new("x");
        let snapshot = fixture_snapshot();
        // Twice: a register's first value waits for a second reading.
        state.apply(&snapshot, NOW);
        state.apply(&snapshot, NOW);
        let before = state.values.clone();
        let mut next = snapshot.clone();
        let reading = next.reading.as_mut().unwrap();
        reading.insert("phase_power_current_l1".into(), json!(8));
        reading.insert("electricity_currently_delivered".into(), json!("0.999"));
        // The same value as a JSON number instead of text renders the same: nothing changes.
        reading.insert("electricity_currently_returned".into(), json!(0.208));
        state.apply(&next, NOW);

        let changed: Vec<&str> = Key::all()
            .filter(|&i| match (&before[i], &state.values[i]) {
                (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                (a, b) => a.is_some() != b.is_some(),
            })
            .map(|i| i.sensor().field)
            .collect();
        assert_eq!(
            changed,
            ["electricity_currently_delivered", "phase_power_current_l1"]
        );
        let l1 = Key::of("phase_power_current_l1").unwrap();
        assert_eq!(state.value(l1), Some("8"));
    }

    /// The telegram's values a poll publishes, by topic below `b/telegram/`.
    fn telegram_values(state: &mut MeterState, snapshot: &Snapshot) -> Vec<(String, String)> {
        let offered = state.apply(snapshot, NOW);
        published(state, &Topics::new("b"), offered)
            .into_iter()
            .filter_map(|(t, p)| Some((t.strip_prefix("b/telegram/")?.to_owned(), p)))
            .collect()
    }

    fn keys_of(state: &MeterState) -> Vec<&'static str> {
        Key::all()
            .filter(|&k| k.sensor().endpoint == Endpoint::Telegram && state.entity_exists(k))
            .map(|k| k.sensor().key)
            .collect()
    }

    #[test]
    fn a_belgian_meter_gets_the_capacity_tariff_and_a_dutch_one_does_not() {
        let mut state = MeterState::new("x");
        let belgian = fixtures::with_telegram(
            fixtures::belgian(fixture_snapshot()),
            "telegram_belgian_capacity_history.txt",
        );
        let values = telegram_values(&mut state, &belgian);
        assert_eq!(
            values,
            [
                ("current_average_demand".into(), "0.577".into()),
                ("maximum_demand_month".into(), "3.566".into()),
                (
                    "maximum_demand_month_timestamp".into(),
                    "2026-11-26T09:30:00+01:00".into()
                ),
                ("capacity_tariff_basis".into(), "4.580".into()),
            ]
        );
        // The Belgian gas meter is DSMR-reader's: no second device for it.
        assert_eq!(
            keys_of(&state),
            [
                "current_average_demand",
                "maximum_demand_month",
                "maximum_demand_month_timestamp",
                "capacity_tariff_basis"
            ]
        );

        let mut dutch = MeterState::new("x");
        assert_eq!(telegram_values(&mut dutch, &fixture_snapshot()), []);
        assert_eq!(keys_of(&dutch), Vec::<&str>::new());
        assert!(dutch.warned_telegram.is_empty());
    }

    #[test]
    fn a_water_meter_gets_its_reading_once_confirmed_and_gas_stays_dsmr_readers() {
        let mut state = MeterState::new("x");
        let poll = fixtures::with_telegram(fixture_snapshot(), "telegram_dutch_water_gas.txt");
        assert_eq!(
            telegram_values(&mut state, &poll),
            [("mbus1/timestamp".into(), "2026-11-26T14:00:00+01:00".into())],
            "a first value waits; its time goes out"
        );
        assert_eq!(keys_of(&state), ["mbus1_water", "mbus1_timestamp"]);
        assert_eq!(
            telegram_values(&mut state, &poll),
            [
                ("mbus1/water".into(), "123.456".into()),
                ("mbus1/timestamp".into(), "2026-11-26T14:00:00+01:00".into()),
            ]
        );
        assert_eq!(
            state.identity().id_of(Device::MBus(1)).as_ref(),
            "dsmrbridge_W0000000000000001"
        );
        let gas = Key::of("gas_delivered").unwrap();
        assert_eq!(state.value(gas), Some("11268.833"));
    }

    /// The register guard per M-Bus device: never lower, never a leap; a swapped meter (new id)
    /// is a new device whose first value waits for a second reading.
    #[test]
    fn the_register_guard_holds_for_m_bus_readings_and_a_swap() {
        let mut state = MeterState::new("x");
        let poll = fixtures::with_telegram(fixture_snapshot(), "telegram_dutch_water_gas.txt");
        state.apply(&poll, NOW);
        state.apply(&poll, NOW);
        let water = Key::of("mbus1_water").unwrap();
        assert_eq!(state.value(water), Some("123.456"));
        let with_water = |value: &str| {
            let mut poll = poll.clone();
            let stats = poll.meter_stats.as_mut().unwrap();
            let t = stats["latest_telegram"]
                .as_str()
                .unwrap()
                .replace("00123.456*m3", &format!("{value}*m3"));
            stats.insert("latest_telegram".into(), json!(t));
            poll
        };
        let water_of = |values: Vec<(String, String)>| {
            values
                .into_iter()
                .find(|(t, _)| t == "mbus1/water")
                .map(|(_, v)| v)
        };
        for held in ["123.455", "0.000", "999.000"] {
            assert_eq!(
                water_of(telegram_values(&mut state, &with_water(held))),
                None,
                "{held}"
            );
            assert_eq!(state.value(water), Some("123.456"));
        }
        assert!(state.take_identity_doubt());
        assert_eq!(
            water_of(telegram_values(&mut state, &with_water("123.500"))).as_deref(),
            Some("123.500")
        );

        state.take_entities_changed();
        let swapped =
            fixtures::with_telegram(fixture_snapshot(), "telegram_dutch_water_swapped.txt");
        assert_eq!(water_of(telegram_values(&mut state, &swapped)), None);
        assert!(state.take_entities_changed(), "a new device");
        assert_eq!(
            state.identity().id_of(Device::MBus(1)).as_ref(),
            "dsmrbridge_W0000000000000002"
        );
        assert_eq!(
            water_of(telegram_values(&mut state, &swapped)).as_deref(),
            Some("0.012")
        );
    }

    /// After a restart the broker's retained reading is the floor, for the same device only.
    #[test]
    fn a_retained_m_bus_reading_is_the_floor_after_a_restart() {
        let water = Key::of("mbus1_water").unwrap();
        let retained = |device: &str| RetainedRegister {
            index: water,
            value: 200.0,
            text: "200.000".into(),
            device: Some(Arc::from(device)),
        };
        let poll = fixtures::with_telegram(fixture_snapshot(), "telegram_dutch_water_gas.txt");
        let mut state = MeterState::new("x");
        state.expect_retained_registers();
        state.retained_registers(vec![retained("dsmrbridge_W0000000000000001")]);
        state.apply(&poll, NOW);
        state.apply(&poll, NOW);
        assert_eq!(
            state.value(water),
            None,
            "below what an earlier run published"
        );

        let mut state = MeterState::new("x");
        state.expect_retained_registers();
        state.retained_registers(vec![retained("dsmrbridge_W0000000000000009")]);
        state.apply(&poll, NOW);
        state.apply(&poll, NOW);
        assert_eq!(
            state.value(water),
            Some("123.456"),
            "another meter's retained value"
        );
    }

    #[test]
    fn heat_unknown_types_and_broken_lines() {
        let mut state = MeterState::new("x");
        let heat = fixtures::with_telegram(
            fixtures::without_gas(fixture_snapshot()),
            "telegram_dutch_heat.txt",
        );
        state.apply(&heat, NOW);
        assert_eq!(
            telegram_values(&mut state, &heat)[0],
            ("mbus1/heat".into(), "45.678".into())
        );

        let mut state = MeterState::new("x");
        let unknown =
            fixtures::with_telegram(fixture_snapshot(), "telegram_dutch_unknown_mbus.txt");
        state.apply(&unknown, NOW);
        state.apply(&unknown, NOW);
        assert_eq!(keys_of(&state), Vec::<&str>::new());
        assert_eq!(
            state.warned_telegram,
            HashSet::from([TelegramProblem::UnknownMBusType(6)])
        );
        // Everything else of the poll still goes out.
        assert!(state.value(Key::of("gas_delivered").unwrap()).is_some());

        let mut state = MeterState::new("x");
        let broken = fixtures::with_telegram(
            fixtures::belgian(fixture_snapshot()),
            "telegram_broken_lines.txt",
        );
        state.apply(&broken, NOW);
        assert_eq!(
            keys_of(&state),
            ["maximum_demand_month", "maximum_demand_month_timestamp"]
        );
        assert_eq!(state.warned_telegram.len(), 4);
        assert!(
            state
                .value(Key::of("electricity_currently_delivered").unwrap())
                .is_some()
        );
    }

    /// Water last: DSMR-reader takes the water meter for its gas meter. The bridge says so once,
    /// publishes none of DSMR-reader's gas values, and both M-Bus devices get their own device
    /// with the right class.
    #[test]
    fn dsmr_readers_gas_reading_from_a_water_meter_is_told() {
        let mut state = MeterState::new("x");
        let poll = fixtures::with_telegram(fixture_snapshot(), "telegram_dutch_gas_water.txt");
        state.apply(&poll, NOW);
        assert_eq!(
            keys_of(&state),
            [
                "mbus1_gas",
                "mbus1_timestamp",
                "mbus2_water",
                "mbus2_timestamp"
            ]
        );
        assert!(
            state
                .warned_telegram
                .contains(&TelegramProblem::GasDeviceIsNot(telegram::MBusKind::Water))
        );
        assert_ne!(
            state.identity().id_of(Device::MBus(2)),
            state.identity().id_of(Device::Gas)
        );
    }

    fn reading_with(at: &str, delivered_1: Value) -> Snapshot {
        let mut reading = fixtures::reading();
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
            register_value(&mut state, &reading_with(t0, json!("100.000")), NOW),
            None,
            "a first value waits for a second reading"
        );
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
        assert!(offered.contains(&Key::of("electricity_currently_delivered").unwrap()));
        // The last good value stays the one to republish.
        assert_eq!(
            state.value(Key::of("electricity_delivered_1").unwrap()),
            Some("100.001")
        );
    }

    #[test]
    fn a_register_held_back_by_the_guard_raises_identity_doubt_once() {
        let mut state = MeterState::new("x");
        // The meter's telegram is known: a new one in it later is a swap.
        let stats = Snapshot {
            meter_stats: Some(fixtures::meter_stats()),
            ..Snapshot::default()
        };
        state.apply(&stats, NOW);
        let t0 = "2026-11-26T14:02:14+01:00";
        let t1 = "2026-11-26T14:02:19+01:00";
        assert!(!state.take_identity_doubt());
        register_value(&mut state, &reading_with(t0, json!("100.000")), NOW);
        assert!(!state.take_identity_doubt(), "a first value is no doubt");
        register_value(&mut state, &reading_with(t0, json!("100.000")), NOW);
        assert!(!state.take_identity_doubt(), "nor its confirmation");
        for held_back in ["0.000", "99.000", "5000.000"] {
            assert_eq!(
                register_value(&mut state, &reading_with(t1, json!(held_back)), NOW),
                None
            );
            assert!(state.take_identity_doubt(), "{held_back}");
            assert!(!state.take_identity_doubt(), "{held_back}: once");
        }
        // Not the guard: a value that is no number, or none at all.
        for other in [json!("junk"), json!(null)] {
            register_value(&mut state, &reading_with(t1, other.clone()), NOW);
            assert!(!state.take_identity_doubt(), "{other}");
        }
        assert_eq!(
            register_value(&mut state, &reading_with(t1, json!("100.001")), NOW).as_deref(),
            Some("100.001")
        );
        assert!(!state.take_identity_doubt());
        // The same low registers once the telegram names the new meter: no doubt left.
        let mut swapped = reading_with("2026-11-26T14:02:24+01:00", json!("0.010"));
        swapped.meter_stats = Some(fixtures::meter_stats());
        let swapped = fixtures::swapped_meter(swapped);
        assert_eq!(register_value(&mut state, &swapped, NOW), None);
        assert!(!state.take_identity_doubt());
        assert_eq!(
            register_value(&mut state, &swapped, NOW).as_deref(),
            Some("0.010")
        );
        assert!(!state.take_identity_doubt());
    }

    #[test]
    fn old_and_future_readings_are_skipped() {
        let mut state = MeterState::new("x");
        register_value(
            &mut state,
            &reading_with("2026-11-26T14:02:14+01:00", json!("100.000")),
            NOW,
        );
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

    /// An endpoint DSMR-reader turns out not to have (after a downgrade) takes its entities
    /// along; the others stay.
    #[test]
    fn a_forgotten_endpoint_takes_its_entities_along() {
        let mut state = MeterState::new("x");
        state.apply(&fixture_snapshot(), NOW);
        let peak = Key::of("quarter_hour_peak").unwrap();
        let register = Key::of("electricity_delivered_1").unwrap();
        assert!(state.entity_exists(peak));
        state.take_entities_changed();
        state.forget(Endpoint::Peak);
        assert!(state.take_entities_changed());
        assert!(!state.entity_exists(peak));
        assert_eq!(state.value(peak), None);
        assert!(state.entity_exists(register));
        state.forget(Endpoint::Peak);
        assert!(!state.take_entities_changed(), "nothing left to remove");
    }

    /// One reading stamped 50 minutes ahead of the wall clock is held back, and the real
    /// readings after it go out: a single outlier does not hold the meter hostage.
    #[test]
    fn a_reading_stamped_ahead_of_the_clock_does_not_hold_the_meter_hostage() {
        let power = Key::of("electricity_currently_delivered").unwrap();
        let poll = |state: &mut MeterState, at: &str, value: &str, now: OffsetDateTime| {
            let mut reading = fixtures::reading();
            reading.insert("timestamp".into(), json!(at));
            reading.insert("electricity_currently_delivered".into(), json!(value));
            let snapshot = Snapshot {
                reading: Some(reading),
                ..Snapshot::default()
            };
            let offered = state.apply(&snapshot, now);
            offered.contains(&power)
        };
        let mut state = MeterState::new("x");
        assert!(poll(&mut state, "2026-11-26T14:02:14+01:00", "0.404", NOW));
        let later = NOW + time::Duration::seconds(5);
        assert!(!poll(
            &mut state,
            "2026-11-26T14:52:19+01:00",
            "9.999",
            later
        ));
        assert_eq!(state.value(power), Some("0.404"));
        let later = NOW + time::Duration::seconds(10);
        assert!(poll(
            &mut state,
            "2026-11-26T14:02:24+01:00",
            "0.500",
            later
        ));
        assert_eq!(state.value(power), Some("0.500"));
        // A few minutes ahead is a clock that is a little off, not an outlier.
        assert!(poll(
            &mut state,
            "2026-11-26T14:06:24+01:00",
            "0.600",
            later
        ));
        // This host's clock set back by ten minutes: what was published is now ahead of it, and
        // holds nothing back.
        let set_back = NOW - time::Duration::minutes(10);
        assert!(poll(
            &mut state,
            "2026-11-26T13:52:20+01:00",
            "0.700",
            set_back
        ));
    }

    /// Negative power, day totals, gas and phase values cannot be: held back (the last value
    /// stays); a signed value such as today's total cost still goes out.
    #[test]
    fn impossible_negative_values_are_held_back() {
        let mut state = MeterState::new("x");
        state.apply(&fixture_snapshot(), NOW);
        let mut next = fixture_snapshot();
        let reading = next.reading.as_mut().unwrap();
        reading.insert("electricity_currently_delivered".into(), json!("-0.404"));
        reading.insert("phase_currently_returned_l1".into(), json!("-0.100"));
        let today = next.today.as_mut().unwrap();
        today.insert("electricity_merged".into(), json!(-1.5));
        today.insert("gas".into(), json!(-0.2));
        today.insert("total_cost".into(), json!(-0.75));
        let offered = state.apply(&next, NOW);
        for key in [
            "electricity_currently_delivered",
            "phase_currently_returned_l1",
            "electricity_merged",
            "gas_today",
        ] {
            let index = Key::of(key).unwrap();
            assert!(!offered.contains(&index), "{key} offered");
            assert!(
                !state.value(index).unwrap().starts_with('-'),
                "{key} kept its last value"
            );
        }
        let cost = Key::of("total_cost").unwrap();
        assert!(offered.contains(&cost));
        assert_eq!(state.value(cost), Some("-0.75"));
    }

    /// Power, current and voltage beyond what a household connection can show (a misread
    /// telegram, DSMR's largest 99999.999 kW) are held back, the last value stays; the largest
    /// plausible values go out.
    #[test]
    fn implausible_power_current_and_voltage_are_held_back() {
        let mut state = MeterState::new("x");
        state.apply(&fixture_snapshot(), NOW);
        let implausible = [
            ("electricity_currently_delivered", json!("99999.999")),
            ("electricity_currently_returned", json!("100.001")),
            ("phase_currently_delivered_l1", json!("32.001")),
            ("phase_voltage_l2", json!("440.1")),
            ("phase_power_current_l3", json!(129)),
        ];
        let before: Vec<Option<String>> = implausible
            .iter()
            .map(|(key, _)| state.value(Key::of(key).unwrap()).map(str::to_owned))
            .collect();
        let mut next = fixture_snapshot();
        let reading = next.reading.as_mut().unwrap();
        for (field, value) in &implausible {
            reading.insert((*field).into(), value.clone());
        }
        let offered = state.apply(&next, NOW);
        for ((key, _), before) in implausible.iter().zip(before) {
            let index = Key::of(key).unwrap();
            assert!(!offered.contains(&index), "{key} offered");
            assert!(before.is_some(), "{key} has a value in the fixture");
            assert_eq!(
                state.value(index),
                before.as_deref(),
                "{key} kept its last value"
            );
        }
        let mut top = fixture_snapshot();
        let reading = top.reading.as_mut().unwrap();
        for (field, value) in [
            ("electricity_currently_delivered", json!("100.000")),
            ("phase_currently_delivered_l1", json!("32.000")),
            ("phase_voltage_l2", json!("440.0")),
            ("phase_power_current_l3", json!(128)),
        ] {
            reading.insert(field.into(), value);
        }
        let offered = state.apply(&top, NOW);
        for key in [
            "electricity_currently_delivered",
            "phase_currently_delivered_l1",
            "phase_voltage_l2",
            "phase_power_current_l3",
        ] {
            assert!(offered.contains(&Key::of(key).unwrap()), "{key}");
        }
    }

    #[test]
    fn zero_returned_register_creates_no_entity() {
        let mut state = MeterState::new("x");
        let mut snapshot = fixture_snapshot();
        let reading = snapshot.reading.as_mut().unwrap();
        reading.insert("electricity_returned_1".into(), json!("0.000"));
        state.apply(&snapshot, NOW);
        assert!(!state.entity_exists(Key::of("electricity_returned_1").unwrap()));
        assert!(state.entity_exists(Key::of("electricity_returned_2").unwrap()));
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
            let s = i.sensor();
            assert!(
                !s.key.ends_with("_l2") && !s.key.ends_with("_l3"),
                "{}",
                s.key
            );
            assert_ne!(s.device, Device::Gas, "{}", s.key);
        }
        // `today` still says gas: 1.513 but the meter reports no gas register.
        assert!(!state.entity_exists(Key::of("gas_today").unwrap()));
    }

    #[test]
    fn meter_swap_starts_a_new_device_with_its_own_registers() {
        let mut state = MeterState::new("x");
        state.apply(&fixture_snapshot(), NOW);
        state.take_entities_changed();
        let mut swapped = fixtures::swapped_meter(fixture_snapshot());
        let reading = swapped.reading.as_mut().unwrap();
        reading.insert("timestamp".into(), json!("2026-11-26T14:05:00+01:00"));
        reading.insert("electricity_delivered_1".into(), json!("0.010"));
        let topics = Topics::new("b");
        let offered = state.apply(&swapped, NOW + time::Duration::minutes(3));
        assert!(state.take_entities_changed());
        let messages = published(&state, &topics, offered);
        assert!(
            !messages
                .iter()
                .any(|(t, _)| t == "b/reading/electricity_delivered_1"),
            "the new meter's first value waits for a second reading"
        );
        let offered = state.apply(&swapped, NOW + time::Duration::minutes(3));
        assert_eq!(
            state.identity().electricity.as_ref(),
            format!("dsmrbridge_{}", fixtures::NEW_METER)
        );
        let messages = published(&state, &topics, offered);
        assert!(messages.contains(&("b/reading/electricity_delivered_1".into(), "0.010".into())));
    }
}

/// Property tests: whatever DSMR-reader (or something in its place) answers,
/// `MeterState::apply` does not panic, every value offered for publishing is the exact text of a
/// valid field of that poll, and meter registers never read 0, go down or outrun the clock.
#[cfg(test)]
mod fuzz {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;

    use super::*;
    use crate::map::fixtures::arbitrary::{check_published, config, rfc3339, timestamp, value};
    use crate::map::fixtures::{NOW, endpoint_object as fixture_object};

    /// The fixture telegram with its equipment ids replaced by anything printable (topic
    /// wildcards, slashes, spaces, very long ids), or something that is no telegram at all.
    fn telegram() -> impl Strategy<Value = Value> {
        let base = fixture_object(Endpoint::MeterStats)["latest_telegram"]
            .as_str()
            .unwrap()
            .to_owned();
        prop_oneof![
            ("[ -~]{0,120}", "[0-9A-Fa-f#+/ ]{0,100}").prop_map(move |(e, g)| {
                let t = base
                    .replace("12345678901234567890123456789000", &e)
                    .replace("12345678901234567890123456789001", &g);
                Value::String(t)
            }),
            any::<String>().prop_map(Value::String),
            value(),
        ]
    }

    /// Field names an endpoint's values are read from, plus the ones `apply` reads itself.
    fn fields_of(endpoint: Endpoint) -> Vec<String> {
        let mut fields: Vec<String> = SENSORS
            .iter()
            .filter(|s| s.endpoint == endpoint)
            .map(|s| s.field.to_owned())
            .collect();
        fields.extend(
            [
                "timestamp",
                "extra_device_timestamp",
                "latest_telegram",
                "version",
                "id",
            ]
            .map(str::to_owned),
        );
        fields
    }

    /// An endpoint's answer: the captured one with some fields replaced by anything, or an
    /// object made of the endpoint's field names (and others) set to anything.
    fn endpoint_object(endpoint: Endpoint) -> impl Strategy<Value = Object> {
        let base = fixture_object(endpoint);
        let field = prop_oneof![
            4 => prop::sample::select(fields_of(endpoint)),
            1 => ".{0,16}",
        ];
        let changes = prop::collection::vec((field, value()), 0..8);
        let telegram = prop::option::weighted(0.3, telegram());
        (any::<bool>(), changes, telegram).prop_map(move |(keep_fixture, changes, telegram)| {
            let mut object = if keep_fixture {
                base.clone()
            } else {
                Object::new()
            };
            object.extend(changes);
            if let Some(t) = telegram {
                object.insert("latest_telegram".into(), t);
            }
            object
        })
    }

    fn snapshot() -> impl Strategy<Value = Snapshot> {
        let part = |e| prop::option::weighted(0.8, endpoint_object(e));
        (
            part(Endpoint::MeterStats),
            part(Endpoint::Reading),
            part(Endpoint::Today),
            part(Endpoint::Peak),
            part(Endpoint::Version),
            part(Endpoint::Monitoring),
        )
            .prop_map(|(meter_stats, reading, today, peak, version, monitoring)| {
                Snapshot {
                    meter_stats,
                    reading,
                    today,
                    peak,
                    version,
                    monitoring,
                }
            })
    }

    fn object_of(snapshot: &Snapshot, endpoint: Endpoint) -> Option<&Object> {
        match endpoint {
            Endpoint::Reading => snapshot.reading.as_ref(),
            Endpoint::MeterStats => snapshot.meter_stats.as_ref(),
            Endpoint::Today => snapshot.today.as_ref(),
            Endpoint::Peak => snapshot.peak.as_ref(),
            Endpoint::Version => snapshot.version.as_ref(),
            Endpoint::Monitoring => snapshot.monitoring.as_ref(),
            Endpoint::Health | Endpoint::Telegram => None,
        }
    }

    /// Every offered index holds the valid text of its own field in this poll's answer from
    /// its own endpoint; a reading only counts with a valid timestamp at most `MAX_FUTURE` ahead.
    fn check_offered(
        state: &MeterState,
        snapshot: &Snapshot,
        offered: &[Key],
        now: OffsetDateTime,
    ) -> Result<(), TestCaseError> {
        for &index in offered {
            let sensor = index.sensor();
            let telegram = match (sensor.endpoint, &snapshot.meter_stats) {
                (Endpoint::Telegram, Some(stats)) => match stats.get("latest_telegram") {
                    Some(Value::String(t)) => Some(telegram_fields(t, state.identity()).0),
                    _ => None,
                },
                _ => None,
            };
            let object = telegram.as_ref().or(object_of(snapshot, sensor.endpoint));
            prop_assert!(
                object.is_some(),
                "{} offered without its endpoint",
                sensor.key
            );
            let raw = object.and_then(|o| o.get(sensor.field));
            prop_assert!(raw.is_some(), "{} offered without its field", sensor.key);
            let text = state.value(index);
            prop_assert!(text.is_some(), "{} offered without a value", sensor.key);
            check_published(sensor.kind, raw.unwrap(), text.unwrap())?;
            if sensor.endpoint == Endpoint::Reading {
                let stamped = snapshot
                    .reading
                    .as_ref()
                    .and_then(|r| match r.get("timestamp") {
                        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339).ok(),
                        _ => None,
                    });
                prop_assert!(
                    stamped.is_some_and(|at| at <= now + MAX_FUTURE),
                    "{} offered from a reading without a valid, current timestamp",
                    sensor.key
                );
            }
        }
        Ok(())
    }

    /// Device ids end up in discovery topics: only `[A-Za-z0-9_-]`, never a wildcard or `/`.
    fn check_identity(state: &MeterState) -> Result<(), TestCaseError> {
        let id = state.identity();
        for device in [&id.electricity, &id.gas, &id.reader] {
            prop_assert!(device.starts_with("dsmrbridge_"), "{device}");
            prop_assert!(
                device
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "device id {device:?}"
            );
        }
        if let Some(version) = state.reader_version() {
            check_published(Kind::Text, &Value::String(version.to_owned()), version)?;
        }
        Ok(())
    }

    /// A reading near `now` whose registers move by plausible steps, big jumps or junk, with a
    /// gas timestamp that lags up to two hours behind or is anything at all.
    fn poll_near(now_offset: i64) -> impl Strategy<Value = (i64, Snapshot)> {
        let register = prop_oneof![
            6 => (-20_000i64..400_000).prop_map(|milli| json!(format!("{:.3}", 40_000.0 + milli as f64 / 1000.0))),
            1 => (0i64..2_000_000_000).prop_map(|milli| json!(format!("{:.3}", milli as f64 / 1000.0))),
            1 => value(),
        ];
        let registers = prop::collection::vec(register, 5);
        let gas_lag = prop_oneof![
            3 => (0i64..7200).prop_map(Some),
            1 => Just(None),
        ];
        (
            0i64..900,
            0i64..120,
            registers,
            gas_lag,
            timestamp(),
            endpoint_object(Endpoint::Reading),
        )
            .prop_map(
                move |(advance, reading_lag, registers, gas_lag, any_gas_at, mut reading)| {
                    let now = NOW + time::Duration::seconds(now_offset + advance);
                    let at = now - time::Duration::seconds(reading_lag);
                    reading.insert("timestamp".into(), json!(rfc3339(at)));
                    let gas_at = match gas_lag {
                        Some(lag) => rfc3339(at - time::Duration::seconds(lag)),
                        None => any_gas_at,
                    };
                    reading.insert("extra_device_timestamp".into(), json!(gas_at));
                    for (field, value) in [
                        "electricity_delivered_1",
                        "electricity_delivered_2",
                        "electricity_returned_1",
                        "electricity_returned_2",
                        "extra_device_delivered",
                    ]
                    .into_iter()
                    .zip(registers)
                    {
                        reading.insert(field.into(), value);
                    }
                    let snapshot = Snapshot {
                        meter_stats: Some(fixture_object(Endpoint::MeterStats)),
                        reading: Some(reading),
                        ..Snapshot::default()
                    };
                    (advance, snapshot)
                },
            )
    }

    /// The case the register property found: a gas timestamp from a wrong meter clock (year 0
    /// after a battery swap, or far ahead) used to open the jump check for the next value.
    #[test]
    fn a_wrong_gas_clock_does_not_open_the_jump_check() {
        let gas = Key::of("gas_delivered").unwrap();
        for wrong in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            let mut state = MeterState::new("x");
            let mut reading = fixture_object(Endpoint::Reading);
            let mut poll = |at: &str, gas_at: &str, value: &str, state: &mut MeterState| {
                reading.insert("timestamp".into(), json!(at));
                reading.insert("extra_device_timestamp".into(), json!(gas_at));
                reading.insert("extra_device_delivered".into(), json!(value));
                let snapshot = Snapshot {
                    reading: Some(reading.clone()),
                    ..Snapshot::default()
                };
                state.apply(&snapshot, NOW + time::Duration::minutes(10));
                state.value(gas).map(str::to_owned)
            };
            // Twice: a first value waits for a second reading.
            poll(
                "2026-11-26T14:00:05+01:00",
                "2026-11-26T14:00:00+01:00",
                "11268.833",
                &mut state,
            );
            let ok = poll(
                "2026-11-26T14:00:10+01:00",
                "2026-11-26T14:00:00+01:00",
                "11268.833",
                &mut state,
            );
            assert_eq!(ok.as_deref(), Some("11268.833"));
            poll("2026-11-26T14:00:20+01:00", wrong, "11268.834", &mut state);
            let jump = poll(
                "2026-11-26T14:05:00+01:00",
                "2026-11-26T14:05:00+01:00",
                "99999.000",
                &mut state,
            );
            assert_ne!(jump.as_deref(), Some("99999.000"), "after {wrong}");
        }
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn apply_publishes_only_valid_fields_of_the_poll(
            polls in prop::collection::vec(snapshot(), 1..4),
        ) {
            let mut state = MeterState::new("fuzz");
            for snapshot in &polls {
                let offered = state.apply(snapshot, NOW);
                check_offered(&state, snapshot, &offered, NOW)?;
                check_identity(&state)?;
                // Nothing outside the table, and each entry once.
                let mut seen = offered.clone();
                seen.sort_unstable();
                seen.dedup();
                prop_assert_eq!(seen.len(), offered.len());
            }
        }

        #[test]
        fn registers_never_read_zero_go_down_or_outrun_the_clock(
            first in poll_near(0),
            rest in prop::collection::vec(poll_near(0), 1..10),
        ) {
            let mut state = MeterState::new("fuzz");
            // (value, wall clock) of the last publish, per register and device.
            let mut last: HashMap<(Arc<str>, Key), (f64, OffsetDateTime)> = HashMap::new();
            let mut now = NOW;
            for (advance, snapshot) in std::iter::once(first).chain(rest) {
                now += time::Duration::seconds(advance);
                let offered = state.apply(&snapshot, now);
                check_offered(&state, &snapshot, &offered, now)?;
                for index in offered {
                    let sensor = index.sensor();
                    let Some(max_per_hour) = sensor.register_max_per_hour else { continue };
                    let value: f64 = state.value(index).unwrap().parse().unwrap();
                    prop_assert!(value > 0.0, "{} published {value}", sensor.key);
                    let device = state.identity().id_of(sensor.device).clone();
                    if let Some(&(previous, then)) = last.get(&(device.clone(), index)) {
                        prop_assert!(value >= previous, "{} went down: {previous} → {value}", sensor.key);
                        // Readings are at most 2 minutes old, the gas register at most 2 hours,
                        // and a few minutes ahead are tolerated: 4 hours of slack is ample.
                        let hours = (now - then).as_seconds_f64() / 3600.0 + 4.0;
                        prop_assert!(
                            value - previous <= max_per_hour * hours,
                            "{} jumped {previous} → {value} in {:.2} h of wall clock",
                            sensor.key,
                            hours - 4.0
                        );
                    }
                    last.insert((device, index), (value, now));
                }
            }
        }
    }
}
