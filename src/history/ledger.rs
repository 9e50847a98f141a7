//! History, pure core: DSMR-reader's hour and day statistics become Home Assistant's hourly
//! long-term statistics rows (`state` = the register at the end of the hour, `sum` = energy
//! since the first imported hour) and a row per day of each day cost.
//!
//! Amounts stay in integer thousandths (Wh, litres) and cents, so that a day's change of the
//! sum equals DSMR-reader's day statistics exactly, over years. The day rows anchor the hours:
//! energy the hour rows miss (hours DSMR-reader did not archive) is booked on the first hour
//! after the gap within that day, so no hour is invented and none is lost; the day rows'
//! registers give `state` and reveal a meter swap (registers restart, the sum keeps growing).

use time::{Date, Duration, OffsetDateTime, UtcOffset};

/// Energy registers, in the order of DSMR-reader's hour statistics.
pub const REGISTERS: usize = 5;
/// The gas register's index.
pub const GAS: usize = 4;
/// Day costs, in the catalog's order (`history::cost_keys`): electricity tariff 1, tariff 2,
/// fixed, total, gas.
pub const COSTS: usize = 5;

/// One `statistics/hour` row, amounts in thousandths (Wh, litres).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HourStat {
    /// The hour's start in UTC, on the hour.
    pub start: OffsetDateTime,
    /// DSMR-reader's (local) day the hour belongs to.
    pub day: Date,
    pub values: [i64; REGISTERS],
}

/// One `statistics/day` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayStat {
    pub day: Date,
    /// The day's start (local midnight) in UTC.
    pub start: OffsetDateTime,
    /// The day's consumption per register, in thousandths.
    pub consumption: [i64; REGISTERS],
    /// The registers at the day's start, in thousandths; `None` where DSMR-reader has none.
    pub registers: [Option<i64>; REGISTERS],
    /// Costs in cents; `None` where DSMR-reader has none (gas without a gas meter).
    pub costs: [Option<i64>; COSTS],
}

/// Where a statistic stands in Home Assistant before the rows to build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Point {
    pub sum: i64,
    pub state: Option<i64>,
}

/// One long-term statistics row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// UTC, on the hour.
    pub start: OffsetDateTime,
    pub state: Option<i64>,
    pub sum: i64,
}

/// The rows of every register.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    pub energy: [Vec<Row>; REGISTERS],
}

/// Seeds: each statistic's last row before the first hour given to `build`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seeds {
    pub energy: [Option<Point>; REGISTERS],
    pub costs: [Option<Point>; COSTS],
}

/// The UTC hour a DSMR-reader `hour_start` belongs to. Whole-hour offsets (Europe) keep the
/// hour; a half-hour zone's hour is booked on the UTC hour it starts in.
pub fn utc_hour(start: OffsetDateTime) -> OffsetDateTime {
    let utc = start.to_offset(UtcOffset::UTC);
    utc.replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(utc)
}

/// Builds the rows for `hours` (sorted by start) and `days` (sorted by day), continuing from
/// `seeds`. Days without a day row (today) book the hours as they are.
pub fn build(hours: &[HourStat], days: &[DayStat], seeds: &Seeds) -> Ledger {
    build_until(hours, days, seeds, None)
}

/// As `build`, for the rows before `until` (where Home Assistant's own statistics begin): a
/// day that reaches `until` gives its registers but not its totals, which hold hours that are
/// Home Assistant's, not the archive's.
pub fn build_until(
    hours: &[HourStat],
    days: &[DayStat],
    seeds: &Seeds,
    until: Option<OffsetDateTime>,
) -> Ledger {
    let hours: Vec<HourStat> = hours
        .iter()
        .filter(|h| until.is_none_or(|u| h.start < u))
        .cloned()
        .collect();
    let days: Vec<Day<'_>> = days
        .iter()
        .enumerate()
        .map(|(k, d)| Day {
            row: d,
            whole: until.is_none_or(|u| day_end(days, k).is_some_and(|end| end <= u)),
        })
        .collect();
    let mut ledger = Ledger::default();
    for (register, rows) in ledger.energy.iter_mut().enumerate() {
        *rows = energy_rows(&hours, &days, register, seeds.energy[register]);
    }
    ledger
}

