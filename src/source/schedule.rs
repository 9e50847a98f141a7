//! Source stage, cadence: which DSMR-reader endpoints a poll asks. DSMR-reader runs on a
//! Raspberry Pi where each request costs a few milliseconds of CPU, so every endpoint is asked
//! as rarely as its entities allow; only the newest reading is asked on every poll.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);

/// The DSMR-reader endpoints the source asks, in the order one poll asks them: meter
/// statistics first, because they carry the meter's identity that the reading's registers
/// belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    MeterStatistics,
    Reading,
    Today,
    Peak,
    Monitoring,
    Version,
}

impl Endpoint {
    pub(crate) const ALL: [Endpoint; 6] = [
        Self::MeterStatistics,
        Self::Reading,
        Self::Today,
        Self::Peak,
        Self::Monitoring,
        Self::Version,
    ];

    /// The path below `api/v2/`.
    pub(crate) const fn path(self) -> &'static str {
        match self {
            Self::MeterStatistics => "datalogger/meter-statistics",
            Self::Reading => "datalogger/dsmrreading",
            Self::Today => "consumption/today",
            Self::Peak => "consumption/quarter-hour-peak-electricity",
            Self::Monitoring => "application/monitoring",
            Self::Version => "application/version",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// A set of endpoints, iterated in poll order.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Due(u8);

impl Due {
    pub(crate) fn only(endpoint: Endpoint) -> Self {
        Self(endpoint.bit())
    }

    pub(crate) fn contains(self, endpoint: Endpoint) -> bool {
        self.0 & endpoint.bit() != 0
    }

    pub(crate) fn with(self, endpoint: Endpoint) -> Self {
        Self(self.0 | endpoint.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Endpoint> {
        Endpoint::ALL.into_iter().filter(move |e| self.contains(*e))
    }
}

impl fmt::Debug for Due {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// How often each endpoint is asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cadence {
    /// The newest reading: every poll, `poll_interval`.
    pub reading: Duration,
    /// Tariff, failure counters and the meter's identity, which change a few times a day. Once
    /// a minute at most, so the tariff entity lags a minute at most; every 12 polls at shorter
    /// intervals, for a user who polls fast to see changes fast. A meter swap does not wait
    /// for it: the pipeline asks at once when a register looks wrong (`SourceRequest`).
    pub(crate) meter_statistics: Duration,
    /// Today's totals, which DSMR-reader itself recomputes about once a minute.
    pub(crate) today: Duration,
    /// The newest quarter-hour peak: DSMR-reader adds one row when a quarter hour ends, so
    /// every five minutes shows a new peak at most five minutes late, at a third of the
    /// requests of asking every minute.
    pub(crate) peak: Duration,
    /// DSMR-reader's own health problems, which last hours when they occur.
    pub(crate) monitoring: Duration,
    /// DSMR-reader's version, which changes on upgrades only.
    pub(crate) version: Duration,
}

impl Cadence {
    /// The cadence for `poll_interval`: no endpoint is asked more often than the reading.
    ///
    /// At the default 5 s: 12 readings, 1 meter statistics and 1 today a minute, plus the peak
    /// or monitoring or the version in some minutes (never two of them in one minute, see
    /// `Cadence::phase`): at most 15 requests in any minute, 14.4 on average.
    pub fn new(poll_interval: Duration) -> Self {
        let at_least_a_poll = |d: Duration| d.max(poll_interval);
        Self {
            reading: poll_interval,
            meter_statistics: at_least_a_poll((poll_interval * 12).min(MINUTE)),
            today: at_least_a_poll(MINUTE),
            peak: at_least_a_poll(5 * MINUTE),
            monitoring: at_least_a_poll(5 * MINUTE),
            version: at_least_a_poll(60 * MINUTE),
        }
    }

    /// Every period divided by `factor`: the benchmark and the soak test run simulated time
    /// that much faster.
    pub fn sped_up(self, factor: f64) -> Self {
        Self {
            reading: self.reading.div_f64(factor),
            meter_statistics: self.meter_statistics.div_f64(factor),
            today: self.today.div_f64(factor),
            peak: self.peak.div_f64(factor),
            monitoring: self.monitoring.div_f64(factor),
            version: self.version.div_f64(factor),
        }
    }

    pub(crate) fn period(&self, endpoint: Endpoint) -> Duration {
        match endpoint {
            Endpoint::MeterStatistics => self.meter_statistics,
            Endpoint::Reading => self.reading,
            Endpoint::Today => self.today,
            Endpoint::Peak => self.peak,
            Endpoint::Monitoring => self.monitoring,
            Endpoint::Version => self.version,
        }
    }

    /// Where in its period an endpoint is asked, from the source's start. The five-minute
    /// endpoints fall one and three minutes into their period and the version at its start, so
    /// no minute holds two of them: each minute has room for one request above the 14 every
    /// minute needs at the default interval.
    fn phase(&self, endpoint: Endpoint) -> Duration {
        match endpoint {
            Endpoint::Peak => self.peak / 5,
            Endpoint::Monitoring => self.monitoring * 3 / 5,
            _ => Duration::ZERO,
        }
    }
}

/// Which endpoints are due at an instant. Each endpoint but the reading is due on a grid of
/// its period (and phase) from `origin`, and at the first poll; a poll takes an endpoint whose
/// grid point is within half a poll interval, so a poll a millisecond early or late neither
/// skips nor repeats one. An endpoint that failed stays due.
#[derive(Debug, Clone)]
pub struct Schedule {
    cadence: Cadence,
    origin: Instant,
    next: [Instant; Endpoint::ALL.len()],
    /// Asked for out of turn (after an outage, or by the pipeline).
    forced: Due,
}

impl Schedule {
    pub fn new(cadence: Cadence, origin: Instant) -> Self {
        Self {
            cadence,
            origin,
            next: [origin; Endpoint::ALL.len()],
            forced: Due::default(),
        }
    }

    pub(crate) fn cadence(&self) -> &Cadence {
        &self.cadence
    }

    /// The endpoints a poll at `at` asks: the reading always.
    pub fn due(&self, at: Instant) -> Due {
        let horizon = at + self.cadence.reading / 2;
        Endpoint::ALL
            .into_iter()
            .filter(|&e| e == Endpoint::Reading || self.next[e as usize] <= horizon)
            .fold(self.forced, Due::with)
    }

    /// Asks `endpoint` at the next poll, whatever its cadence.
    pub(crate) fn force(&mut self, endpoint: Endpoint) {
        self.forced = self.forced.with(endpoint);
    }

    /// `endpoint` failed in the poll at `at` and is asked again `delay` later (a side
    /// endpoint on its own backoff), not at the next poll.
    pub(crate) fn retry_after(&mut self, endpoint: Endpoint, at: Instant, delay: Duration) {
        self.forced = Due(self.forced.0 & !endpoint.bit());
        self.next[endpoint as usize] = at + delay;
    }

    /// `endpoint` answered in the poll at `at`: it is next due at its first grid point more
    /// than half a poll interval later.
    pub fn fetched(&mut self, endpoint: Endpoint, at: Instant) {
        self.forced = Due(self.forced.0 & !endpoint.bit());
        let period = self.cadence.period(endpoint);
        let start = self.origin + self.cadence.phase(endpoint);
        let horizon = at + self.cadence.reading / 2;
        self.next[endpoint as usize] = if period.is_zero() {
            at
        } else if horizon < start {
            start
        } else {
            let periods = (horizon - start).as_nanos() / period.as_nanos() + 1;
            let offset = period.as_nanos().saturating_mul(periods);
            start + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX / 2))
        };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Requests per endpoint in one minute.
    type Minute = BTreeMap<Endpoint, u32>;

    /// Runs the schedule at `interval` for an hour, every poll answered, and returns per
    /// endpoint how many requests each minute had, and the instants each was asked at.
    fn virtual_hour(interval: Duration) -> (Vec<Minute>, BTreeMap<Endpoint, Vec<Duration>>) {
        let origin = Instant::now();
        let mut schedule = Schedule::new(Cadence::new(interval), origin);
        let mut minutes = vec![BTreeMap::new(); 60];
        let mut asked: BTreeMap<Endpoint, Vec<Duration>> = BTreeMap::new();
        let mut at = origin;
        while at < origin + HOUR {
            let offset = at - origin;
            let minute = (offset.as_secs() / 60) as usize;
            for endpoint in schedule.due(at).iter() {
                *minutes[minute].entry(endpoint).or_default() += 1;
                asked.entry(endpoint).or_default().push(offset);
                schedule.fetched(endpoint, at);
            }
            at += interval;
        }
        (minutes, asked)
    }

    fn count(minute: &Minute, endpoint: Endpoint) -> u32 {
        minute.get(&endpoint).copied().unwrap_or(0)
    }

    fn largest_gap(times: &[Duration]) -> Duration {
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    #[test]
    fn five_seconds_is_at_most_15_requests_a_minute() {
        let (minutes, asked) = virtual_hour(Duration::from_secs(5));
        // The first minute also fetches everything once at startup.
        for (m, minute) in minutes.iter().enumerate().skip(1) {
            assert_eq!(count(minute, Endpoint::Reading), 12, "minute {m}");
            assert_eq!(count(minute, Endpoint::MeterStatistics), 1, "minute {m}");
            assert_eq!(count(minute, Endpoint::Today), 1, "minute {m}");
            let slow = count(minute, Endpoint::Peak)
                + count(minute, Endpoint::Monitoring)
                + count(minute, Endpoint::Version);
            assert!(slow <= 1, "minute {m}: {minute:?}");
            assert!(minute.values().sum::<u32>() <= 15, "minute {m}: {minute:?}");
        }
        let per_hour = |e: Endpoint| asked[&e].len();
        assert_eq!(per_hour(Endpoint::Reading), 720);
        assert_eq!(per_hour(Endpoint::MeterStatistics), 60);
        assert_eq!(per_hour(Endpoint::Today), 60);
        // At startup, then at minutes 1, 6, … and 3, 8, …
        assert_eq!(per_hour(Endpoint::Peak), 13);
        assert_eq!(per_hour(Endpoint::Monitoring), 13);
        assert_eq!(per_hour(Endpoint::Version), 1);
        let total: usize = asked.values().map(Vec::len).sum();
        assert!(total <= 15 * 60, "{total} requests in the hour");
        assert_eq!(
            largest_gap(&asked[&Endpoint::MeterStatistics]),
            MINUTE,
            "the tariff lags a minute at most"
        );
        assert_eq!(largest_gap(&asked[&Endpoint::Peak]), 5 * MINUTE);
    }

    #[test]
    fn one_second_asks_meter_statistics_every_12_polls() {
        let (minutes, asked) = virtual_hour(Duration::from_secs(1));
        for (m, minute) in minutes.iter().enumerate().skip(1) {
            assert_eq!(count(minute, Endpoint::Reading), 60, "minute {m}");
            assert_eq!(count(minute, Endpoint::MeterStatistics), 5, "minute {m}");
            assert_eq!(count(minute, Endpoint::Today), 1, "minute {m}");
            let slow = count(minute, Endpoint::Peak)
                + count(minute, Endpoint::Monitoring)
                + count(minute, Endpoint::Version);
            assert!(slow <= 1, "minute {m}: {minute:?}");
        }
        assert_eq!(
            largest_gap(&asked[&Endpoint::MeterStatistics]),
            Duration::from_secs(12)
        );
        assert_eq!(asked[&Endpoint::Version].len(), 1);
    }

    #[test]
    fn sixty_seconds_asks_each_minute_endpoint_every_poll() {
        let (minutes, asked) = virtual_hour(MINUTE);
        for (m, minute) in minutes.iter().enumerate() {
            assert_eq!(count(minute, Endpoint::Reading), 1, "minute {m}");
            assert_eq!(count(minute, Endpoint::MeterStatistics), 1, "minute {m}");
            assert_eq!(count(minute, Endpoint::Today), 1, "minute {m}");
        }
        assert_eq!(asked[&Endpoint::Peak].len(), 13);
        assert_eq!(asked[&Endpoint::Monitoring].len(), 13);
        assert_eq!(asked[&Endpoint::Version].len(), 1);
    }

    #[test]
    fn jitter_neither_skips_nor_repeats() {
        // Polls a little late or early, as a busy machine's timer delivers them.
        let interval = Duration::from_secs(5);
        let origin = Instant::now();
        let mut schedule = Schedule::new(Cadence::new(interval), origin);
        let mut stats = Vec::new();
        for k in 0..720u32 {
            let jitter = Duration::from_millis(u64::from(k * 7919 % 400));
            let at = origin + interval * k + jitter;
            if schedule.due(at).contains(Endpoint::MeterStatistics) {
                stats.push(k);
                schedule.fetched(Endpoint::MeterStatistics, at);
            }
        }
        assert_eq!(stats.len(), 60);
        assert!(stats.windows(2).all(|w| w[1] - w[0] == 12), "{stats:?}");
    }

    #[test]
    fn failed_and_forced_endpoints_are_asked_at_the_next_poll() {
        let interval = Duration::from_secs(5);
        let origin = Instant::now();
        let mut schedule = Schedule::new(Cadence::new(interval), origin);
        for e in schedule.due(origin).iter() {
            schedule.fetched(e, origin);
        }
        let next = origin + interval;
        assert_eq!(schedule.due(next), Due::only(Endpoint::Reading));
        schedule.force(Endpoint::MeterStatistics);
        let due = schedule.due(next);
        assert!(due.contains(Endpoint::MeterStatistics), "{due:?}");
        schedule.fetched(Endpoint::MeterStatistics, next);
        assert_eq!(schedule.due(next + interval), Due::only(Endpoint::Reading));
        // Due at one minute, not fetched (the poll failed): still due after.
        let minute = origin + MINUTE;
        assert!(schedule.due(minute).contains(Endpoint::MeterStatistics));
        assert!(
            schedule
                .due(minute + interval)
                .contains(Endpoint::MeterStatistics)
        );
    }

    #[test]
    fn no_endpoint_is_asked_more_often_than_the_reading() {
        for secs in [1, 5, 7, 60, 90, 3600] {
            let interval = Duration::from_secs(secs);
            let c = Cadence::new(interval);
            for e in Endpoint::ALL {
                assert!(c.period(e) >= interval, "{e} at {secs} s");
            }
            assert!(c.meter_statistics <= MINUTE.max(interval));
        }
    }
}
