//! Map stage, device identity: the meters' equipment identifiers from the raw P1 telegram that
//! DSMR-reader's meter statistics carry, so Home Assistant devices survive restarts, URL changes
//! and upgrades, and a swapped meter becomes a new device.

use std::sync::Arc;

use super::catalog::{Device, TariffConvention};

/// Device identifiers (`dsmrbridge_<id>`) and what the telegram says about the meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterIdentity {
    pub electricity: Arc<str>,
    pub gas: Arc<str>,
    pub reader: Arc<str>,
    /// Equipment ids as printed on the meters, when the telegram has them.
    pub electricity_serial: Option<String>,
    pub gas_serial: Option<String>,
    /// Three-letter manufacturer code from the telegram header (`/XMX5...` → `XMX`).
    pub manufacturer_code: Option<String>,
    /// `1-3:0.2.8`, e.g. `50`.
    pub dsmr_version: Option<String>,
    /// What tariff 1 and 2 mean: Belgian telegrams carry `0-0:96.1.4` (e-MUCS version), Dutch
    /// ones `1-3:0.2.8` (DSMR version).
    pub tariffs: TariffConvention,
}

impl MeterIdentity {
    /// Identities used until (or unless) the telegram names the meters.
    pub fn fallback(instance: &str) -> Self {
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
        }
    }

    pub fn id_of(&self, device: Device) -> &Arc<str> {
        match device {
            Device::Electricity => &self.electricity,
            Device::Gas => &self.gas,
            Device::Reader => &self.reader,
        }
    }

    /// Whether the telegram named this device (its id is not the fallback one).
    pub fn is_identified(&self, device: Device) -> bool {
        match device {
            Device::Electricity => self.electricity_serial.is_some(),
            Device::Gas => self.gas_serial.is_some(),
            Device::Reader => true,
        }
    }

    /// Reads the telegram; what it lacks is kept from `current`.
    pub fn from_telegram(telegram: &str, current: &MeterIdentity) -> Self {
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
                found.gas_serial = Some(serial);
            }
        }
        if let Some(tariffs) = tariffs {
            found.tariffs = tariffs;
        }
        found
    }

    /// `DSMR 5.0` from `50`, as meters print it.
    pub fn dsmr_model(&self) -> Option<String> {
        let v = self.dsmr_version.as_deref()?;
        match v.len() {
            2 => Some(format!("DSMR {}.{}", &v[..1], &v[1..])),
            _ => Some(format!("DSMR {v}")),
        }
    }

    pub fn manufacturer(&self) -> Option<&'static str> {
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
pub fn identity_fingerprint(telegram: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for line in telegram.lines().map(str::trim) {
        if line.starts_with('/')
            || line.starts_with("0-0:96.1.1(")
            || line.starts_with(DUTCH_VERSION)
            || line.starts_with(BELGIAN_VERSION)
            || gas_equipment_line(line).is_some()
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
pub fn sanitize(text: &str) -> String {
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
}
