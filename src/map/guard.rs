//! Map stage, the register guard: a meter register Home Assistant sums as `total_increasing`
//! never goes out as 0, lower than before, or risen faster than any household consumes, since
//! Home Assistant would count any of those as a meter reset.
//!
//! "Before" spans restarts: the broker retains what an earlier run published, and a value lower
//! than that would be a reset to Home Assistant just the same. And a first value has nothing to
//! be checked against, so it is only taken once a second reading agrees with it: one spike
//! right after a start would otherwise become the value every real one is "lower" than.

use std::collections::HashMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::Rejection;
use super::catalog::Key;

/// A register's value found retained on the broker at start, left there by an earlier run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetainedRegister {
    /// Table index of the register.
    pub(crate) index: Key,
    pub(crate) value: f64,
    /// The retained payload, for the log.
    pub(crate) text: String,
    /// The meter device whose retained discovery config lists the register, when one does.
    pub(crate) device: Option<Arc<str>>,
}

/// Last published value and its time, per register and device; first values waiting for a
/// second reading; and what the broker retained from before the start.
#[derive(Debug)]
pub(super) struct RegisterGuard {
    last: HashMap<(Arc<str>, Key), (f64, OffsetDateTime)>,
    candidates: HashMap<(Arc<str>, Key), Candidate>,
    retained: HashMap<Key, RetainedRegister>,
    /// Whether the broker's retained registers are known; until then no first value is taken.
    ready: bool,
}

/// A first value and the reading it came in.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    value: f64,
    at: OffsetDateTime,
}

/// Who reads a register: the device id, and whether the meter's telegram named it (rather
/// than the bridge's fallback id standing in until the telegram is known).
#[derive(Debug, Clone, Copy)]
pub(super) struct Reader<'a> {
    pub(crate) device: &'a Arc<str>,
    pub(crate) identified: bool,
}

impl Default for RegisterGuard {
    fn default() -> Self {
        Self {
            last: HashMap::new(),
            candidates: HashMap::new(),
            retained: HashMap::new(),
            ready: true,
        }
    }
}

/// A minute of slack absorbs clock jitter between the meter and DSMR-reader.
fn allowed_rise(from: OffsetDateTime, to: OffsetDateTime, max_per_hour: f64) -> f64 {
    let hours = ((to - from).as_seconds_f64() / 3600.0).max(0.0) + 1.0 / 60.0;
    max_per_hour * hours
}

impl RegisterGuard {
    /// From now on, first values wait for `retained_registers`.
    pub(super) fn expect_retained(&mut self) {
        self.ready = false;
    }

    /// What the broker retained; first values are taken from now on, never below these.
    pub(super) fn retained_registers(&mut self, retained: Vec<RetainedRegister>) {
        for register in retained {
            // A register this run already published needs no memory of an earlier one.
            if !self.last.keys().any(|(_, i)| *i == register.index) {
                self.retained.insert(register.index, register);
            }
        }
        self.ready = true;
    }

    /// What the broker retained for register `index`, while it still counts.
    pub(super) fn retained(&self, index: Key) -> Option<&RetainedRegister> {
        self.retained.get(&index)
    }

    /// Whether `value`, read `at`, may be published for register `index` of `reader`, given
    /// the last value recorded for it. Records nothing; `Unconfirmed` asks the caller to
    /// `propose` the value.
    pub(super) fn check(
        &self,
        reader: Reader<'_>,
        index: Key,
        value: f64,
        at: OffsetDateTime,
        max_per_hour: f64,
    ) -> Result<(), Rejection> {
        if value <= 0.0 {
            return Err(Rejection::Zero);
        }
        let key = (reader.device.clone(), index);
        if let Some(&(previous, previous_at)) = self.last.get(&key) {
            if value < previous {
                return Err(Rejection::Decrease);
            }
            if value - previous > allowed_rise(previous_at, at, max_per_hour) {
                return Err(Rejection::Jump);
            }
            return Ok(());
        }
        if !self.ready {
            return Err(Rejection::Unconfirmed);
        }
        if let Some(retained) = self.retained.get(&index)
            && value < retained.value
            && !is_other_meter(retained, reader)
        {
            return Err(Rejection::BelowRetained);
        }
        match self.candidates.get(&key) {
            Some(c)
                if value >= c.value && value - c.value <= allowed_rise(c.at, at, max_per_hour) =>
            {
                Ok(())
            }
            _ => Err(Rejection::Unconfirmed),
        }
    }

