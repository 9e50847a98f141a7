//! Map stage, the sensor table: every value dsmr-bridge publishes and everything Home Assistant
//! needs to know about it, in one place.
//!
//! Units and state classes here are a promise to every user's long-term statistics: Home
//! Assistant suppresses statistics when either changes, so never change them for an existing key.
//! The snapshots in `snapshots/` (tests in `discovery.rs`) hold every discovery payload, so such a
//! change, or one of a topic or id, fails the tests and shows up as a diff in review.
//!
//! Every entry names each of its fields (`Sensor { key: .., topic: .., name: .., ..BASE }`): a
//! swapped topic and name cannot hide in a positional argument list.

use std::borrow::Cow;

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
    /// Lines of the raw telegram in meter statistics (`latest_telegram`) that DSMR-reader does
    /// not keep as fields: the Belgian capacity tariff and every M-Bus device. Read by
    /// `TelegramReadings` into fields of the names below.
    Telegram,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Device {
    Electricity,
    /// DSMR-reader's own extra device (its gas reading).
    Gas,
    Reader,
    /// Any other M-Bus device on channel 1–4 (water, heat, a second gas meter), from the telegram.
    MBus(u8),
}

/// Which tariff an entry is about. Names of tariff values end in `(tariff N, <label>)`, and the
/// active tariff shows as a label, after the meter's `TariffConvention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tariff {
    One,
    Two,
    /// The tariff the meter counts in now (`electricity_tariff`, 1 or 2).
    Active,
}

/// What the meter's tariff numbers mean. Dutch meters (DSMR): tariff 1 is the low tariff
/// (night and weekend), 2 the normal one. Belgian meters (Fluvius e-MUCS): tariff 1 is the day
/// tariff, 2 the night tariff. The telegram tells which (`MeterIdentity::tariffs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum TariffConvention {
    /// Also for a telegram that says neither: DSMR-reader's default meter is Dutch.
    #[default]
    Dutch,
    Belgian,
}

impl TariffConvention {
    /// The labels of tariff 1 and 2: the active tariff's `options`, fixed per convention so a
    /// meter's options never change.
    pub(crate) const fn labels(self) -> &'static [&'static str; 2] {
        match self {
            Self::Dutch => &["low", "normal"],
            Self::Belgian => &["day", "night"],
        }
    }

    /// Turns the active tariff's state (`1`, `2`) into its label.
    pub(crate) const fn value_template(self) -> &'static str {
        match self {
            Self::Dutch => "{{ 'low' if value == '1' else 'normal' }}",
            Self::Belgian => "{{ 'day' if value == '1' else 'night' }}",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    Sensor,
    BinarySensor,
}

impl Platform {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Sensor => "sensor",
            Self::BinarySensor => "binary_sensor",
        }
    }
}

/// When a total starts again from zero, for Home Assistant's `last_reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reset {
    /// At local midnight: DSMR-reader's day totals (`today`). Home Assistant sums such a
    /// `total` across its days, each day counted whole from its first value.
    Daily,
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
    pub(crate) device: Device,
    pub(crate) platform: Platform,
    /// The entity name; for a tariff value the part before `(tariff N, <label>)` (`name_for`).
    pub(crate) name: &'static str,
    pub(crate) unit: Option<&'static str>,
    pub(crate) device_class: Option<&'static str>,
    pub(crate) state_class: Option<&'static str>,
    /// A `total` that starts again from zero: discovery gives it a `last_reset`.
    pub(crate) resets: Option<Reset>,
    pub(crate) precision: Option<u8>,
    pub(crate) enabled: bool,
    pub(crate) diagnostic: bool,
    /// A meter register Home Assistant sums as `total_increasing`: the largest plausible rise per
    /// hour. A 0, a drop or a larger jump is never published (it would be read as a meter reset).
    pub(crate) register_max_per_hour: Option<f64>,
    /// A value that cannot be negative (power, voltage, current, counters, today's energy and
    /// gas): a negative one is garbage and is held back, the last value stays.
    pub(crate) non_negative: bool,
    /// The most a household's meter can measure here (power, current, voltage): a larger value
    /// is garbage (a misread telegram, a broken meter), held back like a negative one.
    pub(crate) max: Option<f64>,
    /// Published for compatibility with DSMR-reader's topic layout, but not announced as an
    /// entity (another key announces the same value).
    pub(crate) announce: bool,
    /// A value of tariff 1 or 2, or the active tariff: its name or its labels depend on the
    /// meter's `TariffConvention`.
    pub(crate) tariff: Option<Tariff>,
    /// Per-entity availability: only the bridge's own status, not DSMR-reader's.
    pub(crate) bridge_availability_only: bool,
    /// Shown on the status page (power, today's totals and cost, the registers and gas).
    pub(crate) on_page: bool,
}

