//! Map stage, the sensor table: every value dsmr-bridge publishes and everything Home Assistant
//! needs to know about it, in one place.
//!
//! Units and state classes here are a promise to every user's long-term statistics: Home
//! Assistant suppresses statistics when either changes, so never change them for an existing key.

/// The DSMR-reader endpoint a value comes from. `Health` is the bridge's own view of whether
/// DSMR-reader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Reading,
    MeterStats,
    Today,
    Peak,
    Version,
    Monitoring,
    Health,
}

/// How a JSON field is checked before its text may become a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A decimal as a string (`"37562.774"`, model endpoints) or a JSON number (`today`).
    Decimal,
    Integer,
    /// ISO 8601 with an offset.
    Timestamp,
    /// Short printable text (versions).
    Text,
}

/// Which Home Assistant device an entity belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    Electricity,
    Gas,
    Reader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Sensor,
    BinarySensor,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sensor => "sensor",
            Self::BinarySensor => "binary_sensor",
        }
    }
}

#[derive(Debug)]
pub struct Sensor {
    /// Unique within the table: component id in discovery and suffix of the unique_id.
    pub key: &'static str,
    pub endpoint: Endpoint,
    /// Field name in DSMR-reader's JSON.
    pub field: &'static str,
    /// State topic below `base_topic`, named as DSMR-reader's own split topics.
    pub topic: &'static str,
    pub kind: Kind,
    pub device: Device,
    pub platform: Platform,
    pub name: &'static str,
    pub unit: Option<&'static str>,
    pub device_class: Option<&'static str>,
    pub state_class: Option<&'static str>,
    pub precision: Option<u8>,
    pub enabled: bool,
    pub diagnostic: bool,
    /// A meter register Home Assistant sums as `total_increasing`: the largest plausible rise per
    /// hour. A 0, a drop or a larger jump is never published (it would be read as a meter reset).
    pub register_max_per_hour: Option<f64>,
    /// Published for compatibility with DSMR-reader's topic layout, but not announced as an
    /// entity (another key announces the same value).
    pub announce: bool,
    pub value_template: Option<&'static str>,
    pub options: Option<&'static [&'static str]>,
    /// Per-entity availability: only the bridge's own status, not DSMR-reader's.
    pub bridge_availability_only: bool,
}

const BASE: Sensor = Sensor {
    key: "",
    endpoint: Endpoint::Reading,
    field: "",
    topic: "",
    kind: Kind::Decimal,
    device: Device::Electricity,
    platform: Platform::Sensor,
    name: "",
    unit: None,
    device_class: None,
    state_class: None,
    precision: None,
    enabled: true,
    diagnostic: false,
    register_max_per_hour: None,
    announce: true,
    value_template: None,
    options: None,
    bridge_availability_only: false,
};

/// 100 kW: more than any household connection (3 × 80 A) can draw, so a faster rise is garbage.
const ELECTRICITY_MAX_KWH_PER_HOUR: f64 = 100.0;
/// A large boiler burns about 6 m³/h; 25 leaves room for anything a home has.
const GAS_MAX_M3_PER_HOUR: f64 = 25.0;

macro_rules! sensor {
    ($($field:ident : $value:expr),* $(,)?) => {
        Sensor { $($field: $value,)* ..BASE }
    };
}

const fn register(key: &'static str, topic: &'static str, name: &'static str) -> Sensor {
    sensor! {
        key: key, field: key, topic: topic, name: name,
        unit: Some("kWh"), device_class: Some("energy"), state_class: Some("total_increasing"),
        precision: Some(3), register_max_per_hour: Some(ELECTRICITY_MAX_KWH_PER_HOUR),
    }
}

const fn power(
    key: &'static str,
    topic: &'static str,
    name: &'static str,
    enabled: bool,
) -> Sensor {
    sensor! {
        key: key, field: key, topic: topic, name: name, unit: Some("kW"),
        device_class: Some("power"), state_class: Some("measurement"), precision: Some(3),
        enabled: enabled,
    }
}