/// The rows of day cost `cost` for the days (sorted) that begin before `before`, continuing
/// from `seed`: one row per day DSMR-reader priced, its `state` the day's cost (what the live
/// sensor shows at the day's end) and its `sum` the running total.
///
/// The row lies in the day's first hour: DSMR-reader's day row gives the day's start exactly,
/// but its end (after 23, 24 or 25 hours) only with the next day's row, which the newest
/// archived day does not have yet; a row at the first hour is the same row on every run, and
/// every view (hour, day, month) books the day's cost on its own day. A day without a price
/// (gas without a gas meter) gets no row.
pub fn cost_rows(
    days: &[DayStat],
    cost: usize,
    seed: Option<Point>,
    before: OffsetDateTime,
) -> Vec<Row> {
    let mut sum = seed.map_or(0, |p| p.sum);
    days.iter()
        .filter(|d| d.start < before)
        .filter_map(|d| {
            let amount = *d.costs.get(cost)?;
            let amount = amount?;
            sum = sum.saturating_add(amount);
            Some(Row {
                start: d.start,
                state: Some(amount),
                sum,
            })
        })
        .collect()
}

/// A day row, and whether all of its day lies before the rows' end.
struct Day<'a> {
    row: &'a DayStat,
    whole: bool,
}

/// The end of the `k`th day: the next day's start, or (without its row) 25 hours on, the
/// longest a local day lasts.
fn day_end(days: &[DayStat], k: usize) -> Option<OffsetDateTime> {
    let day = &days[k];
    match days.get(k + 1) {
        Some(next) if Some(next.day) == day.day.next_day() => Some(next.start),
        _ => day.start.checked_add(Duration::hours(25)),
    }
}

fn energy_rows(
    hours: &[HourStat],
    days: &[Day<'_>],
    register: usize,
    seed: Option<Point>,
) -> Vec<Row> {
    let mut rows = Vec::with_capacity(hours.len());
    let mut sum = seed.map_or(0, |p| p.sum);
    let mut state = seed.and_then(|p| p.state);
    // Energy of day rows without any hour row, carried to the next hour that has one.
    let mut carry = 0_i64;
    let mut day_index = 0;
    let mut i = 0;
    while i < hours.len() {
        let day = hours[i].day;
        let end = i + hours[i..].iter().take_while(|h| h.day == day).count();
        let group = &hours[i..end];
        while days.get(day_index).is_some_and(|d| d.row.day < day) {
            // A whole day without hour rows: its energy waits for the next hour.
            if days[day_index].whole {
                carry = carry.saturating_add(days[day_index].row.consumption[register].max(0));
            }
            day_index += 1;
        }
        let day_row = days
            .get(day_index)
            .filter(|d| d.row.day == day)
            .map(|d| d.row);
        let whole = days
            .get(day_index)
            .is_some_and(|d| d.row.day == day && d.whole);
        // DSMR-reader writes negative rows across a meter swap: no energy flows backwards.
        let mut values: Vec<i64> = group.iter().map(|h| h.values[register].max(0)).collect();
        if let Some(d) = day_row {
            if whole {
                let booked = values.iter().fold(0_i64, |a, v| a.saturating_add(*v));
                book(
                    &mut values,
                    group,
                    d.start,
                    d.consumption[register].max(0).saturating_sub(booked),
                );
            }
            day_index += 1;
        }
        let next_start = days
            .get(day_index)
            .filter(|d| Some(d.row.day) == day.next_day())
            .and_then(|d| d.row.registers[register]);
        // A known start register already holds energy carried from days without hour rows.
        let start = day_row
            .and_then(|d| d.registers[register])
            .or(state.map(|s| s.saturating_add(carry)));
        // DSMR-reader writes the hour of a meter swap as the new register minus the old: a
        // negative row, refused as energy (no energy flows backwards), marks where the new
        // meter's registers begin.
        let swap = group.iter().position(|h| h.values[register] < 0);
        let states = day_states(&values, start, next_start, swap);
        if let Some(first) = values.first_mut() {
            *first = first.saturating_add(carry);
            carry = 0;
        }
        for ((hour, value), end_state) in group.iter().zip(&values).zip(states) {
            sum = sum.saturating_add(*value);
            state = end_state;
            rows.push(Row {
                start: hour.start,
                state,
                sum,
            });
        }
        i = end;
    }
    rows
}

/// Books `deficit` (the day row's energy minus the hour rows') on the day's hours: missing
/// energy on the first hour after a gap (else the day's last hour), surplus (rounding in
/// DSMR-reader's hour rows) off the largest hours, never below 0.
fn book(values: &mut [i64], group: &[HourStat], day_start: OffsetDateTime, deficit: i64) {
    if values.is_empty() || deficit == 0 {
        return;
    }
    if deficit > 0 {
        let after_gap = group
            .windows(2)
            .position(|w| w[1].start - w[0].start > Duration::HOUR)
            .map(|p| p + 1);
        let target = if group[0].start > day_start {
            0
        } else {
            after_gap.unwrap_or(values.len() - 1)
        };
        values[target] = values[target].saturating_add(deficit);
        return;
    }
    let mut surplus = deficit.saturating_neg();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(values[k]));
    for k in order {
        let take = surplus.min(values[k]);
        values[k] -= take;
        surplus -= take;
        if surplus == 0 {
            break;
        }
    }
}