impl Sensor {
    /// The entity name: a tariff value's name says which tariff, by number and by label.
    pub(crate) fn name_for(&self, tariffs: TariffConvention) -> Cow<'static, str> {
        let [one, two] = tariffs.labels();
        match self.tariff {
            Some(Tariff::One) => Cow::Owned(format!("{} (tariff 1, {one})", self.name)),
            Some(Tariff::Two) => Cow::Owned(format!("{} (tariff 2, {two})", self.name)),
            Some(Tariff::Active) | None => Cow::Borrowed(self.name),
        }
    }

    /// The base of every entry: what an entry does not name is this.
    pub(crate) const DEFAULT: Sensor = Sensor {
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
        resets: None,
        precision: None,
        enabled: true,
        diagnostic: false,
        register_max_per_hour: None,
        non_negative: false,
        max: None,
        announce: true,
        tariff: None,
        bridge_availability_only: false,
        on_page: false,
    };
}

/// 100 kW: more than any household connection (3 × 80 A) can draw, so a faster rise is garbage.
const ELECTRICITY_MAX_KWH_PER_HOUR: f64 = 100.0;
/// A large boiler burns about 6 m³/h; 25 leaves room for anything a home has.
const GAS_MAX_M3_PER_HOUR: f64 = 25.0;

/// A household's water: a 1¼" main passes about 6 m³/h at most.
const WATER_MAX_M3_PER_HOUR: f64 = 10.0;
/// District heat: a home's delivery set is sized for 10–40 kW (0.04–0.15 GJ/h).
const HEAT_MAX_GJ_PER_HOUR: f64 = 0.5;
const HEAT_MAX_KWH_PER_HOUR: f64 = HEAT_MAX_GJ_PER_HOUR / 0.0036;

/// The reading of an M-Bus device from the telegram: a register the Energy dashboard sums.
const MBUS_REGISTER: Sensor = Sensor {
    endpoint: Endpoint::Telegram,
    state_class: Some("total_increasing"),
    precision: Some(3),
    ..Sensor::DEFAULT
};

const MBUS_GAS: Sensor = Sensor {
    name: "Gas consumption",
    unit: Some("m³"),
    device_class: Some("gas"),
    register_max_per_hour: Some(GAS_MAX_M3_PER_HOUR),
    ..MBUS_REGISTER
};

const MBUS_WATER: Sensor = Sensor {
    name: "Water consumption",
    unit: Some("m³"),
    device_class: Some("water"),
    register_max_per_hour: Some(WATER_MAX_M3_PER_HOUR),
    ..MBUS_REGISTER
};

const MBUS_HEAT: Sensor = Sensor {
    name: "Heat consumption",
    unit: Some("GJ"),
    device_class: Some("energy"),
    register_max_per_hour: Some(HEAT_MAX_GJ_PER_HOUR),
    ..MBUS_REGISTER
};

/// A heat meter that counts in kWh: its own key, so a unit never changes under a key.
const MBUS_HEAT_KWH: Sensor = Sensor {
    unit: Some("kWh"),
    register_max_per_hour: Some(HEAT_MAX_KWH_PER_HOUR),
    ..MBUS_HEAT
};

/// When the M-Bus device last reported its reading (every 5 minutes or every hour).
const MBUS_TIME: Sensor = Sensor {
    endpoint: Endpoint::Telegram,
    kind: Kind::Timestamp,
    name: "Reading time",
    device_class: Some("timestamp"),
    diagnostic: true,
    ..Sensor::DEFAULT
};

// What a meter can report is far beyond what a home can draw: DSMR's telegram has room for
// 99999.999 kW of power, 999 A and 9999.9 V. The limits below are what a household connection
// can physically show, with room to spare, so that only garbage is held back.
/// Total power, kW: a large household connection is 3 × 80 A at 230 V, 55 kW.
const POWER_MAX_KW: f64 = 100.0;
/// Power on one phase, kW: 128 A at 250 V.
const PHASE_POWER_MAX_KW: f64 = 32.0;
/// Current on one phase, A: above the largest household fuse (80 A) and main breaker (125 A).
const CURRENT_MAX_A: f64 = 128.0;
/// Voltage on one phase, V: 230 V nominal, +10 % allowed (253 V); 440 V leaves room for a
/// meter on a 3 × 230 V network without neutral (Belgium) that reports line-to-line voltage
/// (230 V) or a 3 × 400 V one doing the same (400 V).
const VOLTAGE_MAX_V: f64 = 440.0;

/// A grid register of the meter: what the Energy dashboard sums.
const REGISTER: Sensor = Sensor {
    unit: Some("kWh"),
    device_class: Some("energy"),
    state_class: Some("total_increasing"),
    precision: Some(3),
    register_max_per_hour: Some(ELECTRICITY_MAX_KWH_PER_HOUR),
    ..Sensor::DEFAULT
};

/// Consumed and returned power are separate values in DSMR, each 0 or more.
const POWER: Sensor = Sensor {
    unit: Some("kW"),
    device_class: Some("power"),
    state_class: Some("measurement"),
    precision: Some(3),
    non_negative: true,
    max: Some(POWER_MAX_KW),
    ..Sensor::DEFAULT
};