const fn phase(
    key: &'static str,
    topic: &'static str,
    name: &'static str,
    unit: &'static str,
    class: &'static str,
    precision: u8,
    kind: Kind,
) -> Sensor {
    sensor! {
        key: key, field: key, topic: topic, name: name, unit: Some(unit), kind: kind,
        device_class: Some(class), state_class: Some("measurement"), precision: Some(precision),
        enabled: false, diagnostic: true,
    }
}

const fn counter(key: &'static str, name: &'static str, topic: &'static str) -> Sensor {
    sensor! {
        key: key, field: key, topic: topic, name: name, endpoint: Endpoint::MeterStats,
        kind: Kind::Integer, enabled: false, diagnostic: true,
    }
}

const fn day_energy(
    key: &'static str,
    topic: &'static str,
    name: &'static str,
    enabled: bool,
) -> Sensor {
    sensor! {
        key: key, field: const_field(topic), topic: topic, name: name, endpoint: Endpoint::Today,
        unit: Some("kWh"), device_class: Some("energy"), state_class: Some("total_increasing"),
        precision: Some(3), enabled: enabled,
    }
}

const fn day_cost(
    key: &'static str,
    topic: &'static str,
    name: &'static str,
    enabled: bool,
) -> Sensor {
    sensor! {
        key: key, field: const_field(topic), topic: topic, name: name, endpoint: Endpoint::Today,
        unit: Some("EUR"), device_class: Some("monetary"), precision: Some(2), enabled: enabled,
        device: Device::Reader,
    }
}

const fn price(
    key: &'static str,
    topic: &'static str,
    name: &'static str,
    unit: &'static str,
) -> Sensor {
    sensor! {
        key: key, field: const_field(topic), topic: topic, name: name, endpoint: Endpoint::Today,
        unit: Some(unit), precision: Some(5), enabled: false, device: Device::Reader,
    }
}