/// Registers at the end of each hour of a day: from the day's start register forward; on a day
/// whose end does not match the next day's start register (a meter swap), from the next day's
/// start backward for the hours of the new meter.
fn day_states(
    values: &[i64],
    start: Option<i64>,
    next_start: Option<i64>,
    swap: Option<usize>,
) -> Vec<Option<i64>> {
    let Some(from) = start else {
        return vec![None; values.len()];
    };
    let mut forward = Vec::with_capacity(values.len());
    let mut register = from;
    for value in values {
        register = register.saturating_add(*value);
        forward.push(Some(register));
    }
    let Some(next) = next_start else {
        return forward;
    };
    if register == next {
        return forward;
    }
    // A new meter: walk back from the next day's start to the swap where DSMR-reader's
    // negative row shows it, else while the register stays ≥ 0.
    let mut backward = next;
    for k in (0..values.len()).rev() {
        // The hour was the new meter's only if its register at the hour's start was ≥ 0.
        if backward.saturating_sub(values[k]) < 0 || swap.is_some_and(|p| k < p) {
            break;
        }
        forward[k] = Some(backward);
        backward = backward.saturating_sub(values[k]);
    }
    forward
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::{date, datetime};

    use super::*;

    fn hour(start: OffsetDateTime, day: Date, v: i64) -> HourStat {
        HourStat {
            start,
            day,
            values: [v, 0, 0, 0, v / 2],
        }
    }

    /// `n` hours of `day` starting at `start`, `v` each.
    fn day_hours(start: OffsetDateTime, day: Date, n: i64, v: i64) -> Vec<HourStat> {
        (0..n)
            .map(|k| hour(start + Duration::hours(k), day, v))
            .collect()
    }

    fn day_row(day: Date, start: OffsetDateTime, consumption: i64, register: i64) -> DayStat {
        DayStat {
            day,
            start,
            consumption: [consumption, 0, 0, 0, consumption / 2],
            registers: [
                Some(register),
                Some(0),
                Some(0),
                Some(0),
                Some(register / 2),
            ],
            costs: [Some(consumption / 100), Some(0), Some(95), None, None],
        }
    }

    #[test]
    fn state_is_the_register_at_the_end_of_the_hour_and_sum_starts_at_zero() {
        let d = date!(2025 - 01 - 10);
        let hours = day_hours(datetime!(2025-01-09 23:00 UTC), d, 24, 100);
        let days = [day_row(
            d,
            datetime!(2025-01-09 23:00 UTC),
            2_400,
            1_000_000,
        )];
        let ledger = build(&hours, &days, &Seeds::default());
        let rows = &ledger.energy[0];
        assert_eq!(rows.len(), 24);
        assert_eq!(rows[0].start, datetime!(2025-01-09 23:00 UTC));
        assert_eq!((rows[0].sum, rows[0].state), (100, Some(1_000_100)));
        assert_eq!((rows[23].sum, rows[23].state), (2_400, Some(1_002_400)));
    }

    #[test]
    fn a_day_cost_is_one_row_in_its_first_hour_with_the_running_total() {
        let mut days = [
            day_row(
                date!(2025 - 01 - 10),
                datetime!(2025-01-09 23:00 UTC),
                2_400,
                0,
            ),
            day_row(
                date!(2025 - 01 - 11),
                datetime!(2025-01-10 23:00 UTC),
                1_000,
                2_400,
            ),
            day_row(
                date!(2025 - 01 - 12),
                datetime!(2025-01-11 23:00 UTC),
                1_000,
                3_400,
            ),
        ];
        // A sunny day: the return's credit exceeds what was bought.
        days[1].costs[0] = Some(-130);
        let seed = Point {
            sum: 1_000,
            state: Some(24),
        };
        let rows = cost_rows(&days, 0, Some(seed), datetime!(2025-01-11 23:00 UTC));
        assert_eq!(
            rows,
            [
                Row {
                    start: datetime!(2025-01-09 23:00 UTC),
                    state: Some(24),
                    sum: 1_024
                },
                Row {
                    start: datetime!(2025-01-10 23:00 UTC),
                    state: Some(-130),
                    sum: 894
                }
            ],
            "the day the junction lies in is Home Assistant's"
        );
        assert!(
            cost_rows(&days, 3, None, datetime!(2026-01-01 00:00 UTC)).is_empty(),
            "no row without a price"
        );
    }

    #[test]
    fn a_gap_books_the_missing_energy_on_the_first_hour_after_it() {
        let d = date!(2025 - 01 - 10);
        let mut hours = day_hours(datetime!(2025-01-09 23:00 UTC), d, 24, 100);
        hours.drain(5..8);
        let days = [day_row(d, datetime!(2025-01-09 23:00 UTC), 2_400, 0)];
        let rows = &build(&hours, &days, &Seeds::default()).energy[0];
        assert_eq!(rows.len(), 21, "no invented rows");
        assert_eq!(rows[5].start, datetime!(2025-01-10 07:00 UTC));
        assert_eq!(rows[5].sum - rows[4].sum, 400);
        assert_eq!(rows[20].sum, 2_400, "no lost energy");
        assert_eq!(rows[20].state, Some(2_400));
    }

    #[test]
    fn a_day_without_hour_rows_lands_on_the_next_hour() {
        let d1 = date!(2025 - 01 - 10);
        let d3 = date!(2025 - 01 - 12);
        let mut hours = day_hours(datetime!(2025-01-09 23:00 UTC), d1, 24, 100);
        hours.extend(day_hours(datetime!(2025-01-11 23:00 UTC), d3, 24, 100));
        let days = [
            day_row(d1, datetime!(2025-01-09 23:00 UTC), 2_400, 0),
            day_row(
                date!(2025 - 01 - 11),
                datetime!(2025-01-10 23:00 UTC),
                1_000,
                2_400,
            ),
            day_row(d3, datetime!(2025-01-11 23:00 UTC), 2_400, 3_400),
        ];
        let rows = &build(&hours, &days, &Seeds::default()).energy[0];
        assert_eq!(rows.len(), 48);
        assert_eq!(rows[24].sum - rows[23].sum, 1_100);
        assert_eq!(rows[47].sum, 5_800);
        assert_eq!(rows[47].state, Some(5_800));
    }

    #[test]
    fn a_meter_swap_restarts_the_state_and_keeps_the_sum_growing() {
        let d1 = date!(2025 - 01 - 10);
        let d2 = date!(2025 - 01 - 11);
        let mut hours = day_hours(datetime!(2025-01-09 23:00 UTC), d1, 24, 100);
        hours.extend(day_hours(datetime!(2025-01-10 23:00 UTC), d2, 24, 100));
        // The new meter arrived for the day's last 4 hours: it read 400 at midnight.
        let days = [
            day_row(d1, datetime!(2025-01-09 23:00 UTC), 2_400, 50_000_000),
            day_row(d2, datetime!(2025-01-10 23:00 UTC), 2_400, 400),
        ];
        let rows = &build(&hours, &days, &Seeds::default()).energy[0];
        assert_eq!(rows[19].state, Some(50_002_000));
        assert_eq!(rows[20].state, Some(100));
        assert_eq!(rows[23].state, Some(400));
        assert_eq!(rows[47].state, Some(2_800));
        assert!(rows.windows(2).all(|w| w[1].sum >= w[0].sum));
        assert_eq!(rows[47].sum, 4_800);
    }

    #[test]
    fn a_negative_row_across_a_swap_adds_nothing_and_keeps_the_old_meters_states() {
        let d1 = date!(2025 - 01 - 10);
        let d2 = date!(2025 - 01 - 11);
        // The old meter reads 37_133 kWh; the new one 2 Wh at 20:00 UTC, 1_000 Wh at midnight.
        let mut hours = day_hours(datetime!(2025-01-09 23:00 UTC), d1, 24, 1);
        hours[21].values[0] = 2 - 37_133_020;
        for h in &mut hours[22..] {
            h.values[0] = 499;
        }
        hours.extend(day_hours(datetime!(2025-01-10 23:00 UTC), d2, 2, 100));
        let days = [
            day_row(d1, datetime!(2025-01-09 23:00 UTC), 21 + 998, 37_133_000),
            day_row(d2, datetime!(2025-01-10 23:00 UTC), 200, 1_000),
        ];
        let rows = &build(&hours, &days, &Seeds::default()).energy[0];
        assert!(
            rows.windows(2).all(|w| w[1].sum >= w[0].sum),
            "no hour falls"
        );
        assert_eq!(
            rows[20].state,
            Some(37_133_021),
            "the old meter's last hours"
        );
        assert_eq!(rows[21].state, Some(2));
        assert_eq!(rows[23].state, Some(1_000));
        assert_eq!(rows[23].sum, 21 + 998);
    }

    #[test]
    fn seeds_continue_sum_and_state() {
        let d = date!(2025 - 01 - 10);
        let hours = day_hours(datetime!(2025-01-09 23:00 UTC), d, 2, 100);
        let seeds = Seeds {
            energy: [
                Some(Point {
                    sum: 5_000,
                    state: Some(9_000),
                }),
                None,
                None,
                None,
                None,
            ],
            costs: [None; COSTS],
        };
        let ledger = build(&hours, &[], &seeds);
        assert_eq!(
            (ledger.energy[0][1].sum, ledger.energy[0][1].state),
            (5_200, Some(9_200))
        );
    }

    #[test]
    fn half_hour_zones_book_on_the_utc_hour() {
        assert_eq!(
            utc_hour(datetime!(2025-01-10 10:00 +05:30)),
            datetime!(2025-01-10 04:00 UTC)
        );
        assert_eq!(
            utc_hour(datetime!(2025-10-26 02:00 +01:00)),
            datetime!(2025-10-26 01:00 UTC)
        );
    }

    proptest! {
        /// For any archive, with gaps and rounding noise in the hour rows: rows only for
        /// archived hours, sums never fall, and each day's change of the sum equals the day row.
        #[test]
        fn each_day_changes_the_sum_by_its_day_row(
            days in proptest::collection::vec(
                (proptest::collection::vec((0_i64..3_000, any::<bool>()), 23..=25), -3_i64..=3),
                1..12,
            )
        ) {
            let mut hours = Vec::new();
            let mut day_rows = Vec::new();
            let mut t = datetime!(2025-01-01 23:00 UTC);
            let mut day = date!(2025 - 01 - 02);
            let mut register = 1_000_000;
            for (hs, noise) in &days {
                let start = t;
                let mut total = 0;
                for (v, archived) in hs {
                    total += v;
                    if *archived {
                        hours.push(HourStat { start: t, day, values: [*v, 0, 0, 0, 0] });
                    }
                    t += Duration::HOUR;
                }
                // DSMR-reader's day row comes from the registers; hour rows may round apart.
                let consumption = (total + noise).max(0);
                day_rows.push(DayStat {
                    day,
                    start,
                    consumption: [consumption, 0, 0, 0, 0],
                    registers: [Some(register), None, None, None, None],
                    costs: [None; COSTS],
                });
                register += consumption;
                day = day.next_day().unwrap();
            }
            let rows = &build(&hours, &day_rows, &Seeds::default()).energy[0];
            prop_assert_eq!(rows.len(), hours.len());
            prop_assert!(rows.windows(2).all(|w| w[1].sum >= w[0].sum));
            prop_assert!(rows.iter().all(|r| r.sum >= 0));
            // Sum at each day's end (last row at or before it) minus at its start.
            let sum_before = |t: OffsetDateTime| {
                rows.iter().take_while(|r| r.start < t).last().map_or(0, |r| r.sum)
            };
            let mut carried = 0;
            for (k, d) in day_rows.iter().enumerate() {
                let end = day_rows.get(k + 1).map_or(t, |n| n.start);
                let change = sum_before(end) - sum_before(d.start);
                let has_rows = rows.iter().any(|r| r.start >= d.start && r.start < end);
                if has_rows {
                    prop_assert_eq!(change, d.consumption[0] + carried, "day {}", d.day);
                    carried = 0;
                } else {
                    prop_assert_eq!(change, 0);
                    carried += d.consumption[0];
                }
            }
            let total: i64 = day_rows.iter().map(|d| d.consumption[0]).sum();
            if rows.last().is_some_and(|r| r.start >= day_rows.last().unwrap().start) {
                prop_assert_eq!(rows.last().map_or(0, |r| r.sum), total);
            }
        }
    }
}