/// One phase's share of `POWER`.
const PHASE_POWER: Sensor = Sensor {
    max: Some(PHASE_POWER_MAX_KW),
    ..POWER
};

/// Per-phase detail most users never look at: off by default.
const PHASE_VOLTAGE: Sensor = Sensor {
    unit: Some("V"),
    device_class: Some("voltage"),
    state_class: Some("measurement"),
    precision: Some(1),
    enabled: false,
    diagnostic: true,
    non_negative: true,
    max: Some(VOLTAGE_MAX_V),
    ..Sensor::DEFAULT
};

const PHASE_CURRENT: Sensor = Sensor {
    kind: Kind::Integer,
    unit: Some("A"),
    device_class: Some("current"),
    state_class: Some("measurement"),
    precision: Some(0),
    max: Some(CURRENT_MAX_A),
    ..PHASE_VOLTAGE
};

/// A meter statistics counter (power failures, voltage sags and swells).
const COUNTER: Sensor = Sensor {
    endpoint: Endpoint::MeterStats,
    kind: Kind::Integer,
    non_negative: true,
    enabled: false,
    diagnostic: true,
    ..Sensor::DEFAULT
};

/// Today's total since local midnight; the JSON field is the last topic level.
const DAY_ENERGY: Sensor = Sensor {
    endpoint: Endpoint::Today,
    unit: Some("kWh"),
    device_class: Some("energy"),
    state_class: Some("total_increasing"),
    precision: Some(3),
    non_negative: true,
    ..Sensor::DEFAULT
};

/// Costs are DSMR-reader's (its price contracts), so they belong to its device. Each is the
/// day's cost so far, from local midnight: a `total` reset daily, so that Home Assistant keeps
/// its sum across days (what the Energy dashboard's "entity tracking the total costs" reads)
/// and the history can import DSMR-reader's day costs beneath it. They had no state class
/// before: Home Assistant kept no statistics of them, so the new one suppresses nothing.
const DAY_COST: Sensor = Sensor {
    endpoint: Endpoint::Today,
    device: Device::Reader,
    unit: Some("EUR"),
    device_class: Some("monetary"),
    state_class: Some("total"),
    resets: Some(Reset::Daily),
    precision: Some(2),
    ..Sensor::DEFAULT
};

const PRICE: Sensor = Sensor {
    endpoint: Endpoint::Today,
    device: Device::Reader,
    unit: Some("EUR/kWh"),
    precision: Some(5),
    enabled: false,
    ..Sensor::DEFAULT
};

