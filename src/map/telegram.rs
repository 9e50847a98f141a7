//! Map stage, the raw P1 telegram that DSMR-reader's meter statistics carry: the meters'
//! equipment identifiers, so Home Assistant devices survive restarts, URL changes and upgrades
//! and a swapped meter becomes a new device; and what DSMR-reader itself does not keep, the
//! Belgian capacity-tariff lines and every M-Bus device (`TelegramReadings`).
//!
//! The bridge parses the telegram itself rather than with a crate. The registry's candidates
//! were checked against `tests/fixtures/telegram_*.txt`: `dsmr5` 0.4 rejects the Belgian lines
//! (`1-0:1.4.0`, `1-0:1.6.0`, `0-0:98.1.0` are `UnknownObis`), reads M-Bus ids only as
//! `0-n:96.1.0` (Belgian meters send `96.1.1`), has no `24.2.3`, drops a reading's unit (GJ
//! or m³ cannot be told apart) and needs the CRC and a 2 KiB buffer; `dsmr-parse` 0.4 keeps
//! one M-Bus device (`gas_*` fields) and no Belgian line. Neither has had a release in a
//! year. DSMR-reader has checked the CRC already; what is left is a few OBIS lines, here, pure
//! and fuzzed (`tests::no_input_panics`).

use std::sync::Arc;

use time::OffsetDateTime;
use tracing::warn;

use super::catalog::{Device, TariffConvention};

/// Device identifiers (`dsmrbridge_<id>`) and what the telegram says about the meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MeterIdentity {
    pub(crate) electricity: Arc<str>,
    pub(crate) gas: Arc<str>,
    pub(crate) reader: Arc<str>,
    /// Equipment ids as printed on the meters, when the telegram has them.
    pub(crate) electricity_serial: Option<String>,
    pub(crate) gas_serial: Option<String>,
    /// Three-letter manufacturer code from the telegram header (`/XMX5...` → `XMX`).
    pub(crate) manufacturer_code: Option<String>,
    /// `1-3:0.2.8`, e.g. `50`.
    pub(crate) dsmr_version: Option<String>,
    /// What tariff 1 and 2 mean: Belgian telegrams carry `0-0:96.1.4` (e-MUCS version), Dutch
    /// ones `1-3:0.2.8` (DSMR version).
    pub(crate) tariffs: TariffConvention,
    /// M-Bus channels 1–4.
    pub(crate) mbus: [MBusIdentity; 4],
}

/// An M-Bus device's identity: `dsmrbridge_<id>` from its equipment id, and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MBusIdentity {
    pub(crate) id: Arc<str>,
    pub(crate) serial: Option<String>,
    pub(crate) kind: Option<MBusKind>,
}

impl MeterIdentity {
    /// Identities used until (or unless) the telegram names the meters.
    pub(crate) fn fallback(instance: &str) -> Self {
        let instance = sanitize(instance);
        Self {
            electricity: Arc::from(format!("dsmrbridge_{instance}_electricity")),
            gas: Arc::from(format!("dsmrbridge_{instance}_gas")),
            reader: Arc::from(format!("dsmrbridge_{instance}_reader")),
            electricity_serial: None,
            gas_serial: None,
            manufacturer_code: None,
            dsmr_version: None,
            tariffs: TariffConvention::default(),
            mbus: [1, 2, 3, 4].map(|n| MBusIdentity {
                id: Arc::from(format!("dsmrbridge_{instance}_mbus{n}")),
                serial: None,
                kind: None,
            }),
        }
    }

    pub(crate) fn id_of(&self, device: Device) -> &Arc<str> {
        match device {
            Device::Electricity => &self.electricity,
            Device::Gas => &self.gas,
            Device::Reader => &self.reader,
            Device::MBus(n) => &self.mbus[usize::from(n.clamp(1, 4) - 1)].id,
        }
    }

    /// Whether the telegram named this device (its id is not the fallback one).
    pub(crate) fn is_identified(&self, device: Device) -> bool {
        match device {
            Device::Electricity => self.electricity_serial.is_some(),
            Device::Gas => self.gas_serial.is_some(),
            Device::Reader => true,
            Device::MBus(n) => self.mbus[usize::from(n.clamp(1, 4) - 1)].serial.is_some(),
        }
    }

