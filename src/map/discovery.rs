//! Map stage, Home Assistant discovery: one device-based config per device
//! (`<prefix>/device/<id>/config`), and the bookkeeping that removes entities and devices the
//! bridge no longer produces, also those left behind by an earlier run.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tracing::info;

use super::catalog::{Device, Key, Platform, Reset, SENSORS, Sensor, Tariff, TariffConvention};
use super::{MeterState, Topics};
use crate::model::Message;

/// Device ids this bridge creates start with this; retained configs without it are never touched.
/// The `last_reset` of a day total: Home Assistant's local midnight of the day the value
/// arrives. Core renders it on every state message (`mqtt/sensor.py`, `_state_message_received`
/// → `_update_last_reset`; `today_at()` is `dt_util.start_of_local_day()`, `helpers/template.py`,
/// in 2026.2 `helpers/template/extensions/datetime.py`), and its statistics
/// compiler starts a new cycle, counted from 0 so the day's first value counts whole, whenever
/// it changes (`sensor/recorder.py`, `_compile_statistics`; both in 2025.4.4 and 2026.2.3).
/// Yesterday's last value arriving a few seconds after midnight (a poll in flight) is counted
/// into the new day, and today's first value, within the minute and the same hour, takes it
/// back out: the hour's and the day's sums come out right.
const DAILY_RESET: &str = "{{ today_at().isoformat() }}";

const ID_PREFIX: &str = "dsmrbridge_";

/// The order devices are announced in: the meters name DSMR-reader's device as `via_device`,
/// and Home Assistant warns about a `via_device` it does not know yet, so the parent goes
/// first (dedup keeps the order messages are offered in). DSMR-reader's device always has an
/// entity (`reachable`), so it is in every round that announces a meter. The M-Bus devices
/// name the electricity meter, so they follow it. Removals of devices no longer produced come
/// after all announcements.
pub(crate) const ANNOUNCE_ORDER: [Device; 7] = [
    Device::Reader,
    Device::Electricity,
    Device::Gas,
    Device::MBus(1),
    Device::MBus(2),
    Device::MBus(3),
    Device::MBus(4),
];

#[derive(Serialize)]
struct DeviceConfig<'a> {
    device: DeviceInfo<'a>,
    origin: Origin,
    availability: Vec<Availability<'a>>,
    availability_mode: &'static str,
    qos: u8,
    components: BTreeMap<&'a str, Component<'a>>,
}

#[derive(Serialize)]
struct DeviceInfo<'a> {
    identifiers: [&'a str; 1],
    name: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manufacturer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sw_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    configuration_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    via_device: Option<&'a str>,
}

#[derive(Serialize)]
struct Origin {
    name: &'static str,
    sw_version: &'static str,
    support_url: &'static str,
}

const ORIGIN: Origin = Origin {
    name: "dsmr-bridge",
    sw_version: env!("CARGO_PKG_VERSION"),
    support_url: env!("CARGO_PKG_REPOSITORY"),
};

#[derive(Serialize)]
struct Availability<'a> {
    topic: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Component<'a> {
    Entity(Box<Entity<'a>>),
    /// Home Assistant removes one component of a device when its config shrinks to the platform.
    Removed {
        platform: &'static str,
    },
}

