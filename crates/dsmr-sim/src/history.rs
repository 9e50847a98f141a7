//! DSMR-reader's archive: `statistics/hour` and `statistics/day` rows for years of simulated
//! consumption, generated up front and deterministic per seed.
//!
//! The archive keeps DSMR-reader's invariants: each day's registers at the day's start equal
//! the previous day's plus that day's consumption (until a meter swap restarts them), hours and
//! days follow Europe/Amsterdam time with its 23- and 25-hour days, and hours the datalogger
//! missed have no hour row while the day row, computed from the meter's registers, still holds
//! all the energy.

use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset, Weekday};

/// Register order of the hour rows: electricity1, electricity2, electricity1_returned,
/// electricity2_returned, gas (Wh and litres).
pub const FIELDS: usize = 5;
const E1: usize = 0;
const E2: usize = 1;
const E1R: usize = 2;
const E2R: usize = 3;
const GAS: usize = 4;

/// What the archive holds.
#[derive(Clone, Debug)]
pub struct HistoryOptions {
    /// The first archived day (Amsterdam time).
    pub first_day: Date,
    /// Complete days archived from `first_day`; `Simulator::extend_history` adds hours.
    pub days: u32,
    /// Registers at the start of `first_day`: electricity1, electricity2, electricity1_returned,
    /// electricity2_returned in Wh, gas in litres.
    pub start_registers: [u64; FIELDS],
    /// Hours without an hour row: (first missing hour in UTC, number of hours).
    pub gaps: Vec<(OffsetDateTime, u32)>,
    /// The hour (UTC) from which a new electricity meter counts, its registers restarting at
    /// `NEW_METER_WH`; the gas meter stays.
    pub meter_swap: Option<OffsetDateTime>,
    /// Without solar panels the returned registers stay put.
    pub solar: bool,
    /// Without a gas meter the gas fields are null in day rows and 0 in hour rows.
    pub gas: bool,
    pub seed: u64,
    /// Hours after midnight before a day's row appears (DSMR-reader computes it a few hours
    /// into the next day); 0 shows it at once.
    pub day_row_delay: u32,
}

/// Registers of the swapped-in meter, in Wh (as `Registers::NEW_METER`).
pub const NEW_METER_WH: [u64; 4] = [2, 1, 0, 0];

impl Default for HistoryOptions {
    /// Two years up to 2026-11-26, the fixtures' day, at the fixtures' registers at the end.
    fn default() -> Self {
        Self {
            first_day: time::macros::date!(2024 - 11 - 26),
            days: 730,
            start_registers: [20_000_000, 12_000_000, 2_500_000, 10_000_000, 7_000_000],
            gaps: Vec::new(),
            meter_swap: None,
            solar: true,
            gas: true,
            seed: 7,
            day_row_delay: 0,
        }
    }
}

/// One `statistics/hour` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HourRow {
    pub id: u64,
    /// In Amsterdam time, as DSMR-reader prints it.
    pub hour_start: OffsetDateTime,
    pub values: [u64; FIELDS],
}

/// One `statistics/day` row; amounts in Wh, litres and cents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayRow {
    pub id: u64,
    pub day: Date,
    pub consumption: [u64; FIELDS],
    /// Registers at the day's start (Amsterdam midnight).
    pub registers: [u64; FIELDS],
    pub start: OffsetDateTime,
    /// The next day's start.
    pub end: OffsetDateTime,
    pub electricity1_cost: i64,
    pub electricity2_cost: i64,
    pub gas_cost: i64,
    pub fixed_cost: i64,
    pub total_cost: i64,
}

/// The generated archive.
#[derive(Clone, Debug)]
pub struct Archive {
    opts: HistoryOptions,
    /// Every simulated hour (UTC start, consumption), archived or not.
    hours: Vec<(OffsetDateTime, [u64; FIELDS])>,
    hour_rows: Vec<HourRow>,
    day_rows: Vec<DayRow>,
    /// Registers at the end of the last simulated hour.
    registers: [u64; FIELDS],
    /// The day in progress: date, local start, registers at its start, consumption so far.
    day: Option<(Date, OffsetDateTime, [u64; FIELDS], [u64; FIELDS])>,
}

impl Archive {
    pub fn new(opts: HistoryOptions) -> Self {
        let start = local_midnight(opts.first_day);
        let end = local_midnight(
            opts.first_day
                .checked_add(Duration::days(i64::from(opts.days)))
                .unwrap_or(opts.first_day),
        );
        let hours = u32::try_from((end - start).whole_hours()).unwrap_or(0);
        let mut archive = Self {
            registers: opts.start_registers,
            opts,
            hours: Vec::new(),
            hour_rows: Vec::new(),
            day_rows: Vec::new(),
            day: None,
        };
        archive.extend(hours);
        archive
    }

