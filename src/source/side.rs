//! Source stage, side endpoints: everything but the newest reading. One of them failing says
//! nothing about DSMR-reader as a whole (DSMR-reader 4.x has no quarter-hour peak; one view
//! can fail while the others answer), so it affects only its own entities: it does not count
//! toward the outage, is logged once, and is asked again on its own, slower, cadence.

use std::time::Duration;

use super::schedule::Endpoint;

/// An endpoint DSMR-reader does not have (404) appears only with an upgrade: asking hourly
/// costs nothing and notices the upgrade the same day.
pub(crate) const ABSENT_RETRY: Duration = Duration::from_secs(3600);
/// Longest pause between two attempts at a failing side endpoint.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// What the source should say about a side endpoint's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed {
    /// Ask again after this long.
    pub(crate) retry_in: Duration,
    /// The first failure in a row: log it (later ones at debug).
    pub(crate) first: bool,
}

/// Failures in a row per side endpoint.
#[derive(Debug, Default)]
pub(crate) struct SideHealth {
    failures: [u32; Endpoint::ALL.len()],
}

impl SideHealth {
    /// `endpoint`, asked every `period`, failed; `absent` when DSMR-reader does not have it.
    pub(crate) fn failed(&mut self, endpoint: Endpoint, period: Duration, absent: bool) -> Failed {
        let failures = &mut self.failures[endpoint as usize];
        *failures = failures.saturating_add(1);
        let retry_in = if absent {
            ABSENT_RETRY.max(period)
        } else {
            backoff(period, *failures)
        };
        Failed {
            retry_in,
            first: *failures == 1,
        }
    }

    /// `endpoint` answered; returns how many failures in a row came before.
    pub(crate) fn answered(&mut self, endpoint: Endpoint) -> u32 {
        std::mem::take(&mut self.failures[endpoint as usize])
    }
}

/// The period, doubled with each further failure, up to 15 minutes (or the period itself
/// when that is longer).
fn backoff(period: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    period
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF.max(period))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn failures_back_off_from_the_period_to_a_cap() {
        let mut health = SideHealth::default();
        let waits: Vec<_> = (0..8)
            .map(|_| health.failed(Endpoint::Today, MINUTE, false))
            .collect();
        assert!(waits[0].first);
        assert!(waits[1..].iter().all(|f| !f.first));
        let minutes: Vec<u64> = waits.iter().map(|f| f.retry_in.as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 15, 15, 15, 15]);
        assert_eq!(health.answered(Endpoint::Today), 8);
        assert!(health.failed(Endpoint::Today, MINUTE, false).first);
        // The version, hourly, is never asked more often than its period.
        assert_eq!(
            health
                .failed(Endpoint::Version, 60 * MINUTE, false)
                .retry_in,
            60 * MINUTE
        );
    }

    #[test]
    fn an_absent_endpoint_is_asked_hourly() {
        let mut health = SideHealth::default();
        let first = health.failed(Endpoint::Peak, 5 * MINUTE, true);
        assert_eq!(
            first,
            Failed {
                retry_in: ABSENT_RETRY,
                first: true
            }
        );
        let again = health.failed(Endpoint::Peak, 5 * MINUTE, true);
        assert_eq!(again.retry_in, ABSENT_RETRY);
        assert!(!again.first);
        // Others are counted apart.
        assert!(health.failed(Endpoint::Monitoring, 5 * MINUTE, false).first);
    }
}
