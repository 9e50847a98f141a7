//! The simulated server's time zone: the offset DSMR-reader prints its timestamps in, and how
//! it places a filter time that carries no offset. Django makes such a time aware in the
//! server's zone and refuses it when the zone's clock skips it (spring) or shows it twice
//! (autumn); the simulator does the same, so a client that sends naive times fails here as it
//! fails against DSMR-reader.
//!
//! Summer time is hand-coded for the EU rule (from the last Sunday of March to the last
//! Sunday of October, switching at 01:00 UTC), which is what DSMR-reader's users in the
//! Netherlands and Belgium live by; no tz database is needed for it.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

/// The server's time zone (Django's `TIME_ZONE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeZone {
    /// One offset all year; every naive time has exactly one place.
    Fixed(UtcOffset),
    /// An EU zone: `standard` in winter, an hour more in summer.
    Eu { name: String, standard: UtcOffset },
}

/// Why a naive time has no single place in the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplaceable {
    /// The clock shows it twice (the autumn change).
    Ambiguous,
    /// The clock skips it (the spring change).
    Missing,
}

impl TimeZone {
    /// DSMR-reader's default, `Europe/Amsterdam`: CET, CEST in summer.
    pub fn europe_amsterdam() -> Self {
        Self::eu(
            "Europe/Amsterdam",
            UtcOffset::from_hms(1, 0, 0).expect("+01:00"),
        )
    }

    /// An EU zone by its tz name and standard (winter) offset, e.g. `Europe/London` and UTC.
    pub fn eu(name: &str, standard: UtcOffset) -> Self {
        Self::Eu {
            name: name.to_owned(),
            standard,
        }
    }

    /// The tz name Django prints in its error.
    pub fn name(&self) -> String {
        match self {
            Self::Fixed(offset) => {
                let sign = if offset.is_negative() { '-' } else { '+' };
                format!(
                    "UTC{sign}{:02}:{:02}",
                    offset.whole_hours().abs(),
                    offset.minutes_past_hour().abs()
                )
            }
            Self::Eu { name, .. } => name.clone(),
        }
    }

    /// The zone's offset at the instant `t`.
    pub fn offset_at(&self, t: OffsetDateTime) -> UtcOffset {
        match self {
            Self::Fixed(offset) => *offset,
            Self::Eu { standard, .. } => {
                if is_eu_summer(t) {
                    summer(*standard)
                } else {
                    *standard
                }
            }
        }
    }

    /// `t` as the zone's clock shows it.
    pub fn local(&self, t: OffsetDateTime) -> OffsetDateTime {
        t.checked_to_offset(self.offset_at(t)).unwrap_or(t)
    }

    /// Places a wall-clock time without offset in the zone, as Django's `make_aware` does.
    pub fn place(&self, naive: PrimitiveDateTime) -> Result<OffsetDateTime, Unplaceable> {
        let standard = match self {
            Self::Fixed(offset) => return Ok(naive.assume_offset(*offset)),
            Self::Eu { standard, .. } => *standard,
        };
        let fits = |offset: UtcOffset| {
            let t = naive.assume_offset(offset);
            (self.offset_at(t) == offset).then_some(t)
        };
        match (fits(standard), fits(summer(standard))) {
            (Some(t), None) | (None, Some(t)) => Ok(t),
            (Some(_), Some(_)) => Err(Unplaceable::Ambiguous),
            (None, None) => Err(Unplaceable::Missing),
        }
    }
}

fn summer(standard: UtcOffset) -> UtcOffset {
    UtcOffset::from_whole_seconds(standard.whole_seconds() + 3600).unwrap_or(standard)
}

/// Summer time runs from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last
/// Sunday of October.
fn is_eu_summer(t: OffsetDateTime) -> bool {
    let utc = t.to_offset(UtcOffset::UTC);
    let year = utc.year();
    let (Some(start), Some(end)) = (
        change_at(year, Month::March),
        change_at(year, Month::October),
    ) else {
        return false;
    };
    let at = PrimitiveDateTime::new(utc.date(), utc.time());
    start <= at && at < end
}

/// 01:00 UTC on the last Sunday of `month` (March and October both have 31 days).
fn change_at(year: i32, month: Month) -> Option<PrimitiveDateTime> {
    let last = Date::from_calendar_date(year, month, 31).ok()?;
    let back = last.weekday().number_days_from_sunday();
    let sunday = last.checked_sub(time::Duration::days(i64::from(back)))?;
    debug_assert_eq!(sunday.weekday(), Weekday::Sunday);
    Some(PrimitiveDateTime::new(
        sunday,
        Time::from_hms(1, 0, 0).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use time::macros::{datetime, offset};

    use super::*;

    #[test]
    fn amsterdam_switches_on_the_last_sundays_at_one_utc() {
        let zone = TimeZone::europe_amsterdam();
        assert_eq!(
            zone.offset_at(datetime!(2026-10-25 00:59:59 UTC)),
            offset!(+2)
        );
        assert_eq!(
            zone.offset_at(datetime!(2026-10-25 01:00:00 UTC)),
            offset!(+1)
        );
        assert_eq!(
            zone.offset_at(datetime!(2026-03-29 00:59:59 UTC)),
            offset!(+1)
        );
        assert_eq!(
            zone.offset_at(datetime!(2026-03-29 01:00:00 UTC)),
            offset!(+2)
        );
        assert_eq!(
            zone.offset_at(datetime!(2025-10-26 00:30:00 UTC)),
            offset!(+2)
        );
        assert_eq!(
            zone.offset_at(datetime!(2025-10-26 01:30:00 UTC)),
            offset!(+1)
        );
    }

    #[test]
    fn naive_times_in_the_changed_hours_have_no_single_place() {
        let zone = TimeZone::europe_amsterdam();
        assert_eq!(
            zone.place(datetime!(2026-10-25 02:30:00)),
            Err(Unplaceable::Ambiguous)
        );
        assert_eq!(
            zone.place(datetime!(2026-03-29 02:30:00)),
            Err(Unplaceable::Missing)
        );
        assert_eq!(
            zone.place(datetime!(2026-10-25 03:00:00)),
            Ok(datetime!(2026-10-25 03:00:00 +1))
        );
        assert_eq!(
            zone.place(datetime!(2026-03-29 03:00:00)),
            Ok(datetime!(2026-03-29 03:00:00 +2))
        );
        let london = TimeZone::eu("Europe/London", UtcOffset::UTC);
        assert_eq!(
            london.place(datetime!(2026-10-25 01:30:00)),
            Err(Unplaceable::Ambiguous)
        );
        assert_eq!(
            london.place(datetime!(2026-10-25 02:30:00)),
            Ok(datetime!(2026-10-25 02:30:00 UTC))
        );
        let fixed = TimeZone::Fixed(offset!(-5));
        assert_eq!(
            fixed.place(datetime!(2026-10-25 02:30:00)),
            Ok(datetime!(2026-10-25 02:30:00 -5))
        );
    }
}
