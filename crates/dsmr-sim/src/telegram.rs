//! DSMR 5 P1 telegrams for the simulator's `latest_telegram`, laid out like the telegrams of
//! DSMR-reader's own fake datasource (same header, OBIS order and CRC16/ARC trailer) so that
//! a telegram parser sees exactly what a real installation stores.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::meter::{self, MeterStats, MonthPeak, Reading};

const HEADER: &str = "/XMX5LGBBFFB123456789";
/// A Fluvius e-MUCS meter's header, as in `tests/fixtures/telegram_belgian_fluvius.txt`.
const BELGIAN_HEADER: &str = "/FLU5\\253770234_A";
/// The water meter's M-Bus id (`W0000000000000001`, hex-encoded as meters send it).
pub const WATER_ID: &str = "5730303030303030303030303030303031";

/// Which meter the telegram is from, beyond DSMR-reader's own fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum P1Profile {
    /// A Dutch DSMR 5 meter, gas on M-Bus channel 1 (DSMR-reader's fake datasource).
    #[default]
    Dutch,
    /// A Dutch DSMR 5 meter with a water meter on M-Bus channel 1 and gas on 2: DSMR-reader
    /// takes the last reading line as gas, so this order keeps its gas right.
    DutchWithWater,
    /// A Belgian Fluvius e-MUCS meter: capacity-tariff lines with 13 months of maxima, gas on
    /// `24.2.3`.
    Belgian,
}

/// Equipment identifiers printed in the telegram.
#[derive(Clone, Copy, Debug)]
pub struct MeterIds<'a> {
    pub electricity: &'a str,
    pub gas: &'a str,
}

