//! Source stage, outages: when the next poll starts, how long one request may take, and when
//! DSMR-reader counts as unreachable. DSMR-reader is a LAN service that restarts on every
//! update: the bridge must notice it is back within two poll intervals, however long it was
//! away, without asking it more often than the poll interval.
//!
//! The bound comes from three rules. A failed poll is retried one poll interval after it
//! started (no growing backoff: one refused connection per interval costs DSMR-reader
//! nothing). A poll that ran over its interval is followed at once. And no request waits
//! longer than one poll interval for its answer. So when DSMR-reader answers again, the poll
//! in flight either fails at once (refused) and the next starts within an interval, or hangs
//! until its timeout (an interval) and the next starts then: back after at most one interval
//! plus one answer.

use std::time::Duration;

use tokio::time::Instant;

/// A short blip should not flap every entity to unavailable. Three failed polls in a row take
/// at most 20 s at the default 5 s interval (a first request hanging until its timeout, then
/// two more), well within the 30 s in which the entities must turn unavailable.
pub(crate) const FAILURES_BEFORE_UNREACHABLE: u32 = 3;

/// Bounds of the request timeout. A second is plenty for a LAN service that answers in
/// milliseconds; ten seconds lets a long interval still notice an outage soon.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for one answer: one poll interval, within 1–10 s. An answer slower than that
/// is late for the next poll anyway, and the time a hung request takes is time in which the
/// bridge cannot notice that DSMR-reader is back.
pub(crate) fn request_timeout(poll_interval: Duration) -> Duration {
    poll_interval.clamp(MIN_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT)
}

/// The longest wait a `Retry-After` from DSMR-reader (or a proxy in front of it) imposes: a
/// minute, so a proxy's hour cannot keep the entities stale that long.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// When the poll after one that was due at `due` and finished at `finished` starts: one
/// interval after `due` (so polls keep their grid and the schedule its minutes), or at once
/// if the poll ran over; not before a `Retry-After` the failed poll was given has passed
/// (up to `MAX_RETRY_AFTER`).
pub(crate) fn next_poll(
    due: Instant,
    finished: Instant,
    interval: Duration,
    retry_after: Option<Duration>,
) -> Instant {
    let next = (due + interval).max(finished);
    match retry_after {
        Some(wait) => next.max(finished + wait.min(MAX_RETRY_AFTER)),
        None => next,
    }
}

/// What the pipeline hears about DSMR-reader's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Reachable,
    Unreachable,
}

/// Counts failed polls and says when the availability the pipeline knows changes.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    failures: u32,
    reported: Option<Availability>,
}

impl Outage {
    /// Failed polls in a row so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// A poll was answered: DSMR-reader is reachable, news to the pipeline after an outage and
    /// at the first poll.
    pub(crate) fn answered(&mut self) -> Option<Availability> {
        self.failures = 0;
        self.report(Availability::Reachable)
    }

    /// A poll failed. Unreachable after a few in a row, or at once when only the user can fix
    /// it (a key, a setting): retrying will not help until then.
    pub(crate) fn failed(&mut self, needs_user: bool) -> Option<Availability> {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= FAILURES_BEFORE_UNREACHABLE || needs_user {
            self.report(Availability::Unreachable)
        } else {
            None
        }
    }

