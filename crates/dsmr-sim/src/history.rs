//! DSMR-reader's archive: `statistics/hour` and `statistics/day` rows for years of simulated
//! consumption, deterministic per seed, simulated up to the archive's clock and served as
//! DSMR-reader 5.11 serves them then; on the simulator's clock the hours after the hand-over
//! are the simulated meter's own.
//!
//! The archive keeps DSMR-reader's invariants: each day's registers at the day's start equal
//! the previous day's plus that day's consumption (until a meter swap restarts them), hours and
//! days follow Europe/Amsterdam time with its 23- and 25-hour days, and hours the datalogger
//! missed have no hour row while the day row, computed from the meter's registers, still holds
//! all the energy. A day without any reading gets no day row at all.
//!
//! Timing follows `dsmr_stats/services.py` `run()`: statistics are written once a day, after
//! local midnight, for the day before ("Skip current day, wait until midnight"), hour rows and
//! day row in one transaction. At midnight the last minute's readings are not processed yet
//! (the compactor waits for a reading of the next minute), so the run retries 5 minutes later;
//! with a gas meter it also waits, in 5-minute steps, for the next day's first gas reading. Until
//! then the day's hours exist only as readings.

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
    /// Complete days archived from `first_day` (with `ArchiveNow::AfterDays`).
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
    /// Hours DSMR-reader's backend was down after each midnight: the day's statistics (hour
    /// rows and day row, written together) come that much later; 0 for a backend that runs.
    pub day_row_delay: u32,
    /// How long after local midnight the gas meter's first reading of a day reaches
    /// DSMR-reader (a meter that reports late, or hourly); with a gas meter, a day's statistics
    /// wait for it.
    pub gas_reading_delay: Duration,
    /// When the archive is looked at.
    pub now: ArchiveNow,
    /// How long after its five-minute mark the gas meter's value reaches the readings (a
    /// DSMR 5 meter relays it within minutes): until then a reading carries the value before.
    pub gas_lag: Duration,
    /// How a broken or hostile server serves the archive; nothing by default.
    pub hostile: Hostile,
    /// How DSMR-reader groups readings before it computes the statistics.
    pub grouping: Grouping,
}

/// How DSMR-reader groups readings before it computes hour and day statistics (its consumption
/// settings; `dsmr_consumption/services.py` `compact`, `dsmr_stats/services.py`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Grouping {
    /// Every reading counts: an hour row is the difference of the readings at its boundaries,
    /// a day row the sum of its hours (what a fill from readings at hour boundaries gives).
    #[default]
    Exact,
    /// DSMR-reader's defaults: electricity grouped by minute (an hour row runs from the hour's
    /// first minute to its last, 59 minutes), gas by change (from the hour's first five-minute
    /// gas value to its last, 55 minutes); a day's electricity from its first minute to its
    /// last, its gas the sum of its hour rows. What falls between two hours is in no hour
    /// row; what falls in a day's last minute is in no row at all.
    Defaults,
}