/// The JSON field is the last topic level for every `day-consumption/...` entry.
const fn const_field(topic: &'static str) -> &'static str {
    let bytes = topic.as_bytes();
    let mut i = bytes.len();
    while i > 0 {
        if bytes[i - 1] == b'/' {
            break;
        }
        i -= 1;
    }
    let (_, tail) = bytes.split_at(i);
    match std::str::from_utf8(tail) {
        Ok(s) => s,
        Err(_) => "",
    }
}

pub static SENSORS: &[Sensor] = &[
    // The four grid registers: what the Energy dashboard uses.
    register(
        "electricity_delivered_1",
        "reading/electricity_delivered_1",
        "Energy consumption (tariff 1)",
    ),
    register(
        "electricity_delivered_2",
        "reading/electricity_delivered_2",
        "Energy consumption (tariff 2)",
    ),
    register(
        "electricity_returned_1",
        "reading/electricity_returned_1",
        "Energy production (tariff 1)",
    ),
    register(
        "electricity_returned_2",
        "reading/electricity_returned_2",
        "Energy production (tariff 2)",
    ),
    power(
        "electricity_currently_delivered",
        "reading/electricity_currently_delivered",
        "Power consumption",
        true,
    ),
    power(
        "electricity_currently_returned",
        "reading/electricity_currently_returned",
        "Power production",
        true,
    ),
    power(
        "phase_currently_delivered_l1",
        "reading/phase_currently_delivered_l1",
        "Power consumption L1",
        false,
    ),
    power(
        "phase_currently_delivered_l2",
        "reading/phase_currently_delivered_l2",
        "Power consumption L2",
        false,
    ),
    power(
        "phase_currently_delivered_l3",
        "reading/phase_currently_delivered_l3",
        "Power consumption L3",
        false,
    ),
    power(
        "phase_currently_returned_l1",
        "reading/phase_currently_returned_l1",
        "Power production L1",
        false,
    ),
    power(
        "phase_currently_returned_l2",
        "reading/phase_currently_returned_l2",
        "Power production L2",
        false,
    ),
    power(
        "phase_currently_returned_l3",
        "reading/phase_currently_returned_l3",
        "Power production L3",
        false,
    ),
    phase(
        "phase_voltage_l1",
        "reading/phase_voltage_l1",
        "Voltage L1",
        "V",
        "voltage",
        1,
        Kind::Decimal,
    ),
    phase(
        "phase_voltage_l2",
        "reading/phase_voltage_l2",
        "Voltage L2",
        "V",
        "voltage",
        1,
        Kind::Decimal,
    ),
    phase(
        "phase_voltage_l3",
        "reading/phase_voltage_l3",
        "Voltage L3",
        "V",
        "voltage",
        1,
        Kind::Decimal,
    ),
    phase(
        "phase_power_current_l1",
        "reading/phase_power_current_l1",
        "Current L1",
        "A",
        "current",
        0,
        Kind::Integer,
    ),
    phase(
        "phase_power_current_l2",
        "reading/phase_power_current_l2",
        "Current L2",
        "A",
        "current",
        0,
        Kind::Integer,
    ),
    phase(
        "phase_power_current_l3",
        "reading/phase_power_current_l3",
        "Current L3",
        "A",
        "current",
        0,
        Kind::Integer,
    ),
    sensor! {
        key: "timestamp", field: "timestamp", topic: "reading/timestamp", kind: Kind::Timestamp,
        name: "Telegram timestamp", device_class: Some("timestamp"), enabled: false, diagnostic: true,
    },
    // DSMR-reader's split topics carry the gas register under reading/ too; HA's own
    // "DSMR Reader" integration reads both, so both are kept.
    sensor! {
        key: "extra_device_delivered", field: "extra_device_delivered",
        topic: "reading/extra_device_delivered", device: Device::Gas, announce: false,
        register_max_per_hour: Some(GAS_MAX_M3_PER_HOUR),
    },
    sensor! {
        key: "extra_device_timestamp", field: "extra_device_timestamp",
        topic: "reading/extra_device_timestamp", kind: Kind::Timestamp, device: Device::Gas,
        announce: false,
    },
    sensor! {
        key: "gas_delivered", field: "extra_device_delivered", topic: "consumption/gas/delivered",
        device: Device::Gas, name: "Gas consumption", unit: Some("m³"), device_class: Some("gas"),
        state_class: Some("total_increasing"), precision: Some(3),
        register_max_per_hour: Some(GAS_MAX_M3_PER_HOUR),
    },
    sensor! {
        key: "gas_read_at", field: "extra_device_timestamp", topic: "consumption/gas/read_at",
        kind: Kind::Timestamp, device: Device::Gas, name: "Gas meter reading time",
        device_class: Some("timestamp"), enabled: false, diagnostic: true,
    },
    // Meter statistics.
    sensor! {
        key: "electricity_tariff", field: "electricity_tariff", topic: "meter-stats/electricity_tariff",
        endpoint: Endpoint::MeterStats, kind: Kind::Integer, name: "Active tariff",
        device_class: Some("enum"), options: Some(&["low", "normal"]),
        value_template: Some("{{ 'low' if value == '1' else 'normal' }}"),
    },
    sensor! {
        key: "dsmr_version", field: "dsmr_version", topic: "meter-stats/dsmr_version",
        endpoint: Endpoint::MeterStats, kind: Kind::Text, name: "DSMR version",
        enabled: false, diagnostic: true,
    },
    counter(
        "power_failure_count",
        "Power failures",
        "meter-stats/power_failure_count",
    ),
    counter(
        "long_power_failure_count",
        "Long power failures",
        "meter-stats/long_power_failure_count",
    ),
    counter(
        "voltage_sag_count_l1",
        "Voltage sags L1",
        "meter-stats/voltage_sag_count_l1",
    ),
    counter(
        "voltage_sag_count_l2",
        "Voltage sags L2",
        "meter-stats/voltage_sag_count_l2",
    ),
    counter(
        "voltage_sag_count_l3",
        "Voltage sags L3",
        "meter-stats/voltage_sag_count_l3",
    ),
    counter(
        "voltage_swell_count_l1",
        "Voltage swells L1",
        "meter-stats/voltage_swell_count_l1",
    ),
    counter(
        "voltage_swell_count_l2",
        "Voltage swells L2",
        "meter-stats/voltage_swell_count_l2",
    ),
    counter(
        "voltage_swell_count_l3",
        "Voltage swells L3",
        "meter-stats/voltage_swell_count_l3",
    ),
    sensor! {
        key: "rejected_telegrams", field: "rejected_telegrams", topic: "meter-stats/rejected_telegrams",
        endpoint: Endpoint::MeterStats, kind: Kind::Integer, name: "Rejected telegrams",
        device: Device::Reader, enabled: false, diagnostic: true,
    },
    // Today's totals, about once a minute.
    day_energy(
        "electricity1",
        "day-consumption/electricity1",
        "Energy consumption today (tariff 1)",
        false,
    ),
    day_energy(
        "electricity2",
        "day-consumption/electricity2",
        "Energy consumption today (tariff 2)",
        false,
    ),
    day_energy(
        "electricity1_returned",
        "day-consumption/electricity1_returned",
        "Energy production today (tariff 1)",
        false,
    ),
    day_energy(
        "electricity2_returned",
        "day-consumption/electricity2_returned",
        "Energy production today (tariff 2)",
        false,
    ),
    day_energy(
        "electricity_merged",
        "day-consumption/electricity_merged",
        "Energy consumption today",
        true,
    ),
    day_energy(
        "electricity_returned_merged",
        "day-consumption/electricity_returned_merged",
        "Energy production today",
        true,
    ),
    sensor! {
        key: "gas_today", field: "gas", topic: "day-consumption/gas", endpoint: Endpoint::Today,
        device: Device::Gas, name: "Gas consumption today", unit: Some("m³"),
        device_class: Some("gas"), state_class: Some("total_increasing"), precision: Some(3),
    },
    day_cost(
        "electricity1_cost",
        "day-consumption/electricity1_cost",
        "Electricity cost today (tariff 1)",
        false,
    ),
    day_cost(
        "electricity2_cost",
        "day-consumption/electricity2_cost",
        "Electricity cost today (tariff 2)",
        false,
    ),
    day_cost(
        "fixed_cost",
        "day-consumption/fixed_cost",
        "Fixed cost today",
        false,
    ),
    day_cost(
        "total_cost",
        "day-consumption/total_cost",
        "Total cost today",
        true,
    ),
    sensor! {
        key: "gas_cost", field: "gas_cost", topic: "day-consumption/gas_cost", endpoint: Endpoint::Today,
        device: Device::Gas, name: "Gas cost today", unit: Some("EUR"), device_class: Some("monetary"),
        precision: Some(2), enabled: false,
    },
    price(
        "energy_supplier_price_electricity_delivered_1",
        "day-consumption/energy_supplier_price_electricity_delivered_1",
        "Electricity price (tariff 1)",
        "EUR/kWh",
    ),
    price(
        "energy_supplier_price_electricity_delivered_2",
        "day-consumption/energy_supplier_price_electricity_delivered_2",
        "Electricity price (tariff 2)",
        "EUR/kWh",
    ),
    price(
        "energy_supplier_price_electricity_returned_1",
        "day-consumption/energy_supplier_price_electricity_returned_1",
        "Return price (tariff 1)",
        "EUR/kWh",
    ),
    price(
        "energy_supplier_price_electricity_returned_2",
        "day-consumption/energy_supplier_price_electricity_returned_2",
        "Return price (tariff 2)",
        "EUR/kWh",
    ),
    sensor! {
        key: "energy_supplier_price_gas", field: "energy_supplier_price_gas",
        topic: "day-consumption/energy_supplier_price_gas", endpoint: Endpoint::Today,
        device: Device::Gas, name: "Gas price", unit: Some("EUR/m³"), precision: Some(5),
        enabled: false,
    },
    // Belgian capacity tariff: DSMR-reader's own quarter-hour peak.
    sensor! {
        key: "quarter_hour_peak", field: "average_delivered",
        topic: "consumption/quarter-hour-peak-electricity/average_delivered",
        endpoint: Endpoint::Peak, name: "Quarter-hour peak", unit: Some("kW"),
        device_class: Some("power"), state_class: Some("measurement"), precision: Some(3),
    },
    sensor! {
        key: "quarter_hour_peak_start", field: "read_at_start",
        topic: "consumption/quarter-hour-peak-electricity/read_at_start", endpoint: Endpoint::Peak,
        kind: Kind::Timestamp, name: "Quarter-hour peak start", device_class: Some("timestamp"),
        enabled: false, diagnostic: true,
    },
    sensor! {
        key: "quarter_hour_peak_end", field: "read_at_end",
        topic: "consumption/quarter-hour-peak-electricity/read_at_end", endpoint: Endpoint::Peak,
        kind: Kind::Timestamp, name: "Quarter-hour peak end", device_class: Some("timestamp"),
        enabled: false, diagnostic: true,
    },
    // The DSMR-reader server itself.
    sensor! {
        key: "version", field: "version", topic: "dsmr-reader/version", endpoint: Endpoint::Version,
        kind: Kind::Text, device: Device::Reader, name: "Version", diagnostic: true,
        bridge_availability_only: true,
    },
    sensor! {
        key: "monitoring_problems", field: "problems", topic: "dsmr-reader/problems",
        endpoint: Endpoint::Monitoring, kind: Kind::Integer, device: Device::Reader,
        name: "Monitoring problems", diagnostic: true,
    },
    sensor! {
        key: "reachable", field: "", topic: "dsmr-reader/status", endpoint: Endpoint::Health,
        kind: Kind::Text, device: Device::Reader, platform: Platform::BinarySensor,
        name: "Reachable", device_class: Some("connectivity"), diagnostic: true,
        bridge_availability_only: true,
    },
];

/// Index of a key in `SENSORS`.
pub fn index_of(key: &str) -> Option<usize> {
    SENSORS.iter().position(|s| s.key == key)
}

/// The table index of DSMR-reader's reachability.
pub fn health_index() -> usize {
    SENSORS
        .iter()
        .position(|s| s.endpoint == Endpoint::Health)
        .expect("the table has a Health entry")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_and_topics_are_unique() {
        let keys: HashSet<_> = SENSORS.iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), SENSORS.len());
        let topics: HashSet<_> = SENSORS.iter().map(|s| s.topic).collect();
        assert_eq!(topics.len(), SENSORS.len());
        assert!(
            SENSORS
                .iter()
                .all(|s| !s.topic.is_empty() && !s.key.is_empty())
        );
    }

    #[test]
    fn registers_are_energy_dashboard_ready() {
        for key in [
            "electricity_delivered_1",
            "electricity_delivered_2",
            "electricity_returned_1",
            "electricity_returned_2",
        ] {
            let s = &SENSORS[index_of(key).unwrap()];
            assert_eq!(s.topic, format!("reading/{key}"));
            assert_eq!(s.unit, Some("kWh"));
            assert_eq!(s.device_class, Some("energy"));
            assert_eq!(s.state_class, Some("total_increasing"));
            assert!(s.register_max_per_hour.is_some());
        }
        let gas = &SENSORS[index_of("gas_delivered").unwrap()];
        assert_eq!(gas.unit, Some("m³"));
        assert_eq!(gas.device_class, Some("gas"));
        assert_eq!(gas.device, Device::Gas);
    }

    #[test]
    fn announced_entities_have_names_and_valid_classes() {
        for s in SENSORS.iter().filter(|s| s.announce) {
            assert!(!s.name.is_empty(), "{} has no name", s.key);
            if s.device_class == Some("monetary") {
                assert!(matches!(s.state_class, None | Some("total")), "{}", s.key);
            }
            if s.device_class == Some("enum") {
                assert!(s.options.is_some() && s.unit.is_none() && s.state_class.is_none());
            }
        }
        assert!(
            SENSORS.iter().all(|s| s.announce
                || s.register_max_per_hour.is_some()
                || s.kind == Kind::Timestamp)
        );
    }

    #[test]
    fn day_fields_come_from_the_last_topic_level() {
        assert_eq!(
            const_field("day-consumption/electricity1_cost"),
            "electricity1_cost"
        );
        assert_eq!(SENSORS[index_of("total_cost").unwrap()].field, "total_cost");
    }
}