/// A full telegram: CRLF line ends, then `!`, the CRC and a final LF, as DSMR-reader stores it.
/// `shift` moves the meter clock (for tests of meters whose clock runs off).
pub fn telegram(
    reading: &Reading,
    stats: &MeterStats,
    ids: MeterIds<'_>,
    shift: time::Duration,
) -> String {
    let shifted = |t: OffsetDateTime| t.checked_add(shift).unwrap_or(t);
    let mut out = String::with_capacity(1_024);
    let mut line = |text: String| {
        out.push_str(&text);
        out.push_str("\r\n");
    };
    let belgian = stats.profile == P1Profile::Belgian;
    line(if belgian { BELGIAN_HEADER } else { HEADER }.to_owned());
    line(String::new());
    line(
        if belgian {
            "0-0:96.1.4(50217)"
        } else {
            "1-3:0.2.8(50)"
        }
        .to_owned(),
    );
    line(format!(
        "0-0:1.0.0({})",
        meter_time(shifted(reading.timestamp))
    ));
    line(format!("0-0:96.1.1({})", ids.electricity));
    let [d1, r1, d2, r2] = reading.registers;
    for (code, wh) in [("1.8.1", d1), ("2.8.1", r1), ("1.8.2", d2), ("2.8.2", r2)] {
        line(format!(
            "1-0:{code}({:06}.{:03}*kWh)",
            wh / 1_000,
            wh % 1_000
        ));
    }
    line(format!("0-0:96.14.0({:04})", stats.tariff));
    if belgian {
        let demand = &stats.demand;
        line(format!("1-0:1.4.0({}*kW)", kw(demand.current)));
        if let Some(peak) = demand.month {
            line(format!(
                "1-0:1.6.0({})({}*kW)",
                meter_time(shifted(peak.at)),
                kw(peak.watts)
            ));
        }
        let past: Vec<&MonthPeak> = demand.past.iter().flatten().collect();
        let mut buffer = format!("0-0:98.1.0({})(1-0:1.6.0)(1-0:1.6.0)", past.len());
        for peak in past {
            let _ = write!(
                buffer,
                "({})({})({}*kW)",
                meter_time(shifted(peak.closes)),
                meter_time(shifted(peak.at)),
                kw(peak.watts)
            );
        }
        line(buffer);
    }
    line(format!("1-0:1.7.0({}*kW)", kw(reading.currently_delivered)));
    line(format!("1-0:2.7.0({}*kW)", kw(reading.currently_returned)));
    if !belgian {
        line(format!("0-0:96.7.21({:05})", stats.power_failure_count));
        line(format!("0-0:96.7.9({:05})", stats.long_power_failure_count));
        line("1-0:99.97.0(0)(0-0:96.7.19)".to_owned());
    }
    per_phase(
        &mut line,
        ["32.32.0", "52.32.0", "72.32.0"],
        &stats.voltage_sag_count,
        |n| format!("{n:05}"),
    );
    per_phase(
        &mut line,
        ["32.36.0", "52.36.0", "72.36.0"],
        &stats.voltage_swell_count,
        |n| format!("{n:05}"),
    );
    line("0-0:96.13.1()".to_owned());
    line("0-0:96.13.0()".to_owned());
    let phases = reading.phases;
    let volts = phases.map(|p| p.map(|p| p.voltage));
    per_phase(&mut line, ["32.7.0", "52.7.0", "72.7.0"], &volts, |dv| {
        format!("{:03}.{}*V", dv / 10, dv % 10)
    });
    let amps = phases.map(|p| p.map(|p| p.current));
    per_phase(&mut line, ["31.7.0", "51.7.0", "71.7.0"], &amps, |a| {
        format!("{a:03}*A")
    });
    let delivered = phases.map(|p| p.map(|p| p.delivered));
    per_phase(&mut line, ["21.7.0", "41.7.0", "61.7.0"], &delivered, |w| {
        format!("{}*kW", kw(w))
    });
    let returned = phases.map(|p| p.map(|p| p.returned));
    per_phase(&mut line, ["22.7.0", "42.7.0", "62.7.0"], &returned, |w| {
        format!("{}*kW", kw(w))
    });
    let mut channel = 1;
    if stats.profile == P1Profile::DutchWithWater {
        let (read_at, liters) = meter::water_reading(reading.timestamp);
        line("0-1:24.1.0(007)".to_owned());
        line(format!("0-1:96.1.0({WATER_ID})"));
        line(format!(
            "0-1:24.2.1({})({:05}.{:03}*m3)",
            meter_time(shifted(read_at)),
            liters / 1_000,
            liters % 1_000
        ));
        channel = 2;
    }
    if let Some(gas) = reading.gas {
        // Belgian meters send the M-Bus id as 96.1.1 and gas on 24.2.3.
        let (id, register) = if belgian {
            ("96.1.1", "24.2.3")
        } else {
            ("96.1.0", "24.2.1")
        };
        line(format!("0-{channel}:24.1.0(003)"));
        line(format!("0-{channel}:{id}({})", ids.gas));
        line(format!(
            "0-{channel}:{register}({})({:05}.{:03}*m3)",
            meter_time(shifted(gas.timestamp)),
            gas.delivered / 1_000,
            gas.delivered % 1_000
        ));
    }
    out.push('!');
    let crc = crc16_arc(out.as_bytes());
    let _ = writeln!(out, "{crc:04X}");
    out
}

fn per_phase<T: Copy>(
    line: &mut impl FnMut(String),
    codes: [&str; 3],
    values: &[Option<T>; 3],
    format: impl Fn(T) -> String,
) {
    for (code, value) in codes.iter().zip(values) {
        if let Some(value) = value {
            line(format!("1-0:{code}({})", format(*value)));
        }
    }
}

fn kw(watts: u32) -> String {
    format!("{:02}.{:03}", watts / 1_000, watts % 1_000)
}

/// `YYMMDDhhmmss` plus the DST flag; DSMR-reader's fake datasource always sends `W`, real
/// meters send `S` in summer, which with a fixed offset we can only guess from +02:00.
fn meter_time(t: OffsetDateTime) -> String {
    let flag = if t.offset().whole_hours() == 2 {
        'S'
    } else {
        'W'
    };
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}{flag}",
        t.year().rem_euclid(100),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// CRC-16/ARC (reflected polynomial 0xA001, initial value 0) over `/` up to and including `!`,