    /// Reads the telegram; what it lacks is kept from `current`.
    pub(crate) fn from_telegram(telegram: &str, current: &MeterIdentity) -> Self {
        let mut found = current.clone();
        let mut tariffs = None;
        for line in telegram.lines().map(str::trim) {
            // Both version lines in one telegram: the Belgian one decides.
            if line.starts_with(BELGIAN_VERSION) {
                tariffs = Some(TariffConvention::Belgian);
            } else if line.starts_with(DUTCH_VERSION) && tariffs.is_none() {
                tariffs = Some(TariffConvention::Dutch);
            }
            if let Some(header) = line.strip_prefix('/') {
                let code: String = header.chars().take(3).collect();
                if code.len() == 3 && code.chars().all(|c| c.is_ascii_alphanumeric()) {
                    found.manufacturer_code = Some(code);
                }
            } else if let Some(value) = obis_value(line, "0-0:96.1.1") {
                if let Some(serial) = equipment_id(value) {
                    found.electricity = Arc::from(format!("dsmrbridge_{}", sanitize(&serial)));
                    found.electricity_serial = Some(serial);
                }
            } else if let Some(value) = obis_value(line, "1-3:0.2.8") {
                if !value.is_empty()
                    && value.len() <= 8
                    && value.chars().all(|c| c.is_ascii_digit())
                {
                    found.dsmr_version = Some(value.to_owned());
                }
            } else if let Some(value) = gas_equipment_line(line)
                && let Some(serial) = equipment_id(value)
            {
                found.gas = Arc::from(format!("dsmrbridge_{}", sanitize(&serial)));
                found.gas_serial = Some(serial.clone());
                if let Some((channel, _, _)) = mbus_line(line) {
                    let slot = &mut found.mbus[usize::from(channel - 1)];
                    slot.id = found.gas.clone();
                    slot.serial = Some(serial);
                }
            } else if let Some((channel, "24.1.0", body)) = mbus_line(line) {
                found.mbus[usize::from(channel - 1)].kind = body
                    .strip_prefix('(')
                    .and_then(|b| b.strip_suffix(')'))
                    .and_then(|t| t.parse().ok())
                    .and_then(MBusKind::from_device_type);
            }
        }
        if let Some(tariffs) = tariffs {
            found.tariffs = tariffs;
        }
        // DSMR-reader's gas device is the last M-Bus id; when that device is no gas meter
        // (`TelegramProblem::GasDeviceIsNot`) it still gets a device of its own, told apart.
        for slot in &mut found.mbus {
            if let Some(kind) = slot.kind
                && kind != MBusKind::Gas
                && slot.serial.is_some()
                && slot.serial == found.gas_serial
            {
                slot.id = Arc::from(format!("{}_{}", found.gas, kind.as_str()));
            }
        }
        found
    }

    /// The kind of the M-Bus device DSMR-reader reads as its gas meter (the last one), when the
    /// telegram says it is no gas meter: DSMR-reader's "gas" values are then that meter's.
    pub(crate) fn gas_device_is_not_gas(&self) -> Option<MBusKind> {
        self.mbus
            .iter()
            .find(|m| m.serial.is_some() && m.serial == self.gas_serial)
            .and_then(|m| m.kind)
            .filter(|&kind| kind != MBusKind::Gas)
    }

    /// `DSMR 5.0` from `50`, as meters print it.
    pub(crate) fn dsmr_model(&self) -> Option<String> {
        let v = self.dsmr_version.as_deref()?;
        match v.len() {
            2 => Some(format!("DSMR {}.{}", &v[..1], &v[1..])),
            _ => Some(format!("DSMR {v}")),
        }
    }

    pub(crate) fn manufacturer(&self) -> Option<&'static str> {
        Some(match self.manufacturer_code.as_deref()? {
            "ISK" => "Iskra",
            "KFM" => "Kaifa",
            "KMP" => "Kamstrup",
            "LGF" | "LGB" => "Landis+Gyr",
            "SAG" | "Ene" => "Sagemcom",
            "XMX" => "Xemex",
            "FLU" => "Fluvius",
            "ELL" => "Elster",
            _ => return None,
        })
    }
}

/// The version line of Dutch (DSMR) telegrams.
const DUTCH_VERSION: &str = "1-3:0.2.8(";
/// The version line of Belgian (Fluvius e-MUCS) telegrams.
const BELGIAN_VERSION: &str = "0-0:96.1.4(";

/// `0-0:96.1.1(4530...)` → `4530...` for the given OBIS code.
fn obis_value<'a>(line: &'a str, code: &str) -> Option<&'a str> {
    line.strip_prefix(code)?
        .strip_prefix('(')?
        .split(')')
        .next()
}

/// M-Bus channels 1–4 carry the gas meter's id as `0-n:96.1.0` (NL) or `0-n:96.1.1` (BE).
/// Matched without formatting: this runs on every line of every poll's telegram.
fn gas_equipment_line(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("0-")?;
    let channel = rest.as_bytes().first()?;
    if !(b'1'..=b'4').contains(channel) {
        return None;
    }
    let rest = &rest[1..];
    rest.strip_prefix(":96.1.0(")
        .or_else(|| rest.strip_prefix(":96.1.1("))?
        .split(')')
        .next()
}