    /// Keeps `value` as the first value of register `index` of `device`, for the next reading
    /// to confirm.
    pub(super) fn propose(
        &mut self,
        device: &Arc<str>,
        index: Key,
        value: f64,
        at: OffsetDateTime,
    ) {
        self.candidates
            .insert((device.clone(), index), Candidate { value, at });
    }

    /// Remembers `value` as the last one published for register `index` of `device`.
    pub(super) fn record(&mut self, device: &Arc<str>, index: Key, value: f64, at: OffsetDateTime) {
        let key = (device.clone(), index);
        self.candidates.remove(&key);
        self.last.insert(key, (value, at));
        self.retained.remove(&index);
    }

    /// The meter's telegram named the device that had a fallback id so far: the same meter,
    /// so what was recorded for it carries over.
    pub(super) fn rename(&mut self, from: &Arc<str>, to: &Arc<str>) {
        let last: Vec<_> = self
            .last
            .keys()
            .filter(|(d, _)| d == from)
            .cloned()
            .collect();
        for key in last {
            if let Some(entry) = self.last.remove(&key) {
                self.last.insert((to.clone(), key.1), entry);
            }
        }
        let candidates: Vec<_> = self
            .candidates
            .keys()
            .filter(|(d, _)| d == from)
            .cloned()
            .collect();
        for key in candidates {
            if let Some(entry) = self.candidates.remove(&key) {
                self.candidates.insert((to.clone(), key.1), entry);
            }
        }
    }
}