/// A server that serves the archive wrongly, for tests of what a client makes of it.
#[derive(Clone, Debug, Default)]
pub struct Hostile {
    /// `statistics/hour`, `statistics/day` and `datalogger/dsmrreading` answer as if no filter
    /// (`hour_start__gte`, `day__gte`, `timestamp__gte`, …) had been given; `limit`, `offset`
    /// and `ordering` still apply.
    pub ignore_filters: bool,
    /// Rows come newest first whatever `ordering` asks.
    pub descending: bool,
    /// Fields of hour rows served as this JSON instead: (the row's `hour_start`, field, value).
    pub hour_values: Vec<(OffsetDateTime, &'static str, serde_json::Value)>,
    /// Fields of day rows served as this JSON instead: (the row's day, field, value).
    pub day_values: Vec<(Date, &'static str, serde_json::Value)>,
}

/// When the archive is looked at: what DSMR-reader has simulated, and archived, by then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArchiveNow {
    /// Just after DSMR-reader has archived the last of `HistoryOptions::days`: 00:05 the next
    /// morning, or later with `gas_reading_delay` or `day_row_delay`.
    #[default]
    AfterDays,
    /// This moment: the household runs from `first_day` up to it (`days` is ignored).
    At(OffsetDateTime),
    /// The simulator's clock at each request (`days` is ignored), so that midnight passes and
    /// DSMR-reader archives the day before as the clock runs.
    Clock,
}

/// DSMR-reader's statistics run retries every 5 minutes while the day's last readings are not
/// processed or, with gas, the next day's first gas reading is not in
/// (`scheduled_process.delay(minutes=5)`).
pub const STATS_RETRY: Duration = Duration::minutes(5);
/// Seconds between two readings DSMR-reader stored during a simulated hour; one falls on each
/// hour's start, so that an hour row is the difference of the readings at its boundaries.
pub const READING_EVERY: i64 = 10;
const READINGS_PER_HOUR: usize = 3_600 / READING_EVERY as usize;
/// The longest stretch simulated: a clock far ahead must not fill the memory.
const MAX_HOURS: usize = 20 * 366 * 24;

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
            gas_reading_delay: Duration::ZERO,
            now: ArchiveNow::AfterDays,
            gas_lag: Duration::ZERO,
            hostile: Hostile::default(),
            grouping: Grouping::Exact,
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
    /// When DSMR-reader writes this row and the day's hour rows.
    pub archived_at: OffsetDateTime,
}

/// The generated archive.
#[derive(Clone, Debug)]
pub struct Archive {
    opts: HistoryOptions,
    /// The archive's clock: complete hours before it are simulated, days archived by it served.
    now: OffsetDateTime,
    /// Every simulated hour (UTC start, consumption), archived or not.
    hours: Vec<(OffsetDateTime, [u64; FIELDS])>,
    /// The registers at the start of each of `hours`.
    starts: Vec<[u64; FIELDS]>,
    /// Every complete hour with readings, archived or not.
    hour_rows: Vec<HourRow>,
    /// Indexes into `hours` of the hours with readings (not in a gap).
    read_hours: Vec<usize>,
    /// Every complete day with readings, archived or not.
    day_rows: Vec<DayRow>,
    /// How many of `day_rows` and `hour_rows` DSMR-reader has written by `now`.
    archived_days: usize,
    archived_hours: usize,
    /// Registers at the end of the last simulated hour.
    registers: [u64; FIELDS],
    day: Option<DayInProgress>,
    /// From this hour on the hours are the simulated meter's (`ArchiveNow::Clock`).
    handover: Option<OffsetDateTime>,
}

#[derive(Clone, Debug)]
struct DayInProgress {
    day: Date,
    /// Local midnight.
    start: OffsetDateTime,
    registers: [u64; FIELDS],
    consumption: [u64; FIELDS],
    /// Hours with readings so far.
    hours_read: u32,
    /// Gas of the day's hour rows, and the day's last hour's consumption.
    gas_rows: u64,
    last_hour: [u64; FIELDS],
}

impl Archive {
    pub fn new(opts: HistoryOptions) -> Self {
        let origin = local_midnight(opts.first_day);
        let now = match opts.now {
            ArchiveNow::AfterDays => {
                let end = opts
                    .first_day
                    .checked_add(Duration::days(i64::from(opts.days)))
                    .map_or(origin, local_midnight);
                archived_at(&opts, end)
            }
            ArchiveNow::At(t) => t,
            // The simulator moves it to its clock.
            ArchiveNow::Clock => origin,
        };
        let mut archive = Self {
            registers: opts.start_registers,
            opts,
            now: origin,
            hours: Vec::new(),
            starts: Vec::new(),
            hour_rows: Vec::new(),
            read_hours: Vec::new(),
            day_rows: Vec::new(),
            archived_days: 0,
            archived_hours: 0,
            day: None,
            handover: None,
        };
        archive.advance_to(now);
        archive
    }

    /// Whether the archive runs on the simulator's clock.
    pub fn follows_clock(&self) -> bool {
        self.opts.now == ArchiveNow::Clock
    }