/// A hash of the telegram lines that identify the meters (header, equipment ids, DSMR or
/// e-MUCS version). The identity is parsed again only when it changes, not on every poll.
pub(crate) fn identity_fingerprint(telegram: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for line in telegram.lines().map(str::trim) {
        if line.starts_with('/')
            || line.starts_with("0-0:96.1.1(")
            || line.starts_with(DUTCH_VERSION)
            || line.starts_with(BELGIAN_VERSION)
            || gas_equipment_line(line).is_some()
            || mbus_line(line).is_some_and(|(_, code, _)| code == "24.1.0")
        {
            line.hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Most meters send their id hex-encoded (`4530303...` is `E00...`); show it decoded when it is
/// plain text, else as sent.
fn equipment_id(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > 96 || !raw.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let decoded = raw
        .len()
        .is_multiple_of(2)
        .then(|| {
            (0..raw.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&raw[i..i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|s| s.len() >= 4 && s.chars().all(|c| c.is_ascii_alphanumeric()));
    Some(decoded.unwrap_or_else(|| raw.to_owned()))
}

/// Keeps what Home Assistant accepts in ids and topics: `[A-Za-z0-9_-]`.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What an M-Bus device is, by its device type (`0-n:24.1.0`, EN 13757-3 table 3). Only the
/// kinds Home Assistant's Energy dashboard takes are mapped; any other type (warm water 0x06,
/// cooling, electricity sub-meters...) is reported once and gets no entity, since its unit and
/// meaning would be a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MBusKind {
    Gas,
    /// Heat meter, volume measured at the return (0x04) or at the inlet (0x0C): both count
    /// heat energy.
    Heat,
    Water,
}

impl MBusKind {
    fn from_device_type(device_type: u16) -> Option<Self> {
        match device_type {
            3 => Some(Self::Gas),
            4 | 0x0C => Some(Self::Heat),
            7 => Some(Self::Water),
            _ => None,
        }
    }

    pub(crate) fn device_name(self) -> &'static str {
        match self {
            Self::Gas => "Gas meter",
            Self::Heat => "Heat meter",
            Self::Water => "Water meter",
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Gas => "gas",
            Self::Heat => "heat",
            Self::Water => "water",
        }
    }
}

/// An M-Bus channel (`0-1` … `0-4`) as the telegram describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MBusChannel {
    /// `0-n:24.1.0`, the EN 13757-3 device type.
    pub(crate) device_type: Option<u16>,
    /// `0-n:96.1.0` (NL) or `0-n:96.1.1` (BE), as sent (usually hex-encoded text).
    pub(crate) equipment_id: Option<String>,
    /// `0-n:24.2.1` or `0-n:24.2.3`: the register, its unit and when the device read it.
    pub(crate) reading: Option<MBusReading>,
}

impl MBusChannel {
    pub(crate) fn kind(&self) -> Option<MBusKind> {
        self.device_type.and_then(MBusKind::from_device_type)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MBusReading {
    /// Decimal text without the meter's leading zeros (`11268.833`).
    pub(crate) value: String,
    /// As the meter prints it: `m3`, `GJ`, `kWh`.
    pub(crate) unit: String,
    pub(crate) at: OffsetDateTime,
}

/// One of the Belgian (e-MUCS) monthly maxima of `0-0:98.1.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MonthlyMaximum {
    /// The start of the month after the one the maximum belongs to, as the meter stamps it.
    pub(crate) month: OffsetDateTime,
    pub(crate) at: OffsetDateTime,
    pub(crate) kw: f64,
}

/// What is wrong with a telegram, for one warning per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TelegramProblem {
    /// No `/` header or no `!` trailer: not a P1 telegram.
    NotATelegram,
    /// A line the bridge reads, whose value does not parse.
    BrokenLine(&'static str),
    /// An M-Bus device of a type the bridge does not map.
    UnknownMBusType(u16),
    /// An M-Bus device without a type, or a reading in a unit its kind never has.
    UnknownMBusUnit(MBusKind),
    /// An M-Bus channel with a device type but no reading, or a reading but no type.
    IncompleteMBus,
    /// DSMR-reader stores this M-Bus device's reading as its gas reading, but it is no gas
    /// meter: DSMR-reader takes the last reading line of the telegram, whatever the device. Its
    /// gas values would be wrong ones (`MeterIdentity::gas_device_is_not_gas`).
    GasDeviceIsNot(MBusKind),
}

impl TelegramProblem {
    /// Logs the problem; the caller does so once per kind.
    pub(crate) fn warn(self) {
        match self {
            Self::NotATelegram => warn!(
                "Meter statistics carry a telegram that is not a P1 telegram; its Belgian and M-Bus values are not published"
            ),
            Self::BrokenLine(obis) => warn!(
                obis,
                "Telegram line does not parse; its value is not published"
            ),
            Self::UnknownMBusType(device_type) => warn!(
                device_type,
                "M-Bus device of a type the bridge does not know (EN 13757-3: 3 gas, 4 or 12 heat, 7 water); no entity for it"
            ),
            Self::UnknownMBusUnit(kind) => warn!(
                kind = kind.as_str(),
                "M-Bus reading in a unit the bridge does not know for its kind; not published"
            ),
            Self::IncompleteMBus => warn!(
                "M-Bus device in the telegram without its type or its reading; no entity for it"
            ),
            Self::GasDeviceIsNot(kind) => warn!(
                kind = kind.as_str(),
                "DSMR-reader reads this M-Bus device as its gas meter (the last reading in the telegram); its gas values are not published, the device gets a device of its own. Only DSMR-reader can change what it reads (its extra device channel, for Belgian meters)"
            ),
        }
    }
}

/// What the telegram says beyond DSMR-reader's own fields: the Belgian capacity-tariff lines
/// and every M-Bus device. Lines the meter does not send are `None`: a Dutch meter sends no
/// Belgian line, and that is no problem.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TelegramReadings {
    /// `1-0:1.4.0`, the running quarter-hour average demand in kW, as decimal text.
    pub(crate) average_demand: Option<String>,
    /// `1-0:1.6.0`: this month's maximum demand (kW text) and when it happened.
    pub(crate) month_maximum: Option<(OffsetDateTime, String)>,
    /// `0-0:98.1.0`: the monthly maxima of the past months, as the meter keeps them (up to 13).
    pub(crate) monthly_maxima: Option<Vec<MonthlyMaximum>>,
    /// Channels 1–4.
    pub(crate) mbus: [MBusChannel; 4],
    pub(crate) problems: Vec<TelegramProblem>,
}

/// Fluvius bills the capacity tariff on at least 2.5 kW per month (DOCS.md names the source).
pub(crate) const CAPACITY_TARIFF_FLOOR_KW: f64 = 2.5;
/// The bill's average runs over the last 12 months.
const CAPACITY_TARIFF_MONTHS: usize = 12;

impl TelegramReadings {
    /// Reads every line once; a line that does not parse is a problem, never a panic, and the
    /// other lines still count.
    pub(crate) fn parse(telegram: &str) -> Self {
        let mut out = Self::default();
        let text = telegram.trim();
        if !text.starts_with('/') || !text.contains('!') {
            out.problems.push(TelegramProblem::NotATelegram);
            return out;
        }
        for line in text.lines().map(str::trim) {
            if let Some(body) = line.strip_prefix("1-0:1.4.0(") {
                match kw_value(body.strip_suffix(')')) {
                    Some(v) => out.average_demand = Some(v),
                    None => out.problem(TelegramProblem::BrokenLine("1-0:1.4.0")),
                }
            } else if let Some(body) = line.strip_prefix("1-0:1.6.0") {
                match groups(body).as_deref() {
                    // No quarter hour closed yet this month.
                    Some([at, _]) if is_no_time(at) => {}
                    Some([at, value]) => match (meter_time(at), kw_value(Some(value))) {
                        (Some(at), Some(v)) => out.month_maximum = Some((at, v)),
                        _ => out.problem(TelegramProblem::BrokenLine("1-0:1.6.0")),
                    },
                    _ => out.problem(TelegramProblem::BrokenLine("1-0:1.6.0")),
                }
            } else if let Some(body) = line.strip_prefix("0-0:98.1.0") {
                match monthly_maxima(body) {
                    Some(maxima) => out.monthly_maxima = Some(maxima),
                    None => out.problem(TelegramProblem::BrokenLine("0-0:98.1.0")),
                }
            } else if let Some((channel, code, body)) = mbus_line(line) {
                let slot = &mut out.mbus[usize::from(channel - 1)];
                match code {
                    "24.1.0" => match body.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
                        Some(t)
                            if !t.is_empty()
                                && t.len() <= 3
                                && t.bytes().all(|b| b.is_ascii_digit()) =>
                        {
                            slot.device_type = t.parse().ok();
                        }
                        // An empty type: no device on this channel.
                        Some("") => {}
                        _ => out.problem(TelegramProblem::BrokenLine("0-n:24.1.0")),
                    },
                    "96.1.0" | "96.1.1" => {
                        if let Some(id) = body.strip_prefix('(').and_then(|b| b.strip_suffix(')'))
                            && !id.is_empty()
                        {
                            slot.equipment_id = Some(id.to_owned());
                        }
                    }
                    "24.2.1" | "24.2.3"
                        if groups(body)
                            .is_some_and(|g| g.first().is_some_and(|t| is_no_time(t))) => {}
                    "24.2.1" | "24.2.3" => match mbus_reading(body) {
                        Some(reading) => slot.reading = Some(reading),
                        None => out.problem(TelegramProblem::BrokenLine(if code == "24.2.3" {
                            "0-n:24.2.3"
                        } else {
                            "0-n:24.2.1"
                        })),
                    },
                    _ => {}
                }
            }
        }
        for channel in &out.mbus {
            match (channel.device_type, channel.kind(), &channel.reading) {
                (None, _, None) => {}
                (Some(t), None, _) => {
                    out.problems.push(TelegramProblem::UnknownMBusType(t));
                }
                (Some(_), Some(_), None) | (None, _, Some(_)) => {
                    out.problems.push(TelegramProblem::IncompleteMBus);
                }
                (Some(_), Some(kind), Some(reading)) => {
                    if register_unit(kind, &reading.unit).is_none() {
                        out.problems.push(TelegramProblem::UnknownMBusUnit(kind));
                    }
                }
            }
        }
        out.problems.dedup();
        out
    }

    fn problem(&mut self, problem: TelegramProblem) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// The figure Fluvius bills the capacity tariff on: the average of the last 12 monthly
    /// maxima, each counted as at least 2.5 kW. With fewer months in the buffer (a new meter)
    /// the average of those there are. `None` without the buffer or with an empty one.
    pub(crate) fn capacity_tariff_basis(&self) -> Option<f64> {
        let mut maxima = self.monthly_maxima.clone()?;
        if maxima.is_empty() {
            return None;
        }
        maxima.sort_by_key(|m| std::cmp::Reverse(m.month));
        maxima.truncate(CAPACITY_TARIFF_MONTHS);
        let sum: f64 = maxima
            .iter()
            .map(|m| m.kw.max(CAPACITY_TARIFF_FLOOR_KW))
            .sum();
        Some(sum / maxima.len() as f64)
    }
}

/// The unit suffix of the catalog key a reading goes to, `None` when its unit is not one the
/// kind is published in (m³ for gas and water; GJ or kWh for heat).
pub(crate) fn register_unit(kind: MBusKind, unit: &str) -> Option<&'static str> {
    match (kind, unit) {
        (MBusKind::Gas | MBusKind::Water, "m3" | "m³") => Some(""),
        (MBusKind::Heat, "GJ") => Some(""),
        (MBusKind::Heat, "kWh") => Some("_kwh"),
        _ => None,
    }
}

/// `0-n:<code>(...)` with n in 1–4 → `(n, code, "(...)")`.
fn mbus_line(line: &str) -> Option<(u8, &str, &str)> {
    let rest = line.strip_prefix("0-")?;
    let channel = *rest.as_bytes().first()?;
    if !(b'1'..=b'4').contains(&channel) {
        return None;
    }
    let rest = rest.get(1..)?.strip_prefix(':')?;
    let open = rest.find('(')?;
    Some((channel - b'0', &rest[..open], &rest[open..]))
}

/// `(a)(b)(c)` → `["a", "b", "c"]`; `None` when it is not made of such groups.
fn groups(body: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('(')?;
        let close = inner.find(')')?;
        out.push(&inner[..close]);
        rest = &inner[close + 1..];
        if out.len() > 64 {
            return None;
        }
    }
    Some(out)
}