/// The retained value belongs to another meter: the telegram names this one, and an earlier
/// run announced the register for a different device (a meter swapped while the bridge was
/// stopped, whose new device starts low). Without a telegram nobody knows, so it counts.
fn is_other_meter(retained: &RetainedRegister, reader: Reader<'_>) -> bool {
    reader.identified && retained.device.as_ref().is_some_and(|d| d != reader.device)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    /// The `n`th entry of the catalog; the guard does not care which.
    fn key(n: usize) -> Key {
        Key::all().nth(n).unwrap()
    }

    const T0: OffsetDateTime = datetime!(2026-11-26 14:00:00 +01:00);

    fn reader(device: &Arc<str>) -> Reader<'_> {
        Reader {
            device,
            identified: true,
        }
    }

    /// Publishes `value` as the register's first value, as two agreeing readings do.
    fn confirm(guard: &mut RegisterGuard, device: &Arc<str>, index: Key, value: f64) {
        guard.propose(device, index, value, T0);
        assert_eq!(guard.check(reader(device), index, value, T0, 100.0), Ok(()));
        guard.record(device, index, value, T0);
    }

    #[test]
    fn zero_drop_and_jump_are_held_back_until_recorded() {
        let meter: Arc<str> = Arc::from("dsmrbridge_meter");
        let mut guard = RegisterGuard::default();
        let r = reader(&meter);
        assert_eq!(guard.check(r, key(0), 0.0, T0, 100.0), Err(Rejection::Zero));
        assert_eq!(
            guard.check(r, key(0), -1.0, T0, 100.0),
            Err(Rejection::Zero)
        );
        confirm(&mut guard, &meter, key(0), 1000.0);
        assert_eq!(
            guard.check(r, key(0), 999.999, T0, 100.0),
            Err(Rejection::Decrease)
        );
        assert_eq!(guard.check(r, key(0), 1000.0, T0, 100.0), Ok(()));
        // An hour (plus a minute of slack) allows 100 kWh more, not 102.
        let later = T0 + time::Duration::hours(1);
        assert_eq!(guard.check(r, key(0), 1100.0, later, 100.0), Ok(()));
        assert_eq!(
            guard.check(r, key(0), 1102.0, later, 100.0),
            Err(Rejection::Jump)
        );
        // Checking records nothing.
        assert_eq!(guard.check(r, key(0), 1000.5, T0, 100.0), Ok(()));
    }

    /// A first value waits for a second reading that agrees with it; one that does not agree
    /// (a spike, or the real value after a spike) becomes the value to confirm instead.
    #[test]
    fn a_first_value_needs_a_second_reading_that_agrees() {
        let meter: Arc<str> = Arc::from("dsmrbridge_meter");
        let mut guard = RegisterGuard::default();
        let r = reader(&meter);
        assert_eq!(
            guard.check(r, key(0), 99999.0, T0, 100.0),
            Err(Rejection::Unconfirmed)
        );
        guard.propose(&meter, key(0), 99999.0, T0);
        let t1 = T0 + time::Duration::seconds(5);
        assert_eq!(
            guard.check(r, key(0), 30000.0, t1, 100.0),
            Err(Rejection::Unconfirmed),
            "lower than the spike: not confirmed"
        );
        guard.propose(&meter, key(0), 30000.0, t1);
        let t2 = t1 + time::Duration::seconds(5);
        assert_eq!(
            guard.check(r, key(0), 99999.5, t2, 100.0),
            Err(Rejection::Unconfirmed),
            "far above the candidate in 5 s: not confirmed"
        );
        assert_eq!(guard.check(r, key(0), 30000.001, t2, 100.0), Ok(()));
        assert_eq!(guard.check(r, key(0), 30000.0, t2, 100.0), Ok(()));
    }

    /// The broker's retained value from an earlier run is the floor of a first value, unless
    /// the telegram names another meter than the one an earlier run announced it for.
    #[test]
    fn a_retained_value_is_the_floor_of_a_first_value() {
        let meter: Arc<str> = Arc::from("dsmrbridge_meter");
        let fallback: Arc<str> = Arc::from("dsmrbridge_x_electricity");
        let swapped: Arc<str> = Arc::from("dsmrbridge_new");
        let mut guard = RegisterGuard::default();
        guard.expect_retained();
        guard.propose(&meter, key(0), 30000.0, T0);
        assert_eq!(
            guard.check(reader(&meter), key(0), 30000.0, T0, 100.0),
            Err(Rejection::Unconfirmed),
            "nothing is taken before the retained values are known"
        );
        guard.retained_registers(vec![RetainedRegister {
            index: key(0),
            value: 99999.0,
            text: "99999.000".into(),
            device: Some(meter.clone()),
        }]);
        assert_eq!(guard.retained(key(0)).map(|r| r.value), Some(99999.0));
        assert_eq!(
            guard.check(reader(&meter), key(0), 30000.0, T0, 100.0),
            Err(Rejection::BelowRetained)
        );
        let unidentified = Reader {
            device: &fallback,
            identified: false,
        };
        assert_eq!(
            guard.check(unidentified, key(0), 30000.0, T0, 100.0),
            Err(Rejection::BelowRetained),
            "without a telegram the retained value counts"
        );
        guard.propose(&swapped, key(0), 12.0, T0);
        assert_eq!(
            guard.check(reader(&swapped), key(0), 12.0, T0, 100.0),
            Ok(()),
            "another meter's register starts where it is"
        );
        guard.propose(&meter, key(0), 99999.5, T0);
        assert_eq!(
            guard.check(reader(&meter), key(0), 99999.5, T0, 100.0),
            Ok(())
        );
        guard.record(&meter, key(0), 99999.5, T0);
        assert!(guard.retained(key(0)).is_none());
    }

    #[test]
    fn the_telegrams_id_takes_over_what_the_fallback_id_recorded() {
        let fallback: Arc<str> = Arc::from("dsmrbridge_x_electricity");
        let meter: Arc<str> = Arc::from("dsmrbridge_meter");
        let mut guard = RegisterGuard::default();
        confirm(&mut guard, &fallback, key(0), 1000.0);
        guard.rename(&fallback, &meter);
        assert_eq!(
            guard.check(reader(&meter), key(0), 999.0, T0, 100.0),
            Err(Rejection::Decrease)
        );
        assert_eq!(
            guard.check(reader(&meter), key(0), 1000.1, T0, 100.0),
            Ok(())
        );
    }

    #[test]
    fn each_register_of_each_meter_has_its_own_last_value() {
        let old: Arc<str> = Arc::from("dsmrbridge_old");
        let new: Arc<str> = Arc::from("dsmrbridge_new");
        let mut guard = RegisterGuard::default();
        confirm(&mut guard, &old, key(0), 1000.0);
        guard.propose(&old, key(1), 5.0, T0);
        guard.propose(&new, key(0), 5.0, T0);
        assert_eq!(guard.check(reader(&old), key(1), 5.0, T0, 100.0), Ok(()));
        assert_eq!(guard.check(reader(&new), key(0), 5.0, T0, 100.0), Ok(()));
        assert_eq!(
            guard.check(reader(&old), key(0), 5.0, T0, 100.0),
            Err(Rejection::Decrease)
        );
    }
}