    /// Simulates `hours` more hours; a day that completes gets its day row.
    pub fn extend(&mut self, hours: u32) {
        let mut next = match self.hours.last() {
            Some((t, _)) => *t + Duration::HOUR,
            None => local_midnight(self.opts.first_day),
        };
        for _ in 0..hours {
            if Some(next) == self.opts.meter_swap {
                self.registers[..4].copy_from_slice(&NEW_METER_WH);
            }
            let local = to_local(next);
            if local.hour() == 0 || self.day.is_none() {
                self.day = Some((local.date(), local, self.registers, [0; FIELDS]));
            }
            let values = self.consumption(next);
            for (reg, v) in self.registers.iter_mut().zip(values) {
                *reg += v;
            }
            if let Some((_, _, _, consumption)) = &mut self.day {
                for (c, v) in consumption.iter_mut().zip(values) {
                    *c += v;
                }
            }
            self.hours.push((next, values));
            if !self.is_gap(next) {
                self.hour_rows.push(HourRow {
                    id: self.hour_rows.len() as u64 + 1,
                    hour_start: local,
                    values,
                });
            }
            next += Duration::HOUR;
            if to_local(next).hour() == 0 {
                self.close_day(to_local(next));
            }
        }
    }

    fn close_day(&mut self, end: OffsetDateTime) {
        let Some((day, start, registers, consumption)) = self.day.take() else {
            return;
        };
        let costs = crate::api::day_costs(
            [
                consumption[E1],
                consumption[E1R],
                consumption[E2],
                consumption[E2R],
            ],
            consumption[GAS],
        );
        self.day_rows.push(DayRow {
            id: self.day_rows.len() as u64 + 1,
            day,
            consumption,
            registers,
            start,
            end,
            electricity1_cost: costs.electricity1,
            electricity2_cost: costs.electricity2,
            gas_cost: costs.gas,
            fixed_cost: costs.fixed,
            total_cost: costs.total,
        });
    }

    fn is_gap(&self, t: OffsetDateTime) -> bool {
        self.opts
            .gaps
            .iter()
            .any(|(start, n)| t >= *start && t < *start + Duration::hours(i64::from(*n)))
    }

    /// A household's hour: a base load with evening peaks, solar return around noon in the
    /// warm months, gas mostly in winter; low tariff at night and at weekends.
    fn consumption(&self, t: OffsetDateTime) -> [u64; FIELDS] {
        let hour_index = u64::try_from(t.unix_timestamp() / 3_600).unwrap_or(0);
        let mut rng = fastrand::Rng::with_seed(self.opts.seed ^ hour_index.wrapping_mul(0x9E37));
        let local = to_local(t);
        let h = local.hour();
        let month = u8::from(local.month());
        let weekend = matches!(local.weekday(), Weekday::Saturday | Weekday::Sunday);
        let low = weekend || !(7..23).contains(&h);
        let peak = if (17..22).contains(&h) { 900 } else { 0 };
        let delivered = 120 + rng.u64(0..400) + peak + rng.u64(0..=peak);
        let sunny = self.opts.solar && (4..=9).contains(&month) && (9..17).contains(&h);
        let returned = if sunny { rng.u64(0..2_200) } else { 0 };
        let winter = matches!(month, 11 | 12 | 1 | 2 | 3);
        let gas = if !self.opts.gas {
            0
        } else if winter {
            rng.u64(60..420)
        } else {
            rng.u64(0..60)
        };
        let mut values = [0; FIELDS];
        let (d, r) = if low { (E1, E1R) } else { (E2, E2R) };
        values[d] = delivered;
        values[r] = returned;
        values[GAS] = gas;
        values
    }

    pub fn hour_rows(&self) -> &[HourRow] {
        &self.hour_rows
    }

    /// Every complete day's row, also those DSMR-reader has not computed yet.
    pub fn day_rows(&self) -> &[DayRow] {
        &self.day_rows
    }

    /// The day rows DSMR-reader serves by now (`day_row_delay` hours into the next day).
    pub fn published_day_rows(&self) -> &[DayRow] {
        let Some((last, _)) = self.hours.last() else {
            return &[];
        };
        let archived_until = *last + Duration::HOUR;
        let delay = Duration::hours(i64::from(self.opts.day_row_delay));
        let shown = self
            .day_rows
            .iter()
            .take_while(|d| d.end + delay <= archived_until)
            .count();
        &self.day_rows[..shown]
    }

    pub fn options(&self) -> &HistoryOptions {
        &self.opts
    }

    /// Every simulated hour (UTC start, consumption), including those without an hour row.
    pub fn hours(&self) -> &[(OffsetDateTime, [u64; FIELDS])] {
        &self.hours
    }
}