    /// The archive's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    /// Moves the archive's clock `hours` on.
    pub fn extend(&mut self, hours: u32) {
        self.advance_to(self.now + Duration::hours(i64::from(hours)));
    }

    /// Moves the archive's clock to `t`: the household runs up to it, and DSMR-reader archives
    /// each day whose run has come. Time never runs back; an earlier `t` changes nothing.
    pub fn advance_to(&mut self, t: OffsetDateTime) {
        self.advance_with(t, |_| None);
    }

    /// As `advance_to`; from the hand-over on (`hand_over`), each hour is the difference of
    /// `marks`' registers at its boundaries (the simulated meter's, in `FIELDS` order) where
    /// both are known.
    pub fn advance_with(
        &mut self,
        t: OffsetDateTime,
        marks: impl Fn(OffsetDateTime) -> Option<[u64; FIELDS]>,
    ) {
        if t <= self.now {
            return;
        }
        self.now = t;
        loop {
            let next = self.next_hour();
            if next + Duration::HOUR > t || self.hours.len() >= MAX_HOURS {
                break;
            }
            let measured = self
                .handover
                .filter(|h| next >= *h)
                .and_then(|_| marks(next).zip(marks(next + Duration::HOUR)));
            self.simulate_hour(next, measured);
        }
        self.archive();
    }

    /// Hands the hours from the next one on to the simulated meter: its start and the
    /// registers there (`FIELDS` order), for the meter to count on from.
    pub fn hand_over(&mut self) -> (OffsetDateTime, [u64; FIELDS]) {
        let next = self.next_hour();
        self.handover = Some(next);
        (next, self.registers)
    }

    fn next_hour(&self) -> OffsetDateTime {
        match self.hours.last() {
            Some((t, _)) => *t + Duration::HOUR,
            None => local_midnight(self.opts.first_day),
        }
    }

    /// `measured`: the registers at the hour's start and end, where the meter gives them.
    fn simulate_hour(
        &mut self,
        start: OffsetDateTime,
        measured: Option<([u64; FIELDS], [u64; FIELDS])>,
    ) {
        if Some(start) == self.opts.meter_swap && self.handover.is_none_or(|h| start < h) {
            self.registers[..4].copy_from_slice(&NEW_METER_WH);
        }
        if let Some((at_start, _)) = measured {
            self.registers = at_start;
        }
        let local = to_local(start);
        if local.hour() == 0 || self.day.is_none() {
            self.day = Some(DayInProgress {
                day: local.date(),
                start: local,
                registers: self.registers,
                consumption: [0; FIELDS],
                hours_read: 0,
                gas_rows: 0,
                last_hour: [0; FIELDS],
            });
        }
        let values = match measured {
            Some((a, b)) => {
                let mut values: [u64; FIELDS] = std::array::from_fn(|f| b[f].saturating_sub(a[f]));
                if !self.opts.gas {
                    values[GAS] = 0;
                }
                values
            }
            None => self.consumption(start),
        };
        self.starts.push(self.registers);
        for (reg, v) in self.registers.iter_mut().zip(values) {
            *reg += v;
        }
        let read = !self.is_gap(start);
        let row = self.hour_row_values(values);
        if let Some(day) = &mut self.day {
            for (c, v) in day.consumption.iter_mut().zip(values) {
                *c += v;
            }
            day.hours_read += u32::from(read);
            if read {
                day.gas_rows += row[GAS];
            }
            day.last_hour = values;
        }
        if read {
            self.read_hours.push(self.hours.len());
        }
        self.hours.push((start, values));
        if read {
            self.hour_rows.push(HourRow {
                id: self.hour_rows.len() as u64 + 1,
                hour_start: local,
                values: row,
            });
        }
        let next = start + Duration::HOUR;
        if to_local(next).hour() == 0 {
            self.close_day(to_local(next));
        }
    }