pub static SENSORS: &[Sensor] = &[
    // The four grid registers: what the Energy dashboard uses.
    Sensor {
        key: "electricity_delivered_1",
        on_page: true,
        field: "electricity_delivered_1",
        topic: "reading/electricity_delivered_1",
        name: "Energy consumption",
        tariff: Some(Tariff::One),
        ..REGISTER
    },
    Sensor {
        key: "electricity_delivered_2",
        on_page: true,
        field: "electricity_delivered_2",
        topic: "reading/electricity_delivered_2",
        name: "Energy consumption",
        tariff: Some(Tariff::Two),
        ..REGISTER
    },
    Sensor {
        key: "electricity_returned_1",
        on_page: true,
        field: "electricity_returned_1",
        topic: "reading/electricity_returned_1",
        name: "Energy production",
        tariff: Some(Tariff::One),
        ..REGISTER
    },
    Sensor {
        key: "electricity_returned_2",
        on_page: true,
        field: "electricity_returned_2",
        topic: "reading/electricity_returned_2",
        name: "Energy production",
        tariff: Some(Tariff::Two),
        ..REGISTER
    },
    Sensor {
        key: "electricity_currently_delivered",
        on_page: true,
        field: "electricity_currently_delivered",
        topic: "reading/electricity_currently_delivered",
        name: "Power consumption",
        ..POWER
    },
    Sensor {
        key: "electricity_currently_returned",
        on_page: true,
        field: "electricity_currently_returned",
        topic: "reading/electricity_currently_returned",
        name: "Power production",
        ..POWER
    },
    Sensor {
        key: "phase_currently_delivered_l1",
        on_page: true,
        field: "phase_currently_delivered_l1",
        topic: "reading/phase_currently_delivered_l1",
        name: "Power consumption L1",
        enabled: false,
        ..PHASE_POWER
    },
    Sensor {
        key: "phase_currently_delivered_l2",
        on_page: true,
        field: "phase_currently_delivered_l2",
        topic: "reading/phase_currently_delivered_l2",
        name: "Power consumption L2",
        enabled: false,
        ..PHASE_POWER
    },
    Sensor {
        key: "phase_currently_delivered_l3",
        on_page: true,
        field: "phase_currently_delivered_l3",
        topic: "reading/phase_currently_delivered_l3",
        name: "Power consumption L3",
        enabled: false,
        ..PHASE_POWER
    },
    Sensor {
        key: "phase_currently_returned_l1",
        on_page: true,
        field: "phase_currently_returned_l1",
        topic: "reading/phase_currently_returned_l1",
        name: "Power production L1",
        enabled: false,
        ..PHASE_POWER
    },
    Sensor {
        key: "phase_currently_returned_l2",
        on_page: true,
        field: "phase_currently_returned_l2",
        topic: "reading/phase_currently_returned_l2",
        name: "Power production L2",
        enabled: false,
        ..PHASE_POWER
    },
    Sensor {
        key: "phase_currently_returned_l3",
        on_page: true,
        field: "phase_currently_returned_l3",
        topic: "reading/phase_currently_returned_l3",
        name: "Power production L3",
        enabled: false,
        ..PHASE_POWER
    },
    Sensor {
        key: "phase_voltage_l1",
        field: "phase_voltage_l1",
        topic: "reading/phase_voltage_l1",
        name: "Voltage L1",
        ..PHASE_VOLTAGE
    },
    Sensor {
        key: "phase_voltage_l2",
        field: "phase_voltage_l2",
        topic: "reading/phase_voltage_l2",
        name: "Voltage L2",
        ..PHASE_VOLTAGE
    },
    Sensor {
        key: "phase_voltage_l3",
        field: "phase_voltage_l3",
        topic: "reading/phase_voltage_l3",
        name: "Voltage L3",
        ..PHASE_VOLTAGE
    },
    Sensor {
        key: "phase_power_current_l1",
        field: "phase_power_current_l1",
        topic: "reading/phase_power_current_l1",
        name: "Current L1",
        ..PHASE_CURRENT
    },
    Sensor {
        key: "phase_power_current_l2",
        field: "phase_power_current_l2",
        topic: "reading/phase_power_current_l2",
        name: "Current L2",
        ..PHASE_CURRENT
    },
    Sensor {
        key: "phase_power_current_l3",
        field: "phase_power_current_l3",
        topic: "reading/phase_power_current_l3",
        name: "Current L3",
        ..PHASE_CURRENT
    },
    Sensor {
        key: "timestamp",
        field: "timestamp",
        topic: "reading/timestamp",
        kind: Kind::Timestamp,
        name: "Telegram timestamp",
        device_class: Some("timestamp"),
        enabled: false,
        diagnostic: true,
        ..Sensor::DEFAULT
    },
    // DSMR-reader's split topics carry the gas register under reading/ too; HA's own
    // "DSMR Reader" integration reads both, so both are kept.
    Sensor {
        key: "extra_device_delivered",
        field: "extra_device_delivered",
        topic: "reading/extra_device_delivered",
        device: Device::Gas,
        register_max_per_hour: Some(GAS_MAX_M3_PER_HOUR),
        announce: false,
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "extra_device_timestamp",
        field: "extra_device_timestamp",
        topic: "reading/extra_device_timestamp",
        kind: Kind::Timestamp,
        device: Device::Gas,
        announce: false,
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "gas_delivered",
        on_page: true,
        field: "extra_device_delivered",
        topic: "consumption/gas/delivered",
        device: Device::Gas,
        name: "Gas consumption",
        unit: Some("m³"),
        device_class: Some("gas"),
        state_class: Some("total_increasing"),
        precision: Some(3),
        register_max_per_hour: Some(GAS_MAX_M3_PER_HOUR),
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "gas_read_at",
        field: "extra_device_timestamp",
        topic: "consumption/gas/read_at",
        kind: Kind::Timestamp,
        device: Device::Gas,
        name: "Gas meter reading time",
        device_class: Some("timestamp"),
        enabled: false,
        diagnostic: true,
        ..Sensor::DEFAULT
    },
    // Meter statistics.
    Sensor {
        key: "electricity_tariff",
        field: "electricity_tariff",
        topic: "meter-stats/electricity_tariff",
        endpoint: Endpoint::MeterStats,
        kind: Kind::Integer,
        name: "Active tariff",
        device_class: Some("enum"),
        tariff: Some(Tariff::Active),
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "dsmr_version",
        field: "dsmr_version",
        topic: "meter-stats/dsmr_version",
        endpoint: Endpoint::MeterStats,
        kind: Kind::Text,
        name: "DSMR version",
        enabled: false,
        diagnostic: true,
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "power_failure_count",
        field: "power_failure_count",
        topic: "meter-stats/power_failure_count",
        name: "Power failures",
        ..COUNTER
    },
    Sensor {
        key: "long_power_failure_count",
        field: "long_power_failure_count",
        topic: "meter-stats/long_power_failure_count",
        name: "Long power failures",
        ..COUNTER
    },
    Sensor {
        key: "voltage_sag_count_l1",
        field: "voltage_sag_count_l1",
        topic: "meter-stats/voltage_sag_count_l1",
        name: "Voltage sags L1",
        ..COUNTER
    },
    Sensor {
        key: "voltage_sag_count_l2",
        field: "voltage_sag_count_l2",
        topic: "meter-stats/voltage_sag_count_l2",
        name: "Voltage sags L2",
        ..COUNTER
    },
    Sensor {
        key: "voltage_sag_count_l3",
        field: "voltage_sag_count_l3",
        topic: "meter-stats/voltage_sag_count_l3",
        name: "Voltage sags L3",
        ..COUNTER
    },
    Sensor {
        key: "voltage_swell_count_l1",
        field: "voltage_swell_count_l1",
        topic: "meter-stats/voltage_swell_count_l1",
        name: "Voltage swells L1",
        ..COUNTER
    },
    Sensor {
        key: "voltage_swell_count_l2",
        field: "voltage_swell_count_l2",
        topic: "meter-stats/voltage_swell_count_l2",
        name: "Voltage swells L2",
        ..COUNTER
    },
    Sensor {
        key: "voltage_swell_count_l3",
        field: "voltage_swell_count_l3",
        topic: "meter-stats/voltage_swell_count_l3",
        name: "Voltage swells L3",
        ..COUNTER
    },
    Sensor {
        key: "rejected_telegrams",
        field: "rejected_telegrams",
        topic: "meter-stats/rejected_telegrams",
        endpoint: Endpoint::MeterStats,
        kind: Kind::Integer,
        device: Device::Reader,
        name: "Rejected telegrams",
        non_negative: true,
        enabled: false,
        diagnostic: true,
        ..Sensor::DEFAULT
    },
    // Today's totals, about once a minute.
    Sensor {
        key: "electricity1",
        field: "electricity1",
        topic: "day-consumption/electricity1",
        name: "Energy consumption today",
        tariff: Some(Tariff::One),
        enabled: false,
        ..DAY_ENERGY
    },
    Sensor {
        key: "electricity2",
        field: "electricity2",
        topic: "day-consumption/electricity2",
        name: "Energy consumption today",
        tariff: Some(Tariff::Two),
        enabled: false,
        ..DAY_ENERGY
    },
    Sensor {
        key: "electricity1_returned",
        field: "electricity1_returned",
        topic: "day-consumption/electricity1_returned",
        name: "Energy production today",
        tariff: Some(Tariff::One),
        enabled: false,
        ..DAY_ENERGY
    },
    Sensor {
        key: "electricity2_returned",
        field: "electricity2_returned",
        topic: "day-consumption/electricity2_returned",
        name: "Energy production today",
        tariff: Some(Tariff::Two),
        enabled: false,
        ..DAY_ENERGY
    },
    Sensor {
        key: "electricity_merged",
        on_page: true,
        field: "electricity_merged",
        topic: "day-consumption/electricity_merged",
        name: "Energy consumption today",
        ..DAY_ENERGY
    },
    Sensor {
        key: "electricity_returned_merged",
        on_page: true,
        field: "electricity_returned_merged",
        topic: "day-consumption/electricity_returned_merged",
        name: "Energy production today",
        ..DAY_ENERGY
    },
    Sensor {
        key: "gas_today",
        on_page: true,
        field: "gas",
        topic: "day-consumption/gas",
        endpoint: Endpoint::Today,
        device: Device::Gas,
        name: "Gas consumption today",
        unit: Some("m³"),
        device_class: Some("gas"),
        state_class: Some("total_increasing"),
        precision: Some(3),
        non_negative: true,
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "electricity1_cost",
        field: "electricity1_cost",
        topic: "day-consumption/electricity1_cost",
        name: "Electricity cost today",
        tariff: Some(Tariff::One),
        ..DAY_COST
    },
    Sensor {
        key: "electricity2_cost",
        field: "electricity2_cost",
        topic: "day-consumption/electricity2_cost",
        name: "Electricity cost today",
        tariff: Some(Tariff::Two),
        ..DAY_COST
    },
    Sensor {
        key: "fixed_cost",
        field: "fixed_cost",
        topic: "day-consumption/fixed_cost",
        name: "Fixed cost today",
        enabled: false,
        ..DAY_COST
    },
    Sensor {
        key: "total_cost",
        on_page: true,
        field: "total_cost",
        topic: "day-consumption/total_cost",
        name: "Total cost today",
        ..DAY_COST
    },
    Sensor {
        key: "gas_cost",
        field: "gas_cost",
        topic: "day-consumption/gas_cost",
        device: Device::Gas,
        name: "Gas cost today",
        ..DAY_COST
    },
    Sensor {
        key: "energy_supplier_price_electricity_delivered_1",
        field: "energy_supplier_price_electricity_delivered_1",
        topic: "day-consumption/energy_supplier_price_electricity_delivered_1",
        name: "Electricity price",
        tariff: Some(Tariff::One),
        ..PRICE
    },
    Sensor {
        key: "energy_supplier_price_electricity_delivered_2",
        field: "energy_supplier_price_electricity_delivered_2",
        topic: "day-consumption/energy_supplier_price_electricity_delivered_2",
        name: "Electricity price",
        tariff: Some(Tariff::Two),
        ..PRICE
    },
    Sensor {
        key: "energy_supplier_price_electricity_returned_1",
        field: "energy_supplier_price_electricity_returned_1",
        topic: "day-consumption/energy_supplier_price_electricity_returned_1",
        name: "Return price",
        tariff: Some(Tariff::One),
        ..PRICE
    },
    Sensor {
        key: "energy_supplier_price_electricity_returned_2",
        field: "energy_supplier_price_electricity_returned_2",
        topic: "day-consumption/energy_supplier_price_electricity_returned_2",
        name: "Return price",
        tariff: Some(Tariff::Two),
        ..PRICE
    },
    Sensor {
        key: "energy_supplier_price_gas",
        field: "energy_supplier_price_gas",
        topic: "day-consumption/energy_supplier_price_gas",
        endpoint: Endpoint::Today,
        device: Device::Gas,
        name: "Gas price",
        unit: Some("EUR/m³"),
        precision: Some(5),
        enabled: false,
        ..Sensor::DEFAULT
    },
    // Belgian capacity tariff: DSMR-reader's own quarter-hour peak.
    Sensor {
        key: "quarter_hour_peak",
        field: "average_delivered",
        topic: "consumption/quarter-hour-peak-electricity/average_delivered",
        endpoint: Endpoint::Peak,
        name: "Quarter-hour peak",
        unit: Some("kW"),
        device_class: Some("power"),
        state_class: Some("measurement"),
        precision: Some(3),
        non_negative: true,
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "quarter_hour_peak_start",
        field: "read_at_start",
        topic: "consumption/quarter-hour-peak-electricity/read_at_start",
        endpoint: Endpoint::Peak,
        kind: Kind::Timestamp,
        name: "Quarter-hour peak start",
        device_class: Some("timestamp"),
        enabled: false,
        diagnostic: true,
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "quarter_hour_peak_end",
        field: "read_at_end",
        topic: "consumption/quarter-hour-peak-electricity/read_at_end",
        endpoint: Endpoint::Peak,
        kind: Kind::Timestamp,
        name: "Quarter-hour peak end",
        device_class: Some("timestamp"),
        enabled: false,
        diagnostic: true,
        ..Sensor::DEFAULT
    },
    // Belgian capacity tariff, the meter's own figures from its telegram (e-MUCS meters only).
    Sensor {
        key: "current_average_demand",
        field: "current_average_demand",
        topic: "telegram/current_average_demand",
        endpoint: Endpoint::Telegram,
        name: "Current average demand",
        ..POWER
    },
    Sensor {
        key: "maximum_demand_month",
        field: "maximum_demand_month",
        topic: "telegram/maximum_demand_month",
        endpoint: Endpoint::Telegram,
        name: "Maximum demand this month",
        ..POWER
    },
    Sensor {
        key: "maximum_demand_month_timestamp",
        field: "maximum_demand_month_timestamp",
        topic: "telegram/maximum_demand_month_timestamp",
        endpoint: Endpoint::Telegram,
        kind: Kind::Timestamp,
        name: "Maximum demand this month time",
        device_class: Some("timestamp"),
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "capacity_tariff_basis",
        field: "capacity_tariff_basis",
        topic: "telegram/capacity_tariff_basis",
        endpoint: Endpoint::Telegram,
        name: "Capacity tariff basis",
        ..POWER
    },
    // Every M-Bus device but the one DSMR-reader reads as gas: channel n, by kind.
    Sensor {
        key: "mbus1_gas",
        field: "mbus1_gas",
        topic: "telegram/mbus1/gas",
        device: Device::MBus(1),
        ..MBUS_GAS
    },
    Sensor {
        key: "mbus1_water",
        field: "mbus1_water",
        topic: "telegram/mbus1/water",
        device: Device::MBus(1),
        ..MBUS_WATER
    },
    Sensor {
        key: "mbus1_heat",
        field: "mbus1_heat",
        topic: "telegram/mbus1/heat",
        device: Device::MBus(1),
        ..MBUS_HEAT
    },
    Sensor {
        key: "mbus1_heat_kwh",
        field: "mbus1_heat_kwh",
        topic: "telegram/mbus1/heat_kwh",
        device: Device::MBus(1),
        ..MBUS_HEAT_KWH
    },
    Sensor {
        key: "mbus1_timestamp",
        field: "mbus1_timestamp",
        topic: "telegram/mbus1/timestamp",
        device: Device::MBus(1),
        ..MBUS_TIME
    },
    Sensor {
        key: "mbus2_gas",
        field: "mbus2_gas",
        topic: "telegram/mbus2/gas",
        device: Device::MBus(2),
        ..MBUS_GAS
    },
    Sensor {
        key: "mbus2_water",
        field: "mbus2_water",
        topic: "telegram/mbus2/water",
        device: Device::MBus(2),
        ..MBUS_WATER
    },
    Sensor {
        key: "mbus2_heat",
        field: "mbus2_heat",
        topic: "telegram/mbus2/heat",
        device: Device::MBus(2),
        ..MBUS_HEAT
    },
    Sensor {
        key: "mbus2_heat_kwh",
        field: "mbus2_heat_kwh",
        topic: "telegram/mbus2/heat_kwh",
        device: Device::MBus(2),
        ..MBUS_HEAT_KWH
    },
    Sensor {
        key: "mbus2_timestamp",
        field: "mbus2_timestamp",
        topic: "telegram/mbus2/timestamp",
        device: Device::MBus(2),
        ..MBUS_TIME
    },
    Sensor {
        key: "mbus3_gas",
        field: "mbus3_gas",
        topic: "telegram/mbus3/gas",
        device: Device::MBus(3),
        ..MBUS_GAS
    },
    Sensor {
        key: "mbus3_water",
        field: "mbus3_water",
        topic: "telegram/mbus3/water",
        device: Device::MBus(3),
        ..MBUS_WATER
    },
    Sensor {
        key: "mbus3_heat",
        field: "mbus3_heat",
        topic: "telegram/mbus3/heat",
        device: Device::MBus(3),
        ..MBUS_HEAT
    },
    Sensor {
        key: "mbus3_heat_kwh",
        field: "mbus3_heat_kwh",
        topic: "telegram/mbus3/heat_kwh",
        device: Device::MBus(3),
        ..MBUS_HEAT_KWH
    },
    Sensor {
        key: "mbus3_timestamp",
        field: "mbus3_timestamp",
        topic: "telegram/mbus3/timestamp",
        device: Device::MBus(3),
        ..MBUS_TIME
    },
    Sensor {
        key: "mbus4_gas",
        field: "mbus4_gas",
        topic: "telegram/mbus4/gas",
        device: Device::MBus(4),
        ..MBUS_GAS
    },
    Sensor {
        key: "mbus4_water",
        field: "mbus4_water",
        topic: "telegram/mbus4/water",
        device: Device::MBus(4),
        ..MBUS_WATER
    },
    Sensor {
        key: "mbus4_heat",
        field: "mbus4_heat",
        topic: "telegram/mbus4/heat",
        device: Device::MBus(4),
        ..MBUS_HEAT
    },
    Sensor {
        key: "mbus4_heat_kwh",
        field: "mbus4_heat_kwh",
        topic: "telegram/mbus4/heat_kwh",
        device: Device::MBus(4),
        ..MBUS_HEAT_KWH
    },
    Sensor {
        key: "mbus4_timestamp",
        field: "mbus4_timestamp",
        topic: "telegram/mbus4/timestamp",
        device: Device::MBus(4),
        ..MBUS_TIME
    },
    // The DSMR-reader server itself.
    Sensor {
        key: "version",
        field: "version",
        topic: "dsmr-reader/version",
        endpoint: Endpoint::Version,
        kind: Kind::Text,
        device: Device::Reader,
        name: "Version",
        diagnostic: true,
        bridge_availability_only: true,
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "monitoring_problems",
        field: "problems",
        topic: "dsmr-reader/problems",
        endpoint: Endpoint::Monitoring,
        kind: Kind::Integer,
        device: Device::Reader,
        name: "Monitoring problems",
        diagnostic: true,
        ..Sensor::DEFAULT
    },
    Sensor {
        key: "reachable",
        field: "",
        topic: "dsmr-reader/status",
        endpoint: Endpoint::Health,
        kind: Kind::Text,
        device: Device::Reader,
        platform: Platform::BinarySensor,
        name: "Reachable",
        device_class: Some("connectivity"),
        diagnostic: true,
        bridge_availability_only: true,
        ..Sensor::DEFAULT
    },
];