/// as the DSMR 5 P1 specification prescribes.
pub fn crc16_arc(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ u16::from(byte), |crc, _| {
            if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::super::SimOptions;
    use super::super::meter::MeterModel;
    use super::*;

    /// `telegram_fake_datasource_1.txt` from the DSMR-reader fixtures, CRC as computed by the
    /// real fake datasource.
    const FIXTURE_TELEGRAM: &str = "/XMX5LGBBFFB123456789\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(261126140219W)\r\n0-0:96.1.1(12345678901234567890123456789000)\r\n1-0:1.8.1(037562.774*kWh)\r\n1-0:2.8.1(007512.555*kWh)\r\n1-0:1.8.2(022537.665*kWh)\r\n1-0:2.8.2(030050.220*kWh)\r\n0-0:96.14.0(0001)\r\n1-0:1.7.0(00.232*kW)\r\n1-0:2.7.0(00.094*kW)\r\n0-0:96.7.21(00003)\r\n0-0:96.7.9(00000)\r\n1-0:99.97.0(0)(0-0:96.7.19)\r\n1-0:32.32.0(00001)\r\n1-0:52.32.0(00002)\r\n1-0:72.32.0(00003)\r\n1-0:32.36.0(00000)\r\n1-0:52.36.0(00000)\r\n1-0:72.36.0(00000)\r\n0-0:96.13.1()\r\n0-0:96.13.0()\r\n1-0:32.7.0(238.598*V)\r\n1-0:52.7.0(239.598*V)\r\n1-0:72.7.0(244.598*V)\r\n1-0:31.7.0(5*A)\r\n1-0:51.7.0(3*A)\r\n1-0:71.7.0(0*A)\r\n1-0:21.7.0(00.000*kW)\r\n1-0:41.7.0(00.092*kW)\r\n1-0:61.7.0(00.140*kW)\r\n1-0:22.7.0(00.094*kW)\r\n1-0:42.7.0(00.000*kW)\r\n1-0:62.7.0(00.000*kW)\r\n0-1:24.1.0(003)\r\n0-1:96.1.0(12345678901234567890123456789001)\r\n0-1:24.2.1(261126140000W)(11268.833*m3)\r\n!1E4D\n";

    fn check_crc(telegram: &str) {
        let bang = telegram.rfind('!').expect("trailer");
        let expected = &telegram[bang + 1..bang + 5];
        let crc = crc16_arc(&telegram.as_bytes()[..=bang]);
        assert_eq!(format!("{crc:04X}"), expected);
    }

    #[test]
    fn crc_matches_the_real_fake_datasource() {
        check_crc(FIXTURE_TELEGRAM);
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D, "CRC-16/ARC check value");
    }

    fn model(phases: u8, gas: bool) -> MeterModel {
        MeterModel::new(&SimOptions {
            phases,
            gas,
            start: datetime!(2026-11-26 14:02:14 +1),
            ..SimOptions::default()
        })
    }

    const IDS: MeterIds<'static> = MeterIds {
        electricity: "E0001",
        gas: "G0001",
    };

    #[test]
    fn three_phase_telegram_has_the_fixture_layout() {
        let m = model(3, true);
        let text = telegram(m.latest(), &m.stats(), IDS, time::Duration::ZERO);
        check_crc(&text);
        assert!(text.starts_with(
            "/XMX5LGBBFFB123456789\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(261126140214W)\r\n"
        ));
        assert!(text.contains("\r\n0-0:96.1.1(E0001)\r\n1-0:1.8.1(037562.774*kWh)\r\n"));
        assert!(
            text.contains("\r\n0-1:96.1.0(G0001)\r\n0-1:24.2.1(261126140000W)(11268.833*m3)\r\n!")
        );
        assert!(text.ends_with('\n') && !text.ends_with("\r\n"));
        let codes: Vec<&str> = text.lines().filter_map(|l| l.split('(').next()).collect();
        let fixture_codes: Vec<&str> = FIXTURE_TELEGRAM
            .lines()
            .filter_map(|l| l.split('(').next())
            .collect();
        assert_eq!(
            codes[..codes.len() - 1],
            fixture_codes[..fixture_codes.len() - 1]
        );
    }

    #[test]
    fn single_phase_without_gas_omits_those_lines() {
        let m = model(1, false);
        let text = telegram(m.latest(), &m.stats(), IDS, time::Duration::ZERO);
        check_crc(&text);
        for code in [
            "52.7.0", "72.7.0", "41.7.0", "62.7.0", "52.32.0", "72.36.0", "0-1:",
        ] {
            assert!(!text.contains(code), "{code} in\n{text}");
        }
        assert!(text.contains("1-0:32.7.0(") && text.contains("1-0:21.7.0("));
    }

    #[test]
    fn shift_moves_the_meter_clock() {
        let m = model(3, true);
        let text = telegram(m.latest(), &m.stats(), IDS, time::Duration::hours(-1));
        assert!(text.contains("0-0:1.0.0(261126130214W)"));
        assert!(text.contains("0-1:24.2.1(261126130000W)"));
    }

    fn with_profile(profile: P1Profile, start: OffsetDateTime) -> String {
        let mut m = MeterModel::new(&SimOptions {
            start,
            p1: profile,
            ..SimOptions::default()
        });
        // Two quarter hours: one closed peak this month.
        m.advance_to(start + time::Duration::minutes(31));
        telegram(m.latest(), &m.stats(), IDS, time::Duration::ZERO)
    }

    #[test]
    fn a_belgian_telegram_has_the_capacity_tariff_lines() {
        let text = with_profile(P1Profile::Belgian, datetime!(2026-11-26 14:02:14 +1));
        check_crc(&text);
        assert!(text.starts_with("/FLU5\\253770234_A\r\n\r\n0-0:96.1.4(50217)\r\n"));
        assert!(!text.contains("1-3:0.2.8") && !text.contains("0-0:96.7.21"));
        let line = |code: &str| {
            text.lines()
                .find(|l| l.starts_with(code))
                .unwrap_or_else(|| panic!("no {code} in {text}"))
                .to_owned()
        };
        assert!(line("1-0:1.4.0(").ends_with("*kW)"));
        assert!(
            line("1-0:1.6.0(2611261").ends_with("*kW)"),
            "a peak of today"
        );
        let buffer = line("0-0:98.1.0(13)(1-0:1.6.0)(1-0:1.6.0)(261101000000W)(2610");
        assert_eq!(buffer.matches("*kW)").count(), 13);
        assert!(buffer.contains("(251201000000W)(2511"), "{buffer}");
        // July under the 2.5 kW floor (the fixed +01:00 offset prints W all year).
        assert!(
            buffer.contains("(260801000000W)(2607") && buffer.contains(")(02."),
            "{buffer}"
        );
        line("0-1:96.1.1(G0001)");
        assert!(line("0-1:24.2.3(").ends_with("*m3)"));
    }

    #[test]
    fn a_month_closes_into_the_past_maxima() {
        let start = datetime!(2026-11-30 23:40:00 +1);
        let mut m = MeterModel::new(&SimOptions {
            start,
            ..SimOptions::default()
        });
        m.advance_to(start + time::Duration::minutes(50));
        let demand = m.stats().demand;
        let november = demand.past[0].expect("November closed");
        assert_eq!(november.closes, datetime!(2026-12-01 00:00 +1));
        assert_eq!(november.at, datetime!(2026-11-30 23:45 +1));
        assert_eq!(demand.month.unwrap().closes, datetime!(2027-01-01 00:00 +1));
        assert_eq!(demand.past.iter().flatten().count(), 13);
    }

    #[test]
    fn a_dutch_telegram_with_water_has_it_before_gas() {
        let text = with_profile(P1Profile::DutchWithWater, datetime!(2026-11-26 14:02:14 +1));
        check_crc(&text);
        let tail: Vec<&str> = text.lines().rev().skip(1).take(6).collect();
        assert_eq!(tail[5], "0-1:24.1.0(007)");
        assert_eq!(tail[4], format!("0-1:96.1.0({WATER_ID})"));
        assert!(
            tail[3].starts_with("0-1:24.2.1(261126143000W)(0"),
            "{}",
            tail[3]
        );
        assert_eq!(tail[2], "0-2:24.1.0(003)");
        assert_eq!(tail[1], "0-2:96.1.0(G0001)");
        assert!(tail[0].starts_with("0-2:24.2.1("));
        // The water register only rises, at a household's pace.
        let (t0, l0) = meter::water_reading(datetime!(2026-11-26 14:02:14 +1));
        let (t1, l1) = meter::water_reading(datetime!(2026-11-27 14:02:14 +1));
        assert_eq!(t0, datetime!(2026-11-26 14:00 +1));
        assert_eq!((t1 - t0).whole_hours(), 24);
        assert_eq!(l1 - l0, 432);
    }
}