/// `(YYMMDDhhmmssX)(value*unit)` of an M-Bus reading.
fn mbus_reading(body: &str) -> Option<MBusReading> {
    let [at, value] = groups(body)?.try_into().ok()?;
    let (number, unit) = value.split_once('*')?;
    if unit.is_empty() || unit.len() > 8 || !unit.chars().all(|c| c.is_alphanumeric()) {
        return None;
    }
    Some(MBusReading {
        value: decimal(number)?,
        unit: unit.to_owned(),
        at: meter_time(at)?,
    })
}

/// The time e-MUCS meters print where there is none (no reading from an M-Bus device yet, no
/// maximum yet this month): `632525252525` (25th month, 25th hour), or all zeros.
fn is_no_time(text: &str) -> bool {
    matches!(
        text,
        "632525252525W"
            | "632525252525S"
            | "000101000000W"
            | "000101000000S"
            | "000000000000W"
            | "000000000000S"
    )
}

/// `03.566*kW` → `3.566`.
fn kw_value(group: Option<&str>) -> Option<String> {
    decimal(group?.strip_suffix("*kW")?)
}

/// `(count)(1-0:1.6.0)(1-0:1.6.0)` then per month `(month)(time)(value*kW)`.
fn monthly_maxima(body: &str) -> Option<Vec<MonthlyMaximum>> {
    let groups = groups(body)?;
    let (head, entries) = groups.split_at_checked(3)?;
    let count: usize = head[0].parse().ok()?;
    if count != entries.len() / 3 || !entries.len().is_multiple_of(3) || count > 13 {
        return None;
    }
    entries
        .chunks_exact(3)
        .map(|e| {
            let kw: f64 = kw_value(Some(e[2]))?.parse().ok()?;
            Some(MonthlyMaximum {
                month: meter_time(e[0])?,
                at: meter_time(e[1])?,
                kw,
            })
        })
        .collect()
}