/// An entry of `SENSORS`. The meter state, the topics, the register guard and the status page
/// index their tables by it; only the catalog makes one, so it always names an entry, and a
/// `PerKey` table has a slot for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(usize);

impl Key {
    /// Every entry, in table order.
    pub(crate) fn all() -> impl Iterator<Item = Key> + Clone {
        (0..SENSORS.len()).map(Key)
    }

    /// The entry whose `Sensor::key` this is.
    pub(crate) fn of(key: &str) -> Option<Key> {
        SENSORS.iter().position(|s| s.key == key).map(Key)
    }

    /// The meter registers (`register_max_per_hour`).
    pub(crate) fn registers() -> impl Iterator<Item = Key> {
        Self::all().filter(|k| k.sensor().register_max_per_hour.is_some())
    }

    /// DSMR-reader's reachability.
    pub(crate) fn health() -> Key {
        Self::all()
            .find(|k| k.sensor().endpoint == Endpoint::Health)
            .expect("the table has a Health entry")
    }

    pub fn sensor(self) -> &'static Sensor {
        &SENSORS[self.0]
    }
}

/// One `T` per entry of `SENSORS`, indexed by `Key`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PerKey<T>(Vec<T>);

impl<T> PerKey<T> {
    pub(crate) fn new(mut value: impl FnMut(Key) -> T) -> Self {
        Self(Key::all().map(&mut value).collect())
    }
}