#[derive(Serialize)]
struct Entity<'a> {
    platform: &'static str,
    name: Cow<'static, str>,
    unique_id: String,
    default_entity_id: String,
    state_topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_of_measurement: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reset_value_template: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suggested_display_precision: Option<u8>,
    #[serde(skip_serializing_if = "is_true")]
    enabled_by_default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_category: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_template: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'static [&'static str; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_on: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_off: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    availability: Option<[Availability<'a>; 1]>,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Builds discovery messages and remembers which devices and components Home Assistant knows.
#[derive(Debug)]
pub struct Discovery {
    prefix: String,
    qos: u8,
    configuration_url: Option<String>,
    /// Components per device id that Home Assistant has (or had, for removal stubs).
    known: BTreeMap<Arc<str>, BTreeSet<String>>,
    /// Whether the wait for the meter's identity was logged.
    told_waiting: bool,
}

impl Discovery {
    pub fn new(prefix: &str, qos: u8, configuration_url: Option<String>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            qos,
            configuration_url,
            known: BTreeMap::new(),
            told_waiting: false,
        }
    }

    /// The topic filter for the startup scan of retained configs.
    pub(crate) fn scan_filter(&self) -> String {
        format!("{}/device/+/config", self.prefix)
    }

    fn topic(&self, device_id: &str) -> Arc<str> {
        Arc::from(format!("{}/device/{device_id}/config", self.prefix))
    }

    /// Takes note of a retained config found on the broker at startup, if this bridge (same
    /// base topic) made it, so that what it no longer produces can be removed.
    pub(crate) fn observe_retained(
        &mut self,
        topic: &str,
        payload: &[u8],
        topics: &Topics,
    ) -> bool {
        let Some(device_id) = topic
            .strip_prefix(&self.prefix)
            .and_then(|t| t.strip_prefix("/device/"))
            .and_then(|t| t.strip_suffix("/config"))
        else {
            return false;
        };
        if !device_id.starts_with(ID_PREFIX) || device_id.contains('/') {
            return false;
        }
        let Ok(config) = serde_json::from_slice::<Value>(payload) else {
            return false;
        };
        let availability = config.get("availability").or_else(|| config.get("avty"));
        let ours = availability.and_then(Value::as_array).is_some_and(|list| {
            list.iter().any(|a| {
                a.get("topic")
                    .or_else(|| a.get("t"))
                    .and_then(Value::as_str)
                    == Some(&topics.bridge_status)
            })
        });
        if !ours {
            return false;
        }
        let components = config
            .get("components")
            .or_else(|| config.get("cmps"))
            .and_then(Value::as_object)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        self.known.insert(Arc::from(device_id), components);
        true
    }

    /// The device id of the retained config (found at startup) that holds `device`'s entities,
    /// when exactly one does.
    pub(crate) fn retained_device_of(&self, device: Device) -> Option<Arc<str>> {
        let mut owners = self.known.iter().filter(|(_, components)| {
            components.iter().any(|key| {
                SENSORS
                    .iter()
                    .any(|s| s.key == key && s.device == device && s.announce)
            })
        });
        match (owners.next(), owners.next()) {
            (Some((id, _)), None) => Some(id.clone()),
            _ => None,
        }
    }

    /// Discovery messages for the current state, in `ANNOUNCE_ORDER`: a config per device that
    /// has entities (with removal stubs for components it had before), then an empty config
    /// for each device that no longer has any.
    ///
    /// Until a telegram names the meters, devices the broker retains from an earlier run may be
    /// those very meters: then the meter devices are neither announced under the fallback ids
    /// nor removed, since Home Assistant would delete the real ones with the user's entity ids
    /// and areas. DSMR-reader's device goes out as usual.
    pub fn messages(&mut self, state: &MeterState, topics: &Topics) -> Vec<Message> {
        let identity = state.identity();
        let mut messages = Vec::new();
        let mut desired: BTreeSet<Arc<str>> = BTreeSet::new();
        let ours: Vec<&Arc<str>> = ANNOUNCE_ORDER.iter().map(|&d| identity.id_of(d)).collect();
        let waiting = !state.identity_known() && self.known.keys().any(|id| !ours.contains(&id));
        if waiting && !std::mem::replace(&mut self.told_waiting, true) {
            info!(
                "Meter statistics have no telegram yet; keeping the meter devices the broker holds until it names the meter"
            );
        }
        for device in ANNOUNCE_ORDER {
            if waiting && device != Device::Reader {
                continue;
            }
            let indices: Vec<Key> = Key::all()
                .filter(|&i| {
                    i.sensor().device == device && i.sensor().announce && state.entity_exists(i)
                })
                .collect();
            if indices.is_empty() {
                continue;
            }
            let device_id = identity.id_of(device).clone();
            let previous = self.known.remove(&device_id).unwrap_or_default();
            let payload = self.device_config(device, &indices, state, topics, &previous);
            let mut now_known: BTreeSet<String> = previous;
            now_known.extend(indices.iter().map(|&i| i.sensor().key.to_owned()));
            self.known.insert(device_id.clone(), now_known);
            messages.push(Message::new(self.topic(&device_id), payload));
            desired.insert(device_id);
        }
        let gone: Vec<Arc<str>> = self
            .known
            .keys()
            .filter(|id| !waiting && !desired.contains(*id))
            .cloned()
            .collect();
        for device_id in gone {
            self.known.remove(&device_id);
            messages.push(Message::new(self.topic(&device_id), ""));
        }
        messages
    }

    fn device_config(
        &self,
        device: Device,
        indices: &[Key],
        state: &MeterState,
        topics: &Topics,
        previous: &BTreeSet<String>,
    ) -> String {
        let identity = state.identity();
        let device_id = identity.id_of(device);
        let info = match device {
            Device::Electricity => DeviceInfo {
                identifiers: [device_id],
                name: Cow::Borrowed("Electricity meter"),
                manufacturer: identity
                    .manufacturer()
                    .or(identity.manufacturer_code.as_deref()),
                model: identity.dsmr_model(),
                serial_number: identity.electricity_serial.as_deref(),
                sw_version: None,
                configuration_url: None,
                via_device: Some(&identity.reader),
            },
            Device::Gas => DeviceInfo {
                identifiers: [device_id],
                name: Cow::Borrowed("Gas meter"),
                manufacturer: None,
                model: None,
                serial_number: identity.gas_serial.as_deref(),
                sw_version: None,
                configuration_url: None,
                via_device: Some(&identity.reader),
            },
            Device::Reader => DeviceInfo {
                identifiers: [device_id],
                name: Cow::Borrowed("DSMR-reader"),
                manufacturer: Some("DSMR-reader"),
                model: Some("DSMR-reader".to_owned()),
                serial_number: None,
                sw_version: state.reader_version(),
                configuration_url: self.configuration_url.as_deref(),
                via_device: None,
            },
            Device::MBus(n) => {
                let mbus = &identity.mbus[usize::from(n.clamp(1, 4) - 1)];
                DeviceInfo {
                    identifiers: [device_id],
                    name: Cow::Borrowed(mbus.kind.map_or("M-Bus meter", |k| k.device_name())),
                    manufacturer: None,
                    model: Some(format!("M-Bus channel {n}")),
                    serial_number: mbus.serial.as_deref(),
                    sw_version: None,
                    configuration_url: None,
                    via_device: Some(&identity.electricity),
                }
            }
        };
        let mut components: BTreeMap<&str, Component> = indices
            .iter()
            .map(|&i| {
                (
                    i.sensor().key,
                    Component::Entity(Box::new(entity(
                        i.sensor(),
                        device_id,
                        identity.tariffs,
                        topics.state(i),
                        topics,
                    ))),
                )
            })
            .collect();
        for key in previous {
            components
                .entry(key.as_str())
                .or_insert(Component::Removed {
                    platform: platform_of(key),
                });
        }
        let config = DeviceConfig {
            device: info,
            origin: ORIGIN,
            availability: vec![
                Availability {
                    topic: &topics.bridge_status,
                },
                Availability {
                    topic: &topics.reader_status,
                },
            ],
            availability_mode: "all",
            qos: self.qos,
            components,
        };
        serde_json::to_string(&config).expect("discovery config serializes")
    }
}

