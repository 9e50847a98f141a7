//! DSMR 5 P1 telegrams for the simulator's `latest_telegram`, laid out like the telegrams of
//! DSMR-reader's own fake datasource (same header, OBIS order and CRC16/ARC trailer) so that
//! a telegram parser sees exactly what a real installation stores.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::meter::{MeterStats, Reading};

const HEADER: &str = "/XMX5LGBBFFB123456789";

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
    line(HEADER.to_owned());
    line(String::new());
    line("1-3:0.2.8(50)".to_owned());
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
    line(format!("1-0:1.7.0({}*kW)", kw(reading.currently_delivered)));
    line(format!("1-0:2.7.0({}*kW)", kw(reading.currently_returned)));
    line(format!("0-0:96.7.21({:05})", stats.power_failure_count));
    line(format!("0-0:96.7.9({:05})", stats.long_power_failure_count));
    line("1-0:99.97.0(0)(0-0:96.7.19)".to_owned());
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
    if let Some(gas) = reading.gas {
        line("0-1:24.1.0(003)".to_owned());
        line(format!("0-1:96.1.0({})", ids.gas));
        line(format!(
            "0-1:24.2.1({})({:05}.{:03}*m3)",
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
}