impl<T> std::ops::Index<Key> for PerKey<T> {
    type Output = T;

    fn index(&self, key: Key) -> &T {
        &self.0[key.0]
    }
}

impl<T> std::ops::IndexMut<Key> for PerKey<T> {
    fn index_mut(&mut self, key: Key) -> &mut T {
        &mut self.0[key.0]
    }
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
            let s = Key::of(key).unwrap().sensor();
            assert_eq!(s.topic, format!("reading/{key}"));
            assert_eq!(s.unit, Some("kWh"));
            assert_eq!(s.device_class, Some("energy"));
            assert_eq!(s.state_class, Some("total_increasing"));
            assert!(s.register_max_per_hour.is_some());
        }
        let gas = Key::of("gas_delivered").unwrap().sensor();
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
                assert!(s.tariff == Some(Tariff::Active) && s.unit.is_none());
                assert!(s.state_class.is_none());
            }
        }
        assert!(
            SENSORS.iter().all(|s| s.announce
                || s.register_max_per_hour.is_some()
                || s.kind == Kind::Timestamp)
        );
    }

    /// Every cost of the day is a daily `total` (Home Assistant refuses `last_reset` on any other
    /// state class), and only those reset.
    #[test]
    fn day_costs_are_totals_reset_daily() {
        let daily: Vec<&str> = SENSORS
            .iter()
            .filter(|s| s.resets == Some(Reset::Daily))
            .map(|s| s.key)
            .collect();
        assert_eq!(
            daily,
            [
                "electricity1_cost",
                "electricity2_cost",
                "fixed_cost",
                "total_cost",
                "gas_cost"
            ]
        );
        for s in SENSORS.iter().filter(|s| s.resets.is_some()) {
            assert_eq!(s.state_class, Some("total"), "{}", s.key);
            assert_eq!(s.endpoint, Endpoint::Today, "{}", s.key);
            assert!(s.announce, "{}", s.key);
        }
    }

    /// `tariff` agrees with the tariff number in the key, and every DSMR-reader value per tariff
    /// is marked.
    #[test]
    fn tariff_values_are_marked_with_their_tariff() {
        for s in SENSORS {
            let digits: String = s.key.chars().filter(char::is_ascii_digit).collect();
            let per_tariff =
                s.key.starts_with("electricity") || s.key.contains("price_electricity");
            match s.tariff {
                Some(Tariff::One) => assert_eq!(digits, "1", "{}", s.key),
                Some(Tariff::Two) => assert_eq!(digits, "2", "{}", s.key),
                Some(Tariff::Active) => assert_eq!(s.key, "electricity_tariff"),
                None => assert!(!per_tariff || digits.is_empty(), "{} has no tariff", s.key),
            }
        }
        let register = Key::of("electricity_delivered_2").unwrap().sensor();
        assert_eq!(
            register.name_for(TariffConvention::Dutch),
            "Energy consumption (tariff 2, normal)"
        );
        assert_eq!(
            register.name_for(TariffConvention::Belgian),
            "Energy consumption (tariff 2, night)"
        );
    }

    /// What cannot be negative is marked so; money and prices can be (feed-in, dynamic tariffs).
    #[test]
    fn impossible_negatives_are_marked() {
        for s in SENSORS {
            let physical = matches!(
                s.device_class,
                Some("power" | "voltage" | "current" | "energy" | "gas")
            );
            if physical && s.register_max_per_hour.is_none() {
                assert!(s.non_negative, "{} may go negative", s.key);
            }
            if s.unit.is_some_and(|u| u.starts_with("EUR")) {
                assert!(!s.non_negative, "{} is money", s.key);
            }
        }
    }

    /// DSMR-reader's own split topics name the field: a typo in either shows here.
    #[test]
    fn fields_match_dsmr_readers_topics() {
        for s in SENSORS.iter().filter(|s| s.endpoint == Endpoint::Today) {
            assert_eq!(Some(s.field), s.topic.rsplit('/').next(), "{}", s.key);
        }
        for s in SENSORS.iter().filter(|s| s.topic.starts_with("reading/")) {
            assert_eq!(s.topic, format!("reading/{}", s.field), "{}", s.key);
            assert_eq!(s.endpoint, Endpoint::Reading, "{}", s.key);
        }
        for s in SENSORS
            .iter()
            .filter(|s| s.topic.starts_with("meter-stats/"))
        {
            assert_eq!(s.topic, format!("meter-stats/{}", s.field), "{}", s.key);
            assert_eq!(s.endpoint, Endpoint::MeterStats, "{}", s.key);
        }
    }
}
