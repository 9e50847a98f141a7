//! Retrying a peer that fails (the broker, the Supervisor): the pauses between attempts, and
//! what the log says about the failures. One style for every peer: jittered pauses that grow
//! to a documented bound, and each error said once at `warn`, its repeats at `debug`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Pauses from `first`, doubling, never longer than `bound` with the jitter included: backon's
/// jitter adds up to the whole delay on top of it, so the delay before jitter is capped at half
/// the bound. Without its `std` feature backon seeds every backoff alike, and every bridge on
/// a restarted broker would come back in the same second: the seed is drawn here.
pub(crate) fn pauses(first: Duration, bound: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(bound / 2)
        .with_jitter()
        .with_jitter_seed(fastrand::u64(..))
        .without_max_times()
        .build()
}

/// The errors of a peer that keeps failing, so that the log says each once: the first of an
/// outage, and again only when the error changes.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    last: Option<String>,
}

impl Failures {
    /// Records a failure; true when it is news (log it at `warn`), false for a repeat (`debug`).
    pub(crate) fn failed(&mut self, error: &str) -> bool {
        if self.last.as_deref() == Some(error) {
            return false;
        }
        self.last = Some(error.to_owned());
        true
    }

    /// The peer answered; true when it had been failing (worth an `info`).
    pub(crate) fn recovered(&mut self) -> bool {
        self.last.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound holds with the jitter included, and the pauses still grow from `first`.
    #[test]
    fn pauses_stay_within_their_bound() {
        for (first, bound) in [(1, 30), (2, 30)] {
            let (first, bound) = (Duration::from_secs(first), Duration::from_secs(bound));
            for _ in 0..100 {
                let delays: Vec<Duration> = pauses(first, bound).take(20).collect();
                assert!(delays[0] >= first, "{delays:?}");
                assert!(delays.iter().all(|d| *d <= bound), "{delays:?}");
                assert!(delays[10..].iter().all(|d| *d >= bound / 2), "{delays:?}");
            }
        }
    }

    /// Peers that fail together must not be retried in lockstep: each backoff draws its own
    /// jitter (a fixed seed gave every process the same pauses).
    #[test]
    fn each_backoff_has_its_own_jitter() {
        let one = Duration::from_secs(1);
        let first: Vec<Duration> = pauses(one, 30 * one).take(5).collect();
        let second: Vec<Duration> = pauses(one, 30 * one).take(5).collect();
        assert_ne!(first, second);
    }

    #[test]
    fn each_error_is_news_once() {
        let mut failures = Failures::default();
        assert!(failures.failed("refused"));
        assert!(!failures.failed("refused"));
        assert!(failures.failed("timed out"), "a new error is news");
        assert!(failures.failed("refused"), "and so is the old one again");
        assert!(failures.recovered());
        assert!(!failures.recovered());
        assert!(failures.failed("refused"), "a new outage is news");
    }
}