    fn report(&mut self, availability: Availability) -> Option<Availability> {
        (self.reported != Some(availability)).then(|| {
            self.reported = Some(availability);
            availability
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How DSMR-reader fails during the outage.
    #[derive(Debug, Clone, Copy)]
    enum Down {
        /// Connections refused: a request fails at once.
        Refused,
        /// Connections accepted and never answered: a request sent during the outage hangs
        /// until its timeout, even when DSMR-reader answers new requests again meanwhile.
        Hangs,
    }

    /// What the timeline showed about one outage.
    #[derive(Debug)]
    struct Seen {
        /// From the outage's start to the pipeline hearing `Unreachable`.
        unreachable_after: Option<Duration>,
        /// From DSMR-reader answering again to the first answered poll being handed over.
        back_after: Duration,
        /// Shortest time between the starts of two polls.
        closest_polls: Duration,
    }

    /// Replays the source's loop with the policy above against DSMR-reader that is down from
    /// `down_at` for `down_for`. Each poll asks two endpoints (meter statistics and the
    /// reading, 20 ms each when answered), so an outage can also begin in mid-poll.
    fn timeline(interval: Duration, down_at: Duration, down_for: Duration, how: Down) -> Seen {
        let origin = Instant::now();
        let (down_from, down_until) = (origin + down_at, origin + down_at + down_for);
        let answer = Duration::from_millis(20);
        let timeout = request_timeout(interval);
        let mut outage = Outage::default();
        let mut due = origin;
        let mut last_start: Option<Instant> = None;
        let mut closest = Duration::MAX;
        let mut unreachable_at = None;
        loop {
            if let Some(last) = last_start {
                closest = closest.min(due - last);
            }
            last_start = Some(due);
            let mut at = due;
            let mut failed = false;
            for _request in 0..2 {
                if (down_from..down_until).contains(&at) {
                    failed = true;
                    if let Down::Hangs = how {
                        at += timeout;
                    }
                    break;
                }
                at += answer;
            }
            let finished = at;
            if failed {
                if outage.failed(false) == Some(Availability::Unreachable) {
                    unreachable_at = Some(finished);
                }
            } else {
                outage.answered();
                if due >= down_until {
                    return Seen {
                        unreachable_after: unreachable_at.map(|t| t - down_from),
                        back_after: finished - down_until,
                        closest_polls: closest,
                    };
                }
            }
            due = next_poll(due, finished, interval, None);
        }
    }

    #[test]
    fn outages_are_noticed_within_30_s_and_recovery_within_two_intervals() {
        // Outages from 0.3 s to two minutes.
        for interval_ms in [5000, 1000] {
            let interval = Duration::from_millis(interval_ms);
            for length in (1..=400).map(|x| x * 300) {
                // Outages starting anywhere within a poll interval, also in mid-poll.
                for phase in (0..interval_ms).step_by(130) {
                    let down_at = Duration::from_millis(60_000 + phase);
                    let down_for = Duration::from_millis(length);
                    for how in [Down::Refused, Down::Hangs] {
                        let seen = timeline(interval, down_at, down_for, how);
                        let case = format!("{how:?} for {down_for:?} at {interval:?}: {seen:?}");
                        assert!(seen.back_after <= 2 * interval, "{case}");
                        assert!(seen.closest_polls >= interval, "{case}");
                        if down_for >= Duration::from_secs(30) {
                            let after = seen.unreachable_after.expect(&case);
                            assert!(after <= Duration::from_secs(30), "{case}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_hung_request_delays_recovery_by_one_interval_at_most() {
        // DSMR-reader answers again just after a poll went out into the outage.
        let interval = Duration::from_secs(5);
        let seen = timeline(
            interval,
            Duration::from_secs(60),
            Duration::from_millis(35_001),
            Down::Hangs,
        );
        assert!(
            seen.back_after <= interval + Duration::from_millis(40),
            "{seen:?}"
        );
        assert!(
            seen.unreachable_after.unwrap() <= Duration::from_secs(20),
            "{seen:?}"
        );
    }

    #[test]
    fn retry_after_delays_the_next_poll_within_a_minute() {
        let due = Instant::now();
        let finished = due + Duration::from_millis(20);
        let interval = Duration::from_secs(5);
        assert_eq!(next_poll(due, finished, interval, None), due + interval);
        // Shorter than the interval: the interval holds.
        assert_eq!(
            next_poll(due, finished, interval, Some(Duration::from_secs(2))),
            due + interval
        );
        assert_eq!(
            next_poll(due, finished, interval, Some(Duration::from_secs(7))),
            finished + Duration::from_secs(7)
        );
        assert_eq!(
            next_poll(due, finished, interval, Some(Duration::from_secs(3600))),
            finished + MAX_RETRY_AFTER
        );
    }

    #[test]
    fn one_report_per_change() {
        let mut outage = Outage::default();
        assert_eq!(outage.answered(), Some(Availability::Reachable));
        assert_eq!(outage.answered(), None);
        assert_eq!(outage.failed(false), None);
        assert_eq!(outage.failed(false), None);
        assert_eq!(outage.failed(false), Some(Availability::Unreachable));
        assert_eq!(outage.failed(false), None);
        assert_eq!(outage.failures(), 4);
        assert_eq!(outage.answered(), Some(Availability::Reachable));
        assert_eq!(outage.failed(true), Some(Availability::Unreachable));
    }

    #[test]
    fn request_timeout_is_one_interval_within_bounds() {
        assert_eq!(
            request_timeout(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            request_timeout(Duration::from_millis(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            request_timeout(Duration::from_secs(60)),
            Duration::from_secs(10)
        );
    }
}