/// The meter's decimal text without its leading zeros: `00.577` → `0.577`, `011268.833` →
/// `11268.833`. Digits with at most one point, 16 characters at most.
fn decimal(text: &str) -> Option<String> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    Some(match frac {
        Some(f) => format!("{int}.{f}"),
        None => int.to_owned(),
    })
}

/// `YYMMDDhhmmssX`, local time in the meter's zone: `W` winter (UTC+1), `S` summer (UTC+2),
/// as both Dutch and Belgian meters keep Central European time.
pub(crate) fn meter_time(text: &str) -> Option<OffsetDateTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 13 || !bytes[..12].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let offset = match bytes[12] {
        b'W' => time::UtcOffset::from_hms(1, 0, 0).ok()?,
        b'S' => time::UtcOffset::from_hms(2, 0, 0).ok()?,
        _ => return None,
    };
    let n = |i: usize| -> u8 { (bytes[i] - b'0') * 10 + (bytes[i + 1] - b'0') };
    let date = time::Date::from_calendar_date(
        2000 + i32::from(n(0)),
        time::Month::try_from(n(2)).ok()?,
        n(4),
    )
    .ok()?;
    let clock = time::Time::from_hms(n(6), n(8), n(10)).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TELEGRAM: &str = "/XMX5LGBBFFB123456789\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(261126140214W)\r\n0-0:96.1.1(12345678901234567890123456789000)\r\n0-1:24.1.0(003)\r\n0-1:96.1.0(12345678901234567890123456789001)\r\n!E08D\n";

    #[test]
    fn reads_ids_from_the_fake_datasource_telegram() {
        let id = MeterIdentity::from_telegram(TELEGRAM, &MeterIdentity::fallback("dsmr-bridge"));
        assert_eq!(
            id.electricity.as_ref(),
            "dsmrbridge_12345678901234567890123456789000"
        );
        assert_eq!(
            id.gas.as_ref(),
            "dsmrbridge_12345678901234567890123456789001"
        );
        assert_eq!(id.reader.as_ref(), "dsmrbridge_dsmr-bridge_reader");
        assert_eq!(id.manufacturer(), Some("Xemex"));
        assert_eq!(id.dsmr_model().as_deref(), Some("DSMR 5.0"));
    }

    #[test]
    fn hex_encoded_ids_are_decoded() {
        assert_eq!(
            equipment_id("4530303331303033303031363939353135").as_deref(),
            Some("E0031003001699515")
        );
        assert_eq!(equipment_id("12345678").as_deref(), Some("12345678"));
        assert_eq!(equipment_id("bad id"), None);
    }

    #[test]
    fn a_telegram_without_ids_keeps_the_fallback() {
        let fallback = MeterIdentity::fallback("home/meter");
        let id = MeterIdentity::from_telegram("/ISK5\r\n!0000\n", &fallback);
        assert_eq!(id.electricity.as_ref(), "dsmrbridge_home_meter_electricity");
        assert_eq!(id.manufacturer(), Some("Iskra"));
    }

    #[test]
    fn the_version_line_tells_a_belgian_meter_from_a_dutch_one() {
        let fallback = MeterIdentity::fallback("dsmr-bridge");
        let dutch = MeterIdentity::from_telegram(
            &crate::map::fixtures::fixture_text("telegram_fake_datasource_1.txt"),
            &fallback,
        );
        assert_eq!(dutch.tariffs, TariffConvention::Dutch);

        let telegram = crate::map::fixtures::fixture_text("telegram_belgian_fluvius.txt");
        let belgian = MeterIdentity::from_telegram(&telegram, &fallback);
        assert_eq!(belgian.tariffs, TariffConvention::Belgian);
        assert_eq!(belgian.manufacturer(), Some("Fluvius"));
        assert_eq!(
            belgian.electricity_serial.as_deref(),
            Some("1SAG3101021605")
        );
        assert_eq!(belgian.gas_serial.as_deref(), Some("7FLO2120107938"));
        assert_eq!(belgian.dsmr_version, None);
        assert_ne!(
            identity_fingerprint(&telegram),
            identity_fingerprint(TELEGRAM)
        );

        // A telegram without a version line (DSMR 2/3, or cut short) keeps what was known.
        let bare = MeterIdentity::from_telegram("/FLU5\\253770234_A\r\n!0000\n", &belgian);
        assert_eq!(bare.tariffs, TariffConvention::Belgian);
        assert_eq!(
            MeterIdentity::from_telegram("/ISK5\r\n!0000\n", &fallback).tariffs,
            TariffConvention::Dutch
        );
    }

    use crate::map::fixtures::fixture_text;

    fn parse(name: &str) -> TelegramReadings {
        TelegramReadings::parse(&fixture_text(name))
    }

    #[test]
    fn meter_times_carry_the_season_as_offset() {
        let winter = meter_time("261126140000W").unwrap();
        assert_eq!(winter.to_string(), "2026-11-26 14:00:00.0 +01:00:00");
        let summer = meter_time("260615123000S").unwrap();
        assert_eq!(summer.offset().whole_hours(), 2);
        for bad in [
            "261126140000",
            "261326140000W",
            "2611261400000W",
            "26112614000xW",
            "",
        ] {
            assert_eq!(meter_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals_lose_only_their_leading_zeros() {
        assert_eq!(decimal("00.577").as_deref(), Some("0.577"));
        assert_eq!(decimal("011268.833").as_deref(), Some("11268.833"));
        assert_eq!(decimal("000").as_deref(), Some("0"));
        for bad in ["", ".5", "1.", "1.2.3", "-1", "1e3", "00000000000000001.0"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_belgian_telegram_has_the_capacity_tariff_lines() {
        let t = parse("telegram_belgian_fluvius.txt");
        assert_eq!(t.problems, []);
        assert_eq!(t.average_demand.as_deref(), Some("0.577"));
        let (at, kw) = t.month_maximum.clone().unwrap();
        assert_eq!(kw, "3.566");
        assert_eq!(at, meter_time("261126093000W").unwrap());
        let maxima = t.monthly_maxima.clone().unwrap();
        assert_eq!(maxima.len(), 1);
        assert_eq!(maxima[0].kw, 4.332);
        assert_eq!(maxima[0].at, meter_time("261014124500W").unwrap());
        assert_eq!(t.capacity_tariff_basis(), Some(4.332));
        // The Belgian gas meter: type 3 on channel 1, its reading on 24.2.3.
        assert_eq!(t.mbus[0].kind(), Some(MBusKind::Gas));
        assert_eq!(t.mbus[0].reading.as_ref().unwrap().value, "11268.833");
    }

    /// Fluvius: the average of the last 12 monthly maxima, each at least 2.5 kW. The buffer's
    /// oldest (13th) month, 9.999 kW, is not among them.
    #[test]
    fn the_capacity_tariff_basis_is_the_floored_average_of_twelve_months() {
        let t = parse("telegram_belgian_capacity_history.txt");
        assert_eq!(t.problems, []);
        assert_eq!(t.monthly_maxima.as_ref().unwrap().len(), 13);
        let twelve = [
            4.332, 3.105, 2.5, 2.5, 2.64, 3.98, 5.21, 6.35, 7.125, 6.84, 5.905, 4.47,
        ];
        let expected = twelve.iter().sum::<f64>() / 12.0;
        let basis = t.capacity_tariff_basis().unwrap();
        assert!((basis - expected).abs() < 1e-9, "{basis} != {expected}");
        assert_eq!(format!("{basis:.3}"), "4.580");
        // The floor per month lifts August (1.870) and September (2.010): unfloored, and with
        // the floor applied to the average instead, the same months give 4.486 kW.
        let unfloored = (53.837_f64 / 12.0).max(CAPACITY_TARIFF_FLOOR_KW);
        assert_eq!(format!("{unfloored:.3}"), "4.486");
    }

    #[test]
    fn a_dutch_telegram_has_no_belgian_lines_and_no_problem() {
        let t = parse("telegram_fake_datasource_1.txt");
        assert_eq!(t.problems, []);
        assert_eq!(t.average_demand, None);
        assert_eq!(t.month_maximum, None);
        assert_eq!(t.capacity_tariff_basis(), None);
        assert_eq!(t.mbus[0].kind(), Some(MBusKind::Gas));
        assert!(t.mbus[1..].iter().all(|c| *c == MBusChannel::default()));
    }

    #[test]
    fn every_m_bus_device_is_read_with_its_kind_unit_and_time() {
        let t = parse("telegram_dutch_water_gas.txt");
        assert_eq!(t.problems, []);
        assert_eq!(t.mbus[0].kind(), Some(MBusKind::Water));
        let water = t.mbus[0].reading.clone().unwrap();
        assert_eq!(
            (water.value.as_str(), water.unit.as_str()),
            ("123.456", "m3")
        );
        assert_eq!(water.at, meter_time("261126140000W").unwrap());
        assert_eq!(t.mbus[1].kind(), Some(MBusKind::Gas));

        let heat = parse("telegram_dutch_heat.txt");
        assert_eq!(heat.problems, []);
        assert_eq!(heat.mbus[0].kind(), Some(MBusKind::Heat));
        let reading = heat.mbus[0].reading.clone().unwrap();
        assert_eq!(register_unit(MBusKind::Heat, &reading.unit), Some(""));
        assert_eq!(register_unit(MBusKind::Heat, "kWh"), Some("_kwh"));
        assert_eq!(register_unit(MBusKind::Water, "GJ"), None);
    }

    #[test]
    fn unknown_types_and_broken_lines_are_problems_once_each() {
        let t = parse("telegram_dutch_unknown_mbus.txt");
        assert_eq!(t.problems, [TelegramProblem::UnknownMBusType(6)]);
        assert_eq!(t.mbus[0].kind(), None);
        assert_eq!(t.mbus[1].kind(), Some(MBusKind::Gas));

        let t = parse("telegram_broken_lines.txt");
        assert_eq!(
            t.problems,
            [
                TelegramProblem::BrokenLine("1-0:1.4.0"),
                TelegramProblem::BrokenLine("0-0:98.1.0"),
                TelegramProblem::BrokenLine("0-n:24.2.3"),
                TelegramProblem::IncompleteMBus,
            ]
        );
        // What does parse still counts.
        assert_eq!(t.average_demand, None);
        assert_eq!(t.month_maximum.as_ref().unwrap().1, "3.566");
        assert_eq!(t.capacity_tariff_basis(), None);

        // The time e-MUCS meters print where there is none: no value, no problem.
        let none = fixture_text("telegram_belgian_fluvius.txt")
            .replace("1-0:1.6.0(261126093000W)", "1-0:1.6.0(632525252525W)")
            .replace("0-1:24.2.3(261126140000W)", "0-1:24.2.3(632525252525W)");
        let t = TelegramReadings::parse(&none);
        assert_eq!(t.month_maximum, None);
        assert_eq!(t.mbus[0].reading, None);
        assert_eq!(t.problems, [TelegramProblem::IncompleteMBus]);

        for junk in ["", "hello", "{\"json\": 1}", "!0000"] {
            assert_eq!(
                TelegramReadings::parse(junk).problems,
                [TelegramProblem::NotATelegram],
                "{junk}"
            );
        }
    }

    #[test]
    fn m_bus_devices_are_identified_by_their_own_ids() {
        let fallback = MeterIdentity::fallback("x");
        let id =
            MeterIdentity::from_telegram(&fixture_text("telegram_dutch_water_gas.txt"), &fallback);
        assert_eq!(id.mbus[0].kind, Some(MBusKind::Water));
        assert_eq!(id.mbus[0].serial.as_deref(), Some("W0000000000000001"));
        assert_eq!(id.mbus[0].id.as_ref(), "dsmrbridge_W0000000000000001");
        assert_eq!(id.mbus[1].id, id.gas, "DSMR-reader's gas meter");
        assert_eq!(id.mbus[2].id.as_ref(), "dsmrbridge_x_mbus3");

        let swapped =
            MeterIdentity::from_telegram(&fixture_text("telegram_dutch_water_swapped.txt"), &id);
        assert_eq!(swapped.mbus[0].id.as_ref(), "dsmrbridge_W0000000000000002");
        assert_ne!(
            identity_fingerprint(&fixture_text("telegram_dutch_water_swapped.txt")),
            identity_fingerprint(&fixture_text("telegram_dutch_water_gas.txt"))
        );

        // Water last: DSMR-reader's "gas" is the water meter, which keeps a device of its own.
        let id =
            MeterIdentity::from_telegram(&fixture_text("telegram_dutch_gas_water.txt"), &fallback);
        assert_eq!(id.gas.as_ref(), "dsmrbridge_W0000000000000001");
        assert_eq!(id.mbus[1].id.as_ref(), "dsmrbridge_W0000000000000001_water");
        assert_eq!(
            id.mbus[0].id.as_ref(),
            "dsmrbridge_12345678901234567890123456789001"
        );
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        /// Lines of the fixtures with bytes changed, cut, repeated or shuffled, and anything.
        fn telegram() -> impl Strategy<Value = String> {
            let lines: Vec<String> = [
                "telegram_belgian_capacity_history.txt",
                "telegram_dutch_water_gas.txt",
                "telegram_dutch_heat.txt",
            ]
            .iter()
            .flat_map(|f| {
                fixture_text(f)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
            let line = prop_oneof![
                4 => prop::sample::select(lines.clone()),
                2 => (prop::sample::select(lines), any::<prop::sample::Index>(), any::<char>())
                    .prop_map(|(l, i, c)| {
                        let mut chars: Vec<char> = l.chars().collect();
                        let at = i.index(chars.len() + 1);
                        if at < chars.len() && c != '\n' { chars[at] = c } else { chars.truncate(at) }
                        chars.into_iter().collect()
                    }),
                1 => "0-[0-9]:(24.1.0|24.2.1|24.2.3|96.1.0)\\([0-9A-Za-z*.()]{0,30}",
                1 => "0-0:98.1.0(\\([0-9A-Za-z*.:-]{0,14}\\)){0,50}",
                1 => any::<String>(),
            ];
            prop::collection::vec(line, 0..60)
                .prop_map(|lines| format!("/X\r\n{}\r\n!0000\n", lines.join("\r\n")))
        }

        proptest! {
            #![proptest_config(crate::map::fixtures::arbitrary::config(512))]

            /// No input panics, and whatever is read is what the bridge may publish.
            #[test]
            fn no_input_panics(text in prop_oneof![telegram(), any::<String>()]) {
                let t = TelegramReadings::parse(&text);
                let _ = MeterIdentity::from_telegram(&text, &MeterIdentity::fallback("f"));
                let _ = identity_fingerprint(&text);
                if let Some(basis) = t.capacity_tariff_basis() {
                    prop_assert!(basis.is_finite() && basis >= CAPACITY_TARIFF_FLOOR_KW);
                }
                for text in t.average_demand.iter().chain(t.month_maximum.iter().map(|(_, v)| v)) {
                    prop_assert!(text.parse::<f64>().is_ok_and(|v| v >= 0.0), "{text}");
                }
                for reading in t.mbus.iter().filter_map(|c| c.reading.as_ref()) {
                    prop_assert!(reading.value.parse::<f64>().is_ok(), "{}", reading.value);
                }
            }
        }
    }
}
