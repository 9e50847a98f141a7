//! History, the plan (pure): where Home Assistant's own statistics of a sensor begin (the
//! junction), which of DSMR-reader's rows go beneath them, the install day's hours filled from
//! DSMR-reader's readings, and the one offset that joins Home Assistant's rows to the archive.
//!
//! Everything here is worked out from what Home Assistant holds at the time, never from a
//! remembered flag: run twice, the second run finds the junction continuous and moves nothing.

use time::{Duration, OffsetDateTime};

use super::ledger::Row;

/// Home Assistant's first own row of a sensor: the first long-term row it compiled (or, before
/// its first hourly compile, its first 5-minute row), in thousandths of the sensor's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Junction {
    /// The hour the row lies in: rows from here on are Home Assistant's, before it the archive's.
    pub hour: OffsetDateTime,
    /// The register at the row's end (the sensor's state).
    pub state: i64,
    /// The row's sum as Home Assistant holds it.
    pub sum: i64,
    /// For a day total, the local midnight its day began at: the row's `last_reset`, which
    /// Home Assistant took from the sensor. The archive's days before it are beneath.
    pub day_start: Option<OffsetDateTime>,
}

/// The most hours filled from readings (one request each).
const FILL_HOURS_MAX: usize = 7 * 24;

/// A register reading of DSMR-reader at an hour boundary, in thousandths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub at: OffsetDateTime,
    pub register: i64,
}

/// The hour boundaries between the archive's last row (`last`, whose hour ends at the first)
/// and the junction: where the install day's readings are wanted. Empty when the archive
/// already reaches the junction.
pub fn fill_boundaries(last: &Row, junction: &Junction) -> Vec<OffsetDateTime> {
    let mut at = last.start + Duration::HOUR;
    let mut boundaries = Vec::new();
    // DSMR-reader archives each day after its midnight: the install day's hours, or a few days
    // when its statistics fell behind; older hours missing from it are a gap of its own.
    while at <= junction.hour && boundaries.len() <= FILL_HOURS_MAX {
        boundaries.push(at);
        at += Duration::HOUR;
    }
    if boundaries.len() < 2 {
        return Vec::new();
    }
    boundaries
}

/// The hours between the archive's last row and the junction, from the readings at their
/// boundaries (`readings`, sorted; the first at `last`'s end): each hour's row holds the
/// register at its end and the sum continues from `last`. An hour without a reading at its end
/// is skipped and its energy lands on the next hour that has one; a register that went down (a
/// meter swap) adds nothing.
pub fn fill(last: &Row, readings: &[Reading], junction: &Junction) -> Vec<Row> {
    let base_at = last.start + Duration::HOUR;
    // From the register at the archive's end: DSMR-reader's reading there, else the last row's.
    let mut register = match readings.first() {
        Some(first) if first.at == base_at => first.register,
        _ => match last.state {
            Some(state) => state,
            None => return Vec::new(),
        },
    };
    let mut sum = last.sum;
    let mut rows = Vec::new();
    for reading in readings
        .iter()
        .filter(|r| r.at > base_at && r.at <= junction.hour)
    {
        sum = sum.saturating_add(reading.register.saturating_sub(register).max(0));
        register = reading.register;
        rows.push(Row {
            start: reading.at - Duration::HOUR,
            state: Some(reading.register),
            sum,
        });
    }
    rows
}

/// The one offset that joins Home Assistant's rows to the archive beneath them: the junction's
/// hour then shows its whole energy, the register's rise from the hour's start (`reading`, or
/// the last row's state) to the junction's state. Zero when they are joined already, and when
/// nothing lies beneath (Home Assistant's rows are then the only ones).
pub fn offset(last: Option<&Row>, reading: Option<i64>, junction: &Junction) -> i64 {
    let Some(last) = last else {
        return 0;
    };
    // Directly beneath the junction DSMR-reader's reading is the register itself (hour rows can
    // fall short of it); across a gap the energy since the last row belongs to the junction's
    // hour, so the last row's register is the start.
    let adjacent = last.start + Duration::HOUR == junction.hour;
    let start = if adjacent {
        reading.or(last.state)
    } else {
        last.state.or(reading)
    };
    let energy = match start {
        Some(start) if junction.state >= start => junction.state - start,
        // A new meter, or no register known: the energy Home Assistant itself saw.
        _ => junction.sum.max(0),
    };
    last.sum.saturating_add(energy).saturating_sub(junction.sum)
}