/// Keeps what Home Assistant accepts in ids and topics: `[A-Za-z0-9_-]`.
pub(crate) fn sanitize_id(text: &str) -> String {
    super::telegram::sanitize(text)
}

fn platform_of(key: &str) -> &'static str {
    SENSORS
        .iter()
        .find(|s| s.key == key)
        .map_or("sensor", |s| s.platform.as_str())
}

fn entity<'a>(
    sensor: &'static Sensor,
    device_id: &str,
    tariffs: TariffConvention,
    state_topic: &'a str,
    topics: &'a Topics,
) -> Entity<'a> {
    let binary = sensor.platform == Platform::BinarySensor;
    let active_tariff = sensor.tariff == Some(Tariff::Active);
    Entity {
        platform: sensor.platform.as_str(),
        name: sensor.name_for(tariffs),
        unique_id: format!("{device_id}_{}", sensor.key),
        default_entity_id: format!("{}.dsmr_{}", sensor.platform.as_str(), sensor.key),
        state_topic,
        unit_of_measurement: sensor.unit,
        device_class: sensor.device_class,
        state_class: sensor.state_class,
        last_reset_value_template: sensor.resets.map(|Reset::Daily| DAILY_RESET),
        suggested_display_precision: sensor.precision,
        enabled_by_default: sensor.enabled,
        entity_category: sensor.diagnostic.then_some("diagnostic"),
        value_template: active_tariff.then(|| tariffs.value_template()),
        options: active_tariff.then(|| tariffs.labels()),
        payload_on: binary.then_some("online"),
        payload_off: binary.then_some("offline"),
        availability: sensor.bridge_availability_only.then(|| {
            [Availability {
                topic: &topics.bridge_status,
            }]
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::catalog;
    use crate::map::fixtures::{self, NOW};
    use crate::model::Snapshot;

    /// The captured meter's reading, meter statistics and version, as the first poll has them.
    fn fixture_state() -> MeterState {
        let mut state = MeterState::new("dsmr-bridge");
        let snapshot = Snapshot {
            reading: Some(fixtures::reading()),
            meter_stats: Some(fixtures::meter_stats()),
            version: Some(fixtures::version()),
            ..Snapshot::default()
        };
        state.apply(&snapshot, NOW);
        state.set_reachable(true);
        state
    }

    fn parse(messages: &[Message], device_id: &str) -> Value {
        let m = messages
            .iter()
            .find(|m| m.topic.as_ref() == format!("homeassistant/device/{device_id}/config"))
            .unwrap_or_else(|| panic!("no config for {device_id}"));
        serde_json::from_str(&m.payload).unwrap()
    }

    #[test]
    fn fixture_meter_gets_three_devices() {
        let state = fixture_state();
        let topics = Topics::new("dsmr-bridge");
        let mut discovery =
            Discovery::new("homeassistant", 1, Some("http://dsmr.local:7777/".into()));
        let messages = discovery.messages(&state, &topics);
        assert_eq!(messages.len(), 3);
        let electricity = parse(&messages, "dsmrbridge_12345678901234567890123456789000");
        assert_eq!(electricity["device"]["name"], "Electricity meter");
        assert_eq!(electricity["device"]["manufacturer"], "Xemex");
        assert_eq!(electricity["device"]["model"], "DSMR 5.0");
        assert_eq!(
            electricity["device"]["via_device"],
            "dsmrbridge_dsmr-bridge_reader"
        );
        assert_eq!(electricity["origin"]["name"], "dsmr-bridge");
        assert_eq!(electricity["availability_mode"], "all");
        let delivered = &electricity["components"]["electricity_delivered_1"];
        assert_eq!(delivered["platform"], "sensor");
        assert_eq!(delivered["unit_of_measurement"], "kWh");
        assert_eq!(delivered["device_class"], "energy");
        assert_eq!(delivered["state_class"], "total_increasing");
        assert_eq!(
            delivered["state_topic"],
            "dsmr-bridge/reading/electricity_delivered_1"
        );
        assert_eq!(
            delivered["default_entity_id"],
            "sensor.dsmr_electricity_delivered_1"
        );
        assert_eq!(
            delivered["unique_id"],
            "dsmrbridge_12345678901234567890123456789000_electricity_delivered_1"
        );
        assert!(delivered.get("enabled_by_default").is_none());
        assert!(delivered.get("object_id").is_none());
        assert_eq!(
            electricity["components"]["phase_voltage_l2"]["enabled_by_default"],
            false
        );
        assert_eq!(
            electricity["components"]["phase_voltage_l2"]["entity_category"],
            "diagnostic"
        );
        let gas = parse(&messages, "dsmrbridge_12345678901234567890123456789001");
        assert_eq!(
            gas["components"]["gas_delivered"]["unit_of_measurement"],
            "m³"
        );
        assert_eq!(gas["components"]["gas_delivered"]["device_class"], "gas");
        let reader = parse(&messages, "dsmrbridge_dsmr-bridge_reader");
        assert_eq!(reader["device"]["sw_version"], "5.11.0");
        assert_eq!(
            reader["device"]["configuration_url"],
            "http://dsmr.local:7777/"
        );
        let reachable = &reader["components"]["reachable"];
        assert_eq!(reachable["platform"], "binary_sensor");
        assert_eq!(reachable["availability"][0]["topic"], "dsmr-bridge/status");
    }

    /// After a restart DSMR-reader may have no telegram yet: the meter devices the broker
    /// retains are kept (not emptied, no placeholder announced) until the telegram names them.
    #[test]
    fn retained_meter_devices_are_kept_until_the_telegram_names_the_meter() {
        let topics = Topics::new("dsmr-bridge");
        let mut discovery = Discovery::new("homeassistant", 1, None);
        let retained = r#"{"availability":[{"topic":"dsmr-bridge/status"}],"components":{"electricity_delivered_1":{}}}"#;
        let meter = "homeassistant/device/dsmrbridge_12345678901234567890123456789000/config";
        assert!(discovery.observe_retained(meter, retained.as_bytes(), &topics));
        let mut state = MeterState::new("dsmr-bridge");
        let mut stats = fixtures::meter_stats();
        stats.insert("latest_telegram".into(), Value::Null);
        let mut first = fixtures::snapshot();
        first.meter_stats = Some(stats);
        state.apply(&first, NOW);
        assert!(!state.identity_known());
        let messages = discovery.messages(&state, &topics);
        let topics_sent: Vec<&str> = messages.iter().map(|m| &*m.topic).collect();
        assert_eq!(
            topics_sent,
            ["homeassistant/device/dsmrbridge_dsmr-bridge_reader/config"]
        );

        state.take_entities_changed();
        state.apply(&fixtures::snapshot(), NOW);
        assert!(state.identity_known());
        assert!(state.take_entities_changed());
        let messages = discovery.messages(&state, &topics);
        assert_eq!(messages.len(), 3);
        assert!(messages.iter().all(|m| !m.payload.is_empty()));
        assert!(messages.iter().any(|m| &*m.topic == meter));
    }

    #[test]
    fn leftovers_from_an_earlier_run_are_removed() {
        let state = fixture_state();
        let topics = Topics::new("dsmr-bridge");
        let mut discovery = Discovery::new("homeassistant", 1, None);
        let old = r#"{"availability":[{"topic":"dsmr-bridge/status"}],"components":{"electricity_delivered_1":{},"retired_sensor":{}}}"#;
        assert!(discovery.observe_retained(
            "homeassistant/device/dsmrbridge_12345678901234567890123456789000/config",
            old.as_bytes(),
            &topics
        ));
        assert!(discovery.observe_retained(
            "homeassistant/device/dsmrbridge_oldmeter/config",
            old.as_bytes(),
            &topics
        ));
        // Another bridge's config (different base topic) and foreign devices stay untouched.
        let other = r#"{"availability":[{"topic":"other/status"}],"components":{}}"#;
        assert!(!discovery.observe_retained(
            "homeassistant/device/dsmrbridge_x/config",
            other.as_bytes(),
            &topics
        ));
        assert!(!discovery.observe_retained(
            "homeassistant/device/zigbee_x/config",
            old.as_bytes(),
            &topics
        ));

        let messages = discovery.messages(&state, &topics);
        let electricity = parse(&messages, "dsmrbridge_12345678901234567890123456789000");
        assert_eq!(
            electricity["components"]["retired_sensor"],
            serde_json::json!({"platform": "sensor"})
        );
        let removed = messages
            .iter()
            .find(|m| m.topic.as_ref() == "homeassistant/device/dsmrbridge_oldmeter/config")
            .unwrap();
        assert_eq!(&*removed.payload, "");
        // Removal happens once; the stub stays so the entity cannot come back.
        let again = discovery.messages(&state, &topics);
        assert_eq!(again.len(), 3);
        assert_eq!(
            parse(&again, "dsmrbridge_12345678901234567890123456789000")["components"]["retired_sensor"],
            serde_json::json!({"platform": "sensor"})
        );
    }

    #[test]
    fn payloads_are_stable_so_dedup_can_suppress_them() {
        let state = fixture_state();
        let topics = Topics::new("b");
        let mut discovery = Discovery::new("homeassistant", 1, None);
        assert_eq!(
            discovery.messages(&state, &topics),
            discovery.messages(&state, &topics)
        );
        assert!(catalog::SENSORS.iter().any(|s| !s.announce));
    }

    /// What Home Assistant knows after `messages`: each config's `via_device` must name a
    /// device it already knows (HA warns otherwise); an empty config removes the device.
    fn announce_to(known: &mut BTreeSet<String>, messages: &[Message]) {
        for m in messages {
            let id = m
                .topic
                .strip_prefix("homeassistant/device/")
                .and_then(|t| t.strip_suffix("/config"))
                .unwrap();
            if m.payload.is_empty() {
                known.remove(id);
                continue;
            }
            let config: Value = serde_json::from_str(&m.payload).unwrap();
            if let Some(parent) = config["device"]["via_device"].as_str() {
                assert!(known.contains(parent), "{id} announced before {parent}");
            }
            known.insert(id.to_owned());
        }
    }

    fn device_order(messages: &[Message]) -> Vec<(&str, bool)> {
        messages
            .iter()
            .map(|m| {
                let id = m.topic.split('/').nth(2).unwrap();
                (id, m.payload.is_empty())
            })
            .collect()
    }

    const READER: &str = "dsmrbridge_dsmr-bridge_reader";
    const ELECTRICITY: &str = "dsmrbridge_12345678901234567890123456789000";
    const GAS: &str = "dsmrbridge_12345678901234567890123456789001";

    #[test]
    fn the_parent_device_is_announced_first() {
        let topics = Topics::new("dsmr-bridge");
        let mut discovery = Discovery::new("homeassistant", 1, None);
        let mut ha = BTreeSet::new();
        // A first poll with only meter statistics and a reading (version and monitoring
        // failed), before the source reported DSMR-reader reachable: its device still leads.
        let mut state = MeterState::new("dsmr-bridge");
        let first = Snapshot {
            reading: Some(fixtures::reading()),
            meter_stats: Some(fixtures::meter_stats()),
            ..Snapshot::default()
        };
        state.apply(&first, NOW);
        assert!(state.take_entities_changed());
        let messages = discovery.messages(&state, &topics);
        assert_eq!(
            device_order(&messages),
            [(READER, false), (ELECTRICITY, false), (GAS, false)]
        );
        announce_to(&mut ha, &messages);

        // The entity set grows (today's totals, the peak, the version): same order.
        state.apply(&fixtures::snapshot(), NOW);
        state.set_reachable(true);
        assert!(state.take_entities_changed());
        let messages = discovery.messages(&state, &topics);
        assert_eq!(
            device_order(&messages),
            [(READER, false), (ELECTRICITY, false), (GAS, false)]
        );
        announce_to(&mut ha, &messages);
    }

    #[test]
    fn after_a_meter_swap_the_parent_leads_and_the_old_meter_goes_last() {
        let topics = Topics::new("dsmr-bridge");
        let mut discovery = Discovery::new("homeassistant", 1, None);
        let mut ha = BTreeSet::new();
        let mut state = MeterState::new("dsmr-bridge");
        state.apply(&fixtures::snapshot(), NOW);
        announce_to(&mut ha, &discovery.messages(&state, &topics));

        state.apply(&fixtures::swapped_meter(fixtures::snapshot()), NOW);
        assert!(state.take_entities_changed());
        let messages = discovery.messages(&state, &topics);
        assert_eq!(
            device_order(&messages),
            [
                (READER, false),
                (&*format!("dsmrbridge_{}", fixtures::NEW_METER), false),
                (GAS, false),
                (ELECTRICITY, true),
            ]
        );
        announce_to(&mut ha, &messages);
        assert!(!ha.contains(ELECTRICITY));
    }

    /// The electricity meter's components as announced for `snapshot`.
    fn electricity_components(snapshot: &Snapshot) -> serde_json::Map<String, Value> {
        let mut state = MeterState::new("dsmr-bridge");
        state.apply(snapshot, NOW);
        let topics = Topics::new("dsmr-bridge");
        let messages = Discovery::new("homeassistant", 1, None).messages(&state, &topics);
        let id = state.identity().electricity.clone();
        parse(&messages, &id)["components"]
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn tariffs_are_labelled_by_the_meters_country() {
        let dutch = electricity_components(&fixtures::snapshot());
        let belgian = electricity_components(&fixtures::belgian(fixtures::snapshot()));
        let tariff = |c: &serde_json::Map<String, Value>| {
            (
                c["electricity_tariff"]["options"].clone(),
                c["electricity_tariff"]["value_template"].clone(),
            )
        };
        assert_eq!(
            tariff(&dutch),
            (
                serde_json::json!(["low", "normal"]),
                serde_json::json!("{{ 'low' if value == '1' else 'normal' }}")
            )
        );
        assert_eq!(
            tariff(&belgian),
            (
                serde_json::json!(["day", "night"]),
                serde_json::json!("{{ 'day' if value == '1' else 'night' }}")
            )
        );
        let names = |c: &serde_json::Map<String, Value>| {
            [
                "electricity_delivered_1",
                "electricity_delivered_2",
                "electricity_returned_1",
            ]
            .map(|k| c[k]["name"].as_str().unwrap().to_owned())
        };
        assert_eq!(
            names(&dutch),
            [
                "Energy consumption (tariff 1, low)",
                "Energy consumption (tariff 2, normal)",
                "Energy production (tariff 1, low)"
            ]
        );
        assert_eq!(
            names(&belgian),
            [
                "Energy consumption (tariff 1, day)",
                "Energy consumption (tariff 2, night)",
                "Energy production (tariff 1, day)"
            ]
        );
        // Only names and labels differ: units, classes, state classes, topics stay.
        let without_labels = |c: &serde_json::Map<String, Value>, key: &str| {
            let mut component = c[key].as_object().cloned().unwrap();
            for field in ["name", "options", "value_template", "unique_id"] {
                component.remove(field);
            }
            component
        };
        for key in dutch.keys().filter(|k| belgian.contains_key(*k)) {
            assert_eq!(
                without_labels(&dutch, key),
                without_labels(&belgian, key),
                "{key}"
            );
        }
    }

    #[test]
    fn a_meters_tariff_options_stay_the_same() {
        let topics = Topics::new("dsmr-bridge");
        let mut discovery = Discovery::new("homeassistant", 1, None);
        let mut state = MeterState::new("dsmr-bridge");
        let options = |discovery: &mut Discovery, state: &MeterState| {
            let messages = discovery.messages(state, &topics);
            let id = state.identity().electricity.clone();
            parse(&messages, &id)["components"]["electricity_tariff"]["options"].clone()
        };
        let mut polls = vec![
            fixtures::with_tariff(fixtures::belgian(fixtures::snapshot()), 1),
            fixtures::with_tariff(fixtures::belgian(fixtures::snapshot()), 2),
        ];
        // Meter statistics whose telegram lost its lines, or has none: nothing to go on.
        let mut cut = fixtures::belgian(fixtures::snapshot());
        let stats = cut.meter_stats.as_mut().unwrap();
        stats.insert("latest_telegram".into(), Value::String("/FLU5\r\n!".into()));
        polls.push(cut.clone());
        cut.meter_stats
            .as_mut()
            .unwrap()
            .insert("latest_telegram".into(), Value::Null);
        polls.push(cut);
        for poll in &polls {
            state.apply(poll, NOW);
            assert_eq!(
                options(&mut discovery, &state),
                serde_json::json!(["day", "night"])
            );
        }
    }

    /// Every discovery payload the bridge can publish, per kind of meter, in the order they are
    /// offered. insta (kept, and what the team uses for JSON snapshots) rather than expected
    /// files of our own: a mismatch fails the test and shows a diff, `cargo insta review`
    /// accepts a wanted change, and with `CI=true` (CI) nothing is written, so a changed unit,
    /// class, state class, topic or id cannot pass unnoticed.
    mod snapshots {
        use serde_json::json;

        use super::*;

        fn announced(snapshot: &Snapshot, base: &str) -> Value {
            let mut state = MeterState::new("dsmr-bridge");
            state.apply(snapshot, NOW);
            state.set_reachable(true);
            let topics = Topics::new(base);
            let mut discovery =
                Discovery::new("homeassistant", 1, Some("http://dsmr.local:7777/".into()));
            as_json(&discovery.messages(&state, &topics))
        }

        /// `[{topic: payload}, ...]` in the order offered; an empty payload (a removal) stays "".
        fn as_json(messages: &[Message]) -> Value {
            messages
                .iter()
                .map(|m| {
                    let payload = serde_json::from_str::<Value>(&m.payload)
                        .unwrap_or_else(|_| json!(&*m.payload));
                    json!({ &*m.topic: payload })
                })
                .collect()
        }

        fn check(name: &str, description: &str, messages: Value) {
            let mut settings = insta::Settings::clone_current();
            settings.set_prepend_module_to_snapshot(false);
            settings.set_description(description);
            settings.set_omit_expression(true);
            settings.bind(|| insta::assert_json_snapshot!(name, messages));
        }

        #[test]
        fn three_phase_with_gas() {
            check(
                "discovery_three_phase_with_gas",
                "the captured DSMR 5 meter: three phases, gas, every endpoint",
                announced(&fixtures::snapshot(), "dsmr-bridge"),
            );
        }

        #[test]
        fn three_phase_without_gas() {
            check(
                "discovery_three_phase_without_gas",
                "three phases, no gas meter",
                announced(&fixtures::without_gas(fixtures::snapshot()), "dsmr-bridge"),
            );
        }

        #[test]
        fn single_phase_with_gas() {
            check(
                "discovery_single_phase_with_gas",
                "one phase, gas",
                announced(&fixtures::single_phase(fixtures::snapshot()), "dsmr-bridge"),
            );
        }

        #[test]
        fn single_phase_without_gas() {
            check(
                "discovery_single_phase_without_gas",
                "one phase, no gas meter",
                announced(
                    &fixtures::single_phase(fixtures::without_gas(fixtures::snapshot())),
                    "dsmr-bridge",
                ),
            );
        }

        #[test]
        fn belgian_three_phase_with_gas() {
            check(
                "discovery_belgian_three_phase_with_gas",
                "a Belgian (Fluvius e-MUCS) meter: tariff 1 is day, 2 night",
                announced(&fixtures::belgian(fixtures::snapshot()), "dsmr-bridge"),
            );
        }

        /// The captured meter with `telegram` (in `tests/fixtures/`), with or without the
        /// Belgian answers of DSMR-reader.
        fn with_telegram(belgian: bool, telegram: &str) -> Value {
            let snapshot = if belgian {
                fixtures::belgian(fixtures::snapshot())
            } else {
                fixtures::snapshot()
            };
            announced(&fixtures::with_telegram(snapshot, telegram), "dsmr-bridge")
        }

        #[test]
        fn belgian_capacity_history() {
            check(
                "discovery_belgian_capacity_history",
                "a Belgian meter with 13 months of maxima: the capacity tariff entities",
                with_telegram(true, "telegram_belgian_capacity_history.txt"),
            );
        }

        #[test]
        fn dutch_water_and_gas() {
            check(
                "discovery_dutch_water_gas",
                "water on M-Bus channel 1, gas (DSMR-reader's) on 2: a water meter device",
                with_telegram(false, "telegram_dutch_water_gas.txt"),
            );
        }

        #[test]
        fn dutch_water_swapped() {
            check(
                "discovery_dutch_water_swapped",
                "the water meter swapped: a new device for the new M-Bus id",
                with_telegram(false, "telegram_dutch_water_swapped.txt"),
            );
        }

        #[test]
        fn dutch_gas_then_water() {
            check(
                "discovery_dutch_gas_water",
                "gas on channel 1, water on 2: DSMR-reader reads the water meter as gas, so none of its gas values are announced; both M-Bus devices get a device",
                with_telegram(false, "telegram_dutch_gas_water.txt"),
            );
        }

        #[test]
        fn dutch_heat() {
            check(
                "discovery_dutch_heat",
                "district heating: a heat meter (GJ) on channel 1, no gas",
                announced(
                    &fixtures::with_telegram(
                        fixtures::without_gas(fixtures::snapshot()),
                        "telegram_dutch_heat.txt",
                    ),
                    "dsmr-bridge",
                ),
            );
        }

        #[test]
        fn dutch_unknown_m_bus_type() {
            check(
                "discovery_dutch_unknown_mbus",
                "an M-Bus device of type 6 (warm water): no entity for it, the rest as usual",
                with_telegram(false, "telegram_dutch_unknown_mbus.txt"),
            );
        }

        #[test]
        fn broken_lines() {
            check(
                "discovery_broken_lines",
                "a Belgian telegram with broken lines: only what parses",
                with_telegram(true, "telegram_broken_lines.txt"),
            );
        }

        #[test]
        fn base_topic_dsmr() {
            check(
                "discovery_base_topic_dsmr",
                "the captured meter with base_topic: dsmr (DSMR-reader's own topics)",
                announced(&fixtures::snapshot(), "dsmr"),
            );
        }
    }
}
