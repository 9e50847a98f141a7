//! Map stage, the register guard: a meter register Home Assistant sums as `total_increasing`
//! never goes out as 0, lower than before, or risen faster than any household consumes, since
//! Home Assistant would count any of those as a meter reset.

use std::collections::HashMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::Rejection;

/// Last published value and its time, per register and device.
#[derive(Debug, Default)]
pub(super) struct RegisterGuard {
    last: HashMap<(Arc<str>, usize), (f64, OffsetDateTime)>,
}

impl RegisterGuard {
    /// Whether `value`, read `at`, may be published for register `index` of `device`, given
    /// the last value recorded for it. Records nothing.
    pub(super) fn check(
        &self,
        device: &Arc<str>,
        index: usize,
        value: f64,
        at: OffsetDateTime,
        max_per_hour: f64,
    ) -> Result<(), Rejection> {
        if value <= 0.0 {
            return Err(Rejection::Zero);
        }
        let Some(&(previous, previous_at)) = self.last.get(&(device.clone(), index)) else {
            return Ok(());
        };
        if value < previous {
            return Err(Rejection::Decrease);
        }
        // A minute of slack absorbs clock jitter between the meter and DSMR-reader.
        let hours = ((at - previous_at).as_seconds_f64() / 3600.0).max(0.0) + 1.0 / 60.0;
        if value - previous > max_per_hour * hours {
            return Err(Rejection::Jump);
        }
        Ok(())
    }

    /// Remembers `value` as the last one published for register `index` of `device`.
    pub(super) fn record(
        &mut self,
        device: &Arc<str>,
        index: usize,
        value: f64,
        at: OffsetDateTime,
    ) {
        self.last.insert((device.clone(), index), (value, at));
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-11-26 14:00:00 +01:00);

    #[test]
    fn zero_drop_and_jump_are_held_back_until_recorded() {
        let meter: Arc<str> = Arc::from("dsmrbridge_meter");
        let mut guard = RegisterGuard::default();
        assert_eq!(guard.check(&meter, 0, 0.0, T0, 100.0), Err(Rejection::Zero));
        assert_eq!(
            guard.check(&meter, 0, -1.0, T0, 100.0),
            Err(Rejection::Zero)
        );
        // Nothing recorded yet: any positive value is the first.
        assert_eq!(guard.check(&meter, 0, 1000.0, T0, 100.0), Ok(()));
        assert_eq!(guard.check(&meter, 0, 5.0, T0, 100.0), Ok(()));
        guard.record(&meter, 0, 1000.0, T0);
        assert_eq!(
            guard.check(&meter, 0, 999.999, T0, 100.0),
            Err(Rejection::Decrease)
        );
        assert_eq!(guard.check(&meter, 0, 1000.0, T0, 100.0), Ok(()));
        // An hour (plus a minute of slack) allows 100 kWh more, not 102.
        let later = T0 + time::Duration::hours(1);
        assert_eq!(guard.check(&meter, 0, 1100.0, later, 100.0), Ok(()));
        assert_eq!(
            guard.check(&meter, 0, 1102.0, later, 100.0),
            Err(Rejection::Jump)
        );
        // Checking records nothing.
        assert_eq!(guard.check(&meter, 0, 1000.5, T0, 100.0), Ok(()));
    }

    #[test]
    fn each_register_of_each_meter_has_its_own_last_value() {
        let old: Arc<str> = Arc::from("dsmrbridge_old");
        let new: Arc<str> = Arc::from("dsmrbridge_new");
        let mut guard = RegisterGuard::default();
        guard.record(&old, 0, 1000.0, T0);
        assert_eq!(guard.check(&old, 1, 5.0, T0, 100.0), Ok(()));
        assert_eq!(guard.check(&new, 0, 5.0, T0, 100.0), Ok(()));
        assert_eq!(
            guard.check(&old, 0, 5.0, T0, 100.0),
            Err(Rejection::Decrease)
        );
    }
}