    /// A day without any reading gets no row: DSMR-reader's run skips to the next day with
    /// consumption (`get_next_day_to_generate`).
    fn close_day(&mut self, end: OffsetDateTime) {
        let Some(day) = self.day.take().filter(|d| d.hours_read > 0) else {
            return;
        };
        let mut consumption = day.consumption;
        if self.opts.grouping == Grouping::Defaults {
            // From the day's first minute to its last; gas as the sum of its hour rows.
            for f in [E1, E2, E1R, E2R] {
                let last_minute = day.last_hour[f] - day.last_hour[f] * 59 / 60;
                consumption[f] -= last_minute;
            }
            consumption[GAS] = day.gas_rows;
        }
        let costs = crate::prices::day_costs(
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
            day: day.day,
            consumption,
            registers: day.registers,
            start: day.start,
            end,
            electricity1_cost: costs.electricity1,
            electricity2_cost: costs.electricity2,
            gas_cost: costs.gas,
            fixed_cost: costs.fixed,
            total_cost: costs.total,
            archived_at: archived_at(&self.opts, end),
        });
    }

    /// What DSMR-reader's hour row holds of an hour's consumption.
    fn hour_row_values(&self, values: [u64; FIELDS]) -> [u64; FIELDS] {
        match self.opts.grouping {
            Grouping::Exact => values,
            Grouping::Defaults => {
                let mut row = values.map(|v| v * 59 / 60);
                row[GAS] = values[GAS] * 55 / 60;
                row
            }
        }
    }

    /// Writes the statistics of every day whose run has come by `now`, hours and day together.
    fn archive(&mut self) {
        while self
            .day_rows
            .get(self.archived_days)
            .is_some_and(|d| d.archived_at <= self.now)
        {
            self.archived_days += 1;
        }
        let until = self
            .archived_days
            .checked_sub(1)
            .map(|i| self.day_rows[i].end);
        self.archived_hours = until.map_or(0, |end| {
            self.hour_rows.partition_point(|r| r.hour_start < end)
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

    /// The hour rows DSMR-reader serves by now: those of archived days.
    pub fn hour_rows(&self) -> &[HourRow] {
        &self.hour_rows[..self.archived_hours]
    }

    /// Every complete day's row, also those DSMR-reader has not written yet.
    pub fn day_rows(&self) -> &[DayRow] {
        &self.day_rows
    }

    /// The day rows DSMR-reader serves by now.
    pub fn published_day_rows(&self) -> &[DayRow] {
        &self.day_rows[..self.archived_days]
    }

    pub fn options(&self) -> &HistoryOptions {
        &self.opts
    }

    /// Every complete simulated hour (UTC start, consumption), also those without an hour row
    /// and those DSMR-reader has not archived yet (today's, which exist only as readings).
    pub fn hours(&self) -> &[(OffsetDateTime, [u64; FIELDS])] {
        &self.hours
    }
}

/// One of the readings (`datalogger/dsmrreading`) DSMR-reader stored during a simulated hour,
/// with the registers at its time (each hour's energy spread evenly over it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveReading {
    /// 1 for the first reading of the archive.
    pub id: u64,
    pub timestamp: OffsetDateTime,
    /// Wh (and litres of gas) in `FIELDS` order.
    pub registers: [u64; FIELDS],
    /// The hour's average power in W.
    pub delivered_w: u32,
    pub returned_w: u32,
    /// The gas meter's last five-minute value: its time and litres.
    pub gas_timestamp: OffsetDateTime,
    pub gas: u64,
    /// 1 = low, 2 = normal.
    pub tariff: u8,
}

impl Archive {
    /// Readings stored during the simulated hours: one every `READING_EVERY` seconds from each
    /// hour's start, none in a gap.
    pub fn reading_count(&self) -> usize {
        self.read_hours.len() * READINGS_PER_HOUR
    }

    /// The index of the first reading at or after `t` (`reading_count` when there is none).
    pub fn reading_index(&self, t: OffsetDateTime) -> usize {
        let pos = self
            .read_hours
            .partition_point(|&h| self.hours[h].0 + Duration::HOUR <= t);
        let Some(&hour) = self.read_hours.get(pos) else {
            return self.reading_count();
        };
        let into = (t - self.hours[hour].0).whole_nanoseconds().max(0);
        let step = i128::from(READING_EVERY) * 1_000_000_000;
        let k = usize::try_from((into + step - 1) / step).unwrap_or(READINGS_PER_HOUR);
        pos * READINGS_PER_HOUR + k.min(READINGS_PER_HOUR)
    }

    /// The reading at `index` (in time order).
    pub fn reading(&self, index: usize) -> Option<ArchiveReading> {
        let &hour = self.read_hours.get(index / READINGS_PER_HOUR)?;
        let (start, values) = self.hours[hour];
        let start_registers = self.starts[hour];
        let seconds = (index % READINGS_PER_HOUR) as i64 * READING_EVERY;
        let at = |s: i64| -> [u64; FIELDS] {
            std::array::from_fn(|f| start_registers[f] + values[f] * s.unsigned_abs() / 3_600)
        };
        let timestamp = to_local(start + Duration::seconds(seconds));
        // The gas meter's last five-minute value that has arrived by then.
        let at_time = start + Duration::seconds(seconds);
        let gas_mark = at_time - self.opts.gas_lag;
        let gas_timestamp = gas_mark - Duration::seconds(gas_mark.unix_timestamp().rem_euclid(300));
        let tariff = if values[E2] > 0 || values[E2R] > 0 {
            2
        } else {
            1
        };
        Some(ArchiveReading {
            id: index as u64 + 1,
            timestamp,
            registers: at(seconds),
            delivered_w: u32::try_from(values[E1] + values[E2]).unwrap_or(u32::MAX),
            returned_w: u32::try_from(values[E1R] + values[E2R]).unwrap_or(u32::MAX),
            gas_timestamp: to_local(gas_timestamp),
            gas: self
                .registers_at(gas_timestamp)
                .map_or(start_registers[GAS], |r| r[GAS]),
            tariff,
        })
    }
}

impl Archive {
    /// The registers at `t` within the simulated hours (each hour's energy spread evenly).
    fn registers_at(&self, t: OffsetDateTime) -> Option<[u64; FIELDS]> {
        let (first, _) = self.hours.first()?;
        let index = usize::try_from((t - *first).whole_hours()).ok()?;
        let (start, values) = self.hours.get(index)?;
        let seconds = (t - *start).whole_seconds().unsigned_abs();
        let starts = self.starts[index];
        Some(std::array::from_fn(|f| {
            starts[f] + values[f] * seconds / 3_600
        }))
    }
}

/// When DSMR-reader's statistics run writes the day that ends at `end` (local midnight).
fn archived_at(opts: &HistoryOptions, end: OffsetDateTime) -> OffsetDateTime {
    let late = Duration::hours(i64::from(opts.day_row_delay));
    let gas = if opts.gas {
        opts.gas_reading_delay
    } else {
        Duration::ZERO
    };
    let wait = STATS_RETRY.max(late).max(gas);
    let retry = STATS_RETRY.whole_seconds();
    let runs = (wait.whole_seconds() + retry - 1) / retry;
    end + Duration::seconds(runs * retry)
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

    /// DSMR-reader 5.11 writes a day's hour and day rows together, at the first run after
    /// midnight that finds the day's readings processed (00:05) and, with gas, the next day's
    /// first gas reading in; until then the day's hours exist only as readings.
    #[test]
    fn statistics_are_written_after_midnight_for_the_day_before() {
        let at = |now: OffsetDateTime, gas: bool, gas_delay: Duration| {
            Archive::new(HistoryOptions {
                first_day: date!(2025 - 11 - 10),
                gas,
                gas_reading_delay: gas_delay,
                now: ArchiveNow::At(now),
                ..HistoryOptions::default()
            })
        };
        let afternoon = at(datetime!(2025-11-12 14:30 +1), true, Duration::ZERO);
        assert_eq!(afternoon.published_day_rows().len(), 2);
        assert_eq!(afternoon.hour_rows().len(), 48);
        assert_eq!(afternoon.hours().len(), 48 + 14, "today's complete hours");
        assert_eq!(
            afternoon.hours().last().map(|h| h.0),
            Some(datetime!(2025-11-12 13:00 +1))
        );
        assert_eq!(afternoon.day_rows().len(), 2);

        let midnight = datetime!(2025-11-13 00:00 +1);
        for (now, gas, delay, archived) in [
            (midnight, true, Duration::ZERO, 2),
            (midnight + Duration::seconds(299), true, Duration::ZERO, 2),
            (midnight + STATS_RETRY, true, Duration::ZERO, 3),
            (
                midnight + Duration::minutes(15),
                true,
                Duration::minutes(17),
                2,
            ),
            (
                midnight + Duration::minutes(20),
                true,
                Duration::minutes(17),
                3,
            ),
            (midnight + STATS_RETRY, false, Duration::minutes(17), 3),
        ] {
            let archive = at(now, gas, delay);
            assert_eq!(archive.day_rows().len(), 3);
            assert_eq!(
                archive.published_day_rows().len(),
                archived,
                "{now} gas {gas} first gas reading {delay}"
            );
            assert_eq!(archive.hour_rows().len(), archived * 24);
        }
        let late_gas = at(midnight + Duration::HOUR, true, Duration::minutes(17));
        assert_eq!(
            late_gas.day_rows()[2].archived_at,
            midnight + Duration::minutes(20)
        );
    }

    #[test]
    fn the_clock_moves_forward_only_and_archives_as_it_goes() {
        let mut archive = Archive::new(HistoryOptions {
            first_day: date!(2025 - 11 - 10),
            days: 2,
            ..HistoryOptions::default()
        });
        assert_eq!(archive.now(), datetime!(2025-11-12 00:05 +1));
        assert_eq!(archive.published_day_rows().len(), 2);
        archive.extend(23);
        assert_eq!(archive.hour_rows().len(), 48, "today only as readings");
        assert_eq!(archive.hours().len(), 48 + 23);
        archive.advance_to(datetime!(2025-11-11 00:00 +1));
        assert_eq!(archive.now(), datetime!(2025-11-12 23:05 +1));
        archive.extend(1);
        assert_eq!(archive.published_day_rows().len(), 3);
        assert_eq!(archive.hour_rows().len(), 72);
    }

    /// A backend down after midnight writes the day late, hour rows included.
    #[test]
    fn a_late_run_writes_hours_and_day_together() {
        let archive = Archive::new(HistoryOptions {
            first_day: date!(2025 - 11 - 10),
            day_row_delay: 6,
            now: ArchiveNow::At(datetime!(2025-11-12 05:59 +1)),
            ..HistoryOptions::default()
        });
        assert_eq!(archive.published_day_rows().len(), 1);
        assert_eq!(archive.hour_rows().len(), 24);
        assert_eq!(
            archive.day_rows()[1].archived_at,
            datetime!(2025-11-12 06:00 +1)
        );
    }

    #[test]
    fn a_day_without_readings_has_no_row() {
        let archive = Archive::new(HistoryOptions {
            first_day: date!(2025 - 11 - 10),
            days: 3,
            gaps: vec![(datetime!(2025-11-10 23:00 UTC), 24)],
            ..HistoryOptions::default()
        });
        let days: Vec<Date> = archive.published_day_rows().iter().map(|d| d.day).collect();
        assert_eq!(days, [date!(2025 - 11 - 10), date!(2025 - 11 - 12)]);
        assert_eq!(archive.hour_rows().len(), 48);
    }

    /// The readings at the hour boundaries are the registers an hour row is the difference of.
    #[test]
    fn readings_carry_the_registers_of_the_hours() {
        let gap = datetime!(2025-11-10 10:00 UTC);
        let archive = Archive::new(HistoryOptions {
            first_day: date!(2025 - 11 - 10),
            days: 1,
            gaps: vec![(gap, 2)],
            ..HistoryOptions::default()
        });
        assert_eq!(archive.reading_count(), 22 * 360);
        let first = archive.reading(0).expect("a reading");
        assert_eq!(first.timestamp, datetime!(2025-11-10 00:00 +1));
        assert_eq!(first.registers, HistoryOptions::default().start_registers);
        let at_nine = archive.reading_index(datetime!(2025-11-10 09:00 UTC));
        let at_ten = archive.reading_index(datetime!(2025-11-10 09:59:51 UTC));
        assert_eq!(at_ten, at_nine + 360, "09:59:51 is after 09:59:50");
        let b = archive
            .reading(at_ten)
            .expect("the first reading after the gap");
        assert_eq!(b.timestamp, datetime!(2025-11-10 13:00 +1));
        let row = archive
            .hour_rows()
            .iter()
            .find(|r| r.hour_start == datetime!(2025-11-10 09:00 +1))
            .expect("an hour row");
        let at_eight = archive.reading_index(datetime!(2025-11-10 08:00 UTC));
        let (a, b) = (archive.reading(at_eight), archive.reading(at_eight + 360));
        let (a, b) = (a.expect("08:00 UTC"), b.expect("09:00 UTC"));
        assert_eq!(b.timestamp, datetime!(2025-11-10 10:00 +1));
        for f in 0..FIELDS {
            assert_eq!(a.registers[f] + row.values[f], b.registers[f], "field {f}");
        }
        let mid = archive
            .reading(archive.reading_index(datetime!(2025-11-10 09:30:01 UTC)))
            .expect("09:30:10");
        assert_eq!(mid.timestamp, datetime!(2025-11-10 10:30:10 +1));
        assert_eq!(mid.gas_timestamp, datetime!(2025-11-10 10:30 +1));
        assert_eq!(
            archive.reading_index(datetime!(2025-11-11 00:00 +1)),
            archive.reading_count()
        );
        assert_eq!(archive.reading(archive.reading_count()), None);
    }

    /// With DSMR-reader's default grouping an hour row misses the hour's last minute (its last
    /// five minutes of gas), a day row its last minute of electricity; the readings do not.
    #[test]
    fn default_grouping_leaves_minutes_out_of_the_rows() {
        let archive = Archive::new(HistoryOptions {
            first_day: date!(2025 - 11 - 10),
            days: 1,
            grouping: Grouping::Defaults,
            ..HistoryOptions::default()
        });
        for (row, (_, values)) in archive.hour_rows().iter().zip(archive.hours()) {
            assert_eq!(row.values[E2], values[E2] * 59 / 60);
            assert_eq!(row.values[GAS], values[GAS] * 55 / 60);
        }
        let day = &archive.day_rows()[0];
        // The last hour, 23:00, is low tariff.
        let hours: u64 = archive.hours().iter().map(|h| h.1[E1]).sum();
        let last = archive.hours()[23].1[E1];
        assert!(last >= 60, "{last}");
        assert_eq!(day.consumption[E1], hours - (last - last * 59 / 60));
        let gas_rows: u64 = archive.hour_rows().iter().map(|r| r.values[GAS]).sum();
        assert_eq!(day.consumption[GAS], gas_rows);
    }

    /// With a gas meter that relays late, the first reading after an hour boundary still
    /// carries the value from before it.
    #[test]
    fn a_late_gas_value_lags_the_readings() {
        let archive = Archive::new(HistoryOptions {
            first_day: date!(2025 - 11 - 10),
            days: 1,
            gas_lag: Duration::minutes(3),
            ..HistoryOptions::default()
        });
        let read = |t: OffsetDateTime| {
            archive
                .reading(archive.reading_index(t))
                .expect("a reading")
        };
        let at_ten = read(datetime!(2025-11-10 10:00 +1));
        assert_eq!(at_ten.gas_timestamp, datetime!(2025-11-10 09:55 +1));
        let before = read(datetime!(2025-11-10 09:58 +1));
        assert_eq!(
            (before.gas_timestamp, before.gas),
            (at_ten.gas_timestamp, at_ten.gas)
        );
        let later = read(datetime!(2025-11-10 10:03 +1));
        assert_eq!(later.gas_timestamp, datetime!(2025-11-10 10:00 +1));
        assert_eq!(
            later.gas, at_ten.registers[GAS],
            "the 10:00 value, three minutes on"
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