#[cfg(test)]
mod any_input {
    use proptest::prelude::*;
    use time::OffsetDateTime;

    use super::*;

    fn time_at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    proptest! {
        /// Whatever the rows hold (any amounts, any dates in `time`'s range, in any order), the
        /// ledger returns rows and never panics; sums never fall.
        #[test]
        fn no_input_panics(
            hours in proptest::collection::vec(
                (-253_402_300_799_i64..253_402_300_799, proptest::array::uniform5(any::<i64>())),
                0..40,
            ),
            days in proptest::collection::vec(
                (
                    -253_402_300_799_i64..253_402_300_799,
                    proptest::array::uniform5(any::<i64>()),
                    proptest::array::uniform5(proptest::option::of(any::<i64>())),
                    proptest::array::uniform5(proptest::option::of(any::<i64>())),
                ),
                0..10,
            ),
            until in proptest::option::of(-253_402_300_799_i64..253_402_300_799),
        ) {
            let hours: Vec<HourStat> = hours
                .into_iter()
                .map(|(t, values)| {
                    let start = time_at(t);
                    HourStat { start, day: start.date(), values }
                })
                .collect();
            let days: Vec<DayStat> = days
                .into_iter()
                .map(|(t, consumption, registers, costs)| {
                    let start = time_at(t);
                    DayStat { day: start.date(), start, consumption, registers, costs }
                })
                .collect();
            let ledger = build_until(&hours, &days, &Seeds::default(), until.map(time_at));
            for rows in &ledger.energy {
                prop_assert!(rows.windows(2).all(|w| w[1].sum >= w[0].sum));
            }
            for cost in 0..COSTS {
                let rows = cost_rows(&days, cost, None, until.map_or(OffsetDateTime::UNIX_EPOCH, time_at));
                prop_assert!(rows.len() <= days.len());
            }
        }
    }
}