/// Europe/Amsterdam's offset at `t`: CEST from the last Sunday of March 01:00 UTC to the last
/// Sunday of October 01:00 UTC.
pub fn amsterdam_offset(t: OffsetDateTime) -> UtcOffset {
    let utc = t.to_offset(UtcOffset::UTC);
    let year = utc.year();
    let switch = |month: Month| {
        let last = Date::from_calendar_date(year, month, 31).unwrap_or(utc.date());
        let back = last.weekday().number_days_from_sunday();
        (last - Duration::days(i64::from(back)))
            .with_time(Time::from_hms(1, 0, 0).unwrap_or(Time::MIDNIGHT))
            .assume_utc()
    };
    if utc >= switch(Month::March) && utc < switch(Month::October) {
        UtcOffset::from_hms(2, 0, 0).unwrap_or(UtcOffset::UTC)
    } else {
        UtcOffset::from_hms(1, 0, 0).unwrap_or(UtcOffset::UTC)
    }
}

/// `t` in Amsterdam time.
pub fn to_local(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(amsterdam_offset(t))
}

/// Amsterdam midnight of `day` (never in a DST switch, which happens at 02:00/03:00).
pub fn local_midnight(day: Date) -> OffsetDateTime {
    let guess = day.midnight().assume_utc();
    let offset = amsterdam_offset(guess);
    day.midnight().assume_offset(offset)
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    fn small(days: u32) -> Archive {
        Archive::new(HistoryOptions {
            first_day: date!(2025 - 10 - 24),
            days,
            ..HistoryOptions::default()
        })
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let autumn = small(4);
        let per_day = |archive: &Archive, day: Date| {
            archive
                .hour_rows()
                .iter()
                .filter(|r| r.hour_start.date() == day)
                .count()
        };
        assert_eq!(per_day(&autumn, date!(2025 - 10 - 25)), 24);
        assert_eq!(per_day(&autumn, date!(2025 - 10 - 26)), 25);
        let spring = Archive::new(HistoryOptions {
            first_day: date!(2025 - 03 - 29),
            days: 2,
            ..HistoryOptions::default()
        });
        assert_eq!(per_day(&spring, date!(2025 - 03 - 30)), 23);
        let twice: Vec<_> = autumn
            .hour_rows()
            .iter()
            .filter(|r| r.hour_start.date() == date!(2025 - 10 - 26) && r.hour_start.hour() == 2)
            .map(|r| r.hour_start.offset().whole_hours())
            .collect();
        assert_eq!(twice, [2, 1], "02:00 comes twice, CEST then CET");
    }

    #[test]
    fn registers_chain_from_day_to_day() {
        let archive = small(5);
        for pair in archive.day_rows().windows(2) {
            for f in 0..FIELDS {
                assert_eq!(
                    pair[0].registers[f] + pair[0].consumption[f],
                    pair[1].registers[f],
                    "{} field {f}",
                    pair[1].day
                );
            }
        }
    }

    #[test]
    fn gaps_drop_hour_rows_but_not_day_energy() {
        let gap = datetime!(2025-10-25 10:00 UTC);
        let archive = Archive::new(HistoryOptions {
            first_day: date!(2025 - 10 - 24),
            days: 3,
            gaps: vec![(gap, 5)],
            ..HistoryOptions::default()
        });
        assert_eq!(archive.hour_rows().len(), 3 * 24 + 1 - 5);
        let day = &archive.day_rows()[1];
        let hours: u64 = archive
            .hour_rows()
            .iter()
            .filter(|r| r.hour_start.date() == day.day)
            .map(|r| r.values[E1] + r.values[E2])
            .sum();
        assert!(hours < day.consumption[E1] + day.consumption[E2]);
    }

    #[test]
    fn a_meter_swap_restarts_the_electricity_registers() {
        let swap = datetime!(2025-10-25 11:00 UTC);
        let archive = Archive::new(HistoryOptions {
            first_day: date!(2025 - 10 - 24),
            days: 3,
            meter_swap: Some(swap),
            ..HistoryOptions::default()
        });
        let rows = archive.day_rows();
        assert!(rows[2].registers[E1] < 100_000, "{:?}", rows[2].registers);
        assert_eq!(
            rows[1].registers[GAS] + rows[1].consumption[GAS],
            rows[2].registers[GAS]
        );
        assert_eq!(
            rows[2].registers[E1] + rows[2].consumption[E1],
            archive.registers[E1]
        );
    }

    #[test]
    fn amsterdam_switches_at_one_utc() {
        assert_eq!(
            amsterdam_offset(datetime!(2026-03-29 00:59 UTC)).whole_hours(),
            1
        );
        assert_eq!(
            amsterdam_offset(datetime!(2026-03-29 01:00 UTC)).whole_hours(),
            2
        );
        assert_eq!(
            amsterdam_offset(datetime!(2026-10-25 00:59 UTC)).whole_hours(),
            2
        );
        assert_eq!(
            amsterdam_offset(datetime!(2026-10-25 01:00 UTC)).whole_hours(),
            1
        );
    }
}