/// The one offset that joins a day total's own rows (a day cost's) to the archive's day rows
/// beneath them: the junction's sum then is the last day row's sum plus the junction's state,
/// the cost of the junction's day from its midnight (the sensor's state is the day's cost so far,
/// so its whole day is counted, not only what Home Assistant saw from its first state on).
/// Beneath lies the day before the junction's; where DSMR-reader has not archived the days
/// between yet, the junction joins the last one there is, and the run after DSMR-reader archived
/// them moves Home Assistant's rows once more onto them: their rows keep one offset. Zero when
/// joined, and when nothing lies beneath.
pub fn cost_offset(last: Option<&Row>, junction: &Junction) -> i64 {
    let Some(last) = last else {
        return 0;
    };
    last.sum
        .saturating_add(junction.state)
        .saturating_sub(junction.sum)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn row(start: OffsetDateTime, state: i64, sum: i64) -> Row {
        Row {
            start,
            state: Some(state),
            sum,
        }
    }

    #[test]
    fn the_junction_hour_shows_its_whole_energy() {
        let last = row(datetime!(2026-12-06 12:00 UTC), 10_500, 500);
        // Core saw its first state at 10_620 in the 13:00 hour, ending at 10_700.
        let junction = Junction {
            hour: datetime!(2026-12-06 13:00 UTC),
            state: 10_700,
            sum: 80,
            day_start: None,
        };
        let by = offset(Some(&last), Some(10_500), &junction);
        assert_eq!(junction.sum + by - last.sum, 200);
        // Joined, the next run moves nothing.
        let joined = Junction {
            sum: junction.sum + by,
            ..junction
        };
        assert_eq!(offset(Some(&last), Some(10_500), &joined), 0);
    }

    #[test]
    fn the_reading_beats_hour_rows_that_fall_short() {
        let last = row(datetime!(2026-12-06 12:00 UTC), 10_490, 500);
        let junction = Junction {
            hour: datetime!(2026-12-06 13:00 UTC),
            state: 10_700,
            sum: 0,
            day_start: None,
        };
        assert_eq!(offset(Some(&last), Some(10_500), &junction), 700);
    }

    #[test]
    fn nothing_beneath_moves_nothing_and_a_new_meter_keeps_cores_energy() {
        let junction = Junction {
            hour: datetime!(2026-12-06 13:00 UTC),
            state: 300,
            sum: 40,
            day_start: None,
        };
        assert_eq!(offset(None, None, &junction), 0);
        let old_meter = row(datetime!(2026-12-06 12:00 UTC), 37_133_000, 9_000);
        assert_eq!(offset(Some(&old_meter), None, &junction), 9_000);
    }

    #[test]
    fn the_install_day_is_filled_from_readings() {
        let last = row(datetime!(2026-12-06 22:00 UTC), 1_000, 70);
        let junction = Junction {
            hour: datetime!(2026-12-07 03:00 UTC),
            state: 1_900,
            sum: 10,
            day_start: None,
        };
        let boundaries = fill_boundaries(&last, &junction);
        assert_eq!(boundaries.len(), 5);
        assert_eq!(boundaries[0], datetime!(2026-12-06 23:00 UTC));
        assert_eq!(boundaries[4], datetime!(2026-12-07 03:00 UTC));
        let readings: Vec<Reading> = boundaries
            .iter()
            .zip([1_100, 1_300, 1_300, 1_600, 1_800])
            .filter(|(at, _)| **at != datetime!(2026-12-07 01:00 UTC))
            .map(|(at, register)| Reading { at: *at, register })
            .collect();
        let rows = fill(&last, &readings, &junction);
        let starts: Vec<_> = rows.iter().map(|r| r.start).collect();
        assert_eq!(
            starts,
            [
                datetime!(2026-12-06 23:00 UTC),
                datetime!(2026-12-07 01:00 UTC),
                datetime!(2026-12-07 02:00 UTC)
            ]
        );
        assert_eq!(rows[0].sum, 70 + 200, "from DSMR-reader's reading at 23:00");
        assert_eq!(
            rows[1].sum,
            70 + 500,
            "the hour without a reading lands on the next"
        );
        assert_eq!(rows[2].sum, 70 + 700);
        assert_eq!(rows[2].state, Some(1_800));
        let by = offset(rows.last(), Some(1_800), &junction);
        assert_eq!(junction.sum + by - rows[2].sum, 100);
    }

    #[test]
    fn an_archive_that_reaches_the_junction_needs_no_fill() {
        let last = row(datetime!(2026-12-06 12:00 UTC), 10_500, 500);
        let junction = Junction {
            hour: datetime!(2026-12-06 13:00 UTC),
            state: 10_700,
            sum: 80,
            day_start: None,
        };
        assert!(fill_boundaries(&last, &junction).is_empty());
    }

    /// A day cost: Core's first state (1.20 EUR) came at 10:20 on the day after the archive's
    /// last, its first hour ended at 1.45 EUR with a sum of 0.25 since that state.
    fn cost_junction(sum: i64) -> Junction {
        Junction {
            hour: datetime!(2026-12-07 09:00 UTC),
            state: 145,
            sum,
            day_start: Some(datetime!(2026-12-06 23:00 UTC)),
        }
    }

    #[test]
    fn a_day_cost_junction_counts_its_whole_day_and_is_joined_once() {
        let last = row(datetime!(2026-12-05 23:00 UTC), 310, 9_000);
        let junction = cost_junction(25);
        let by = cost_offset(Some(&last), &junction);
        assert_eq!(
            junction.sum + by - last.sum,
            145,
            "the day's cost from midnight"
        );
        let joined = cost_junction(25 + by);
        assert_eq!(
            cost_offset(Some(&last), &joined),
            0,
            "a re-run moves nothing"
        );
        assert_eq!(cost_offset(None, &junction), 0, "nothing beneath");
    }

    #[test]
    fn a_sunny_day_lowers_the_sum_and_the_day_archived_late_moves_the_rows_once_more() {
        // The day before the junction's returned more than it bought: its cost is negative.
        let before = row(datetime!(2026-12-04 23:00 UTC), 280, 8_700);
        let sunny = row(datetime!(2026-12-05 23:00 UTC), -85, 8_615);
        let junction = cost_junction(25);
        // Right after midnight DSMR-reader had archived only the day before the sunny one.
        let first = cost_offset(Some(&before), &junction);
        assert_eq!(junction.sum + first, 8_700 + 145);
        // Once it archived the sunny day, its row lies beneath and the rows move by its cost.
        let moved = cost_junction(25 + first);
        let second = cost_offset(Some(&sunny), &moved);
        assert_eq!(second, -85);
        assert_eq!(moved.sum + second - sunny.sum, 145);
        assert_eq!(
            cost_offset(Some(&sunny), &cost_junction(25 + first + second)),
            0
        );
    }
}
