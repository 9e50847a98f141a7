//! Source stage: polls DSMR-reader on a cadence a Raspberry Pi does not notice, and reports
//! each poll (or each outage) to the pipeline. Together with the sink, the only I/O.

mod dsmr;
mod error;
mod lookup;
mod outage;
mod schedule;
mod side;

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use dsmr::{Answer, DsmrClient, DsmrHttp, MAX_BODY, without_credentials};
pub use error::SourceError;
pub use schedule::{Cadence, Due, Endpoint, Schedule};

use crate::model::{Object, Snapshot};
use outage::{Availability, Outage, next_poll};
use side::SideHealth;

/// Where DSMR-reader is and how to ask it: the live poll's and the history import's, validated
/// by `config`.
#[derive(Clone)]
pub struct DsmrConfig {
    /// Always ends in `/`, so `join("api/v2/...")` keeps any path prefix of a reverse proxy.
    pub url: url::Url,
    pub api_key: secrecy::SecretString,
    /// PEM bytes of an extra CA, already read so that a bad path fails at startup.
    pub ca_pem: Option<Vec<u8>>,
    pub poll_interval: Duration,
}

/// By hand: the URL's user info is a credential.
impl std::fmt::Debug for DsmrConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("REDACTED"));
        }
        f.debug_struct("DsmrConfig")
            .field("url", &url.as_str())
            .field("api_key", &self.api_key)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

/// What the source tells the pipeline.
#[derive(Debug)]
pub enum SourceEvent {
    Poll(Box<Snapshot>),
    /// DSMR-reader answered again after an outage (and at the first poll).
    Reachable,
    /// DSMR-reader has been failing long enough to mark its entities unavailable.
    Unreachable,
    /// DSMR-reader does not have this endpoint (404; DSMR-reader 4.x has no quarter-hour
    /// peak): its entities are not announced, or removed.
    Absent(Endpoint),
    /// A poll failed; the error in the words of the log (for the status page).
    Failed(String),
    /// The newest reading was answered: DSMR-reader works, whatever a side endpoint does.
    /// The one definition of "reachable" the status page's words follow.
    Answered,
    /// A side endpoint started failing (`Some`, the error in the words of the log) or answers
    /// again (`None`); DSMR-reader itself is not unreachable for it.
    SideFailing(Endpoint, Option<String>),
}

/// What the pipeline can ask of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRequest {
    /// Fetch meter statistics at once, before the next reading is handed over: a register
    /// looked wrong, which is how a new meter shows before its identity is known.
    MeterStatistics,
}

/// `timestamp__gte` with the reading's own offset (DSMR-reader's zone at that instant). A
/// naive server-local time would be refused in the hour the clock repeats in autumn or skips
/// in spring (Django cannot place it), and the filter would never advance again.
fn filter_time(at: OffsetDateTime) -> Option<String> {
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    ))
    .ok()
}

/// An error and its sources on one line, as the log shows them.
pub(crate) fn in_words(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Polls until `shutdown` (or until the pipeline is gone); sends every answered poll and each
/// availability change on `events`, and serves `requests` in between.
pub async fn run(
    client: DsmrClient,
    cadence: Cadence,
    events: mpsc::Sender<SourceEvent>,
    mut requests: mpsc::Receiver<SourceRequest>,
    shutdown: CancellationToken,
) {
    let origin = Instant::now();
    let mut poller = Poller {
        client,
        schedule: Schedule::new(cadence, origin),
        since: None,
        outage: Outage::default(),
        side: SideHealth::default(),
        retry_after: None,
        requested_at: None,
        events,
    };
    let mut due = origin;
    let mut listening = true;
    loop {
        let (ticked, mut out_of_turn) = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(due) => (true, false),
            request = requests.recv(), if listening => match request {
                Some(SourceRequest::MeterStatistics) => {
                    (false, poller.accept_request(Instant::now()))
                }
                None => {
                    listening = false;
                    continue;
                }
            },
        };
        // Requests that came in meanwhile count as one.
        while let Ok(SourceRequest::MeterStatistics) = requests.try_recv() {
            out_of_turn |= poller.accept_request(Instant::now());
        }
        let (at, asked) = if ticked {
            if out_of_turn {
                poller.schedule.force(Endpoint::MeterStatistics);
            }
            (due, poller.schedule.due(due))
        } else if out_of_turn {
            (Instant::now(), Due::only(Endpoint::MeterStatistics))
        } else {
            // Folded into the next poll or the cadence.
            continue;
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = poller.poll(at, asked) => {}
        }
        if ticked {
            due = next_poll(
                due,
                Instant::now(),
                poller.schedule.cadence().reading,
                poller.retry_after.take(),
            );
        }
        if poller.events.is_closed() {
            return;
        }
    }
}

struct Poller {
    client: DsmrClient,
    schedule: Schedule,
    /// `timestamp__gte` for the next reading: the last reading's own time.
    since: Option<String>,
    outage: Outage,
    /// Failures of the endpoints other than the reading, which do not count as an outage.
    side: SideHealth,
    /// The wait DSMR-reader asked for (`Retry-After`) when the last poll failed.
    retry_after: Option<Duration>,
    /// When the pipeline's last request was served out of turn.
    requested_at: Option<Instant>,
    events: mpsc::Sender<SourceEvent>,
}

impl Poller {
    /// Takes a request for meter statistics. Served at once (true) unless DSMR-reader is
    /// failing or one was served within the last meter-statistics period: then the next poll
    /// or the regular cadence brings them, so a register that stays wrong for another reason
    /// cannot double the requests.
    fn accept_request(&mut self, now: Instant) -> bool {
        let period = self.schedule.cadence().meter_statistics;
        if self.outage.failures() > 0 {
            self.schedule.force(Endpoint::MeterStatistics);
            false
        } else if self.requested_at.is_some_and(|t| now < t + period) {
            false
        } else {
            self.requested_at = Some(now);
            true
        }
    }

    /// One poll of the `asked` endpoints. What was answered before a failure is still handed
    /// over: each part is valid on its own.
    async fn poll(&mut self, at: Instant, asked: Due) {
        let mut snapshot = Snapshot::default();
        let result = self.fetch(at, asked, &mut snapshot).await;
        let answered_any = snapshot.meter_stats.is_some()
            || snapshot.reading.is_some()
            || snapshot.today.is_some()
            || snapshot.peak.is_some()
            || snapshot.monitoring.is_some()
            || snapshot.version.is_some();
        if answered_any
            && self
                .events
                .send(SourceEvent::Poll(Box::new(snapshot)))
                .await
                .is_err()
        {
            debug!("pipeline gone; source stops");
        }
        let change = match result {
            Ok(()) => {
                if asked.contains(Endpoint::Reading) {
                    let _ = self.events.send(SourceEvent::Answered).await;
                }
                self.retry_after = None;
                if self.outage.failures() > 0 {
                    info!(
                        failed_polls = self.outage.failures(),
                        "DSMR-reader answers again"
                    );
                }
                self.outage.answered()
            }
            Err(error) => {
                self.retry_after = error.retry_after();
                // The meter may have changed while DSMR-reader was away: its identity first.
                self.schedule.force(Endpoint::MeterStatistics);
                let needs_user = error.needs_user();
                // As an error value, so the log shows its sources too.
                let words = in_words(&error);
                let _ = self.events.send(SourceEvent::Failed(words)).await;
                let error: &(dyn std::error::Error + 'static) = &error;
                if self.outage.failures() == 0 {
                    warn!(
                        error,
                        "DSMR-reader poll failed; retrying every poll interval until it answers"
                    );
                } else {
                    debug!(
                        error,
                        failed_polls = self.outage.failures() + 1,
                        "DSMR-reader still failing"
                    );
                }
                self.outage.failed(needs_user)
            }
        };
        let event = match change {
            None => return,
            Some(Availability::Reachable) => SourceEvent::Reachable,
            Some(Availability::Unreachable) => {
                warn!(
                    "DSMR-reader unreachable; its entities show as unavailable in Home Assistant"
                );
                SourceEvent::Unreachable
            }
        };
        let _ = self.events.send(event).await;
    }

    /// Asks each endpoint in poll order. Only the reading decides whether the poll failed:
    /// a side endpoint that fails while the reading answers affects only its own entities
    /// (see `side`). When the reading fails, DSMR-reader itself is in trouble: the poll ends
    /// there and side endpoints that failed with it stay due.
    async fn fetch(
        &mut self,
        at: Instant,
        asked: Due,
        snapshot: &mut Snapshot,
    ) -> Result<(), SourceError> {
        let mut side_failures = Vec::new();
        for endpoint in asked.iter() {
            let result = match endpoint {
                Endpoint::MeterStatistics => self
                    .client
                    .meter_statistics()
                    .await
                    .map(|o| snapshot.meter_stats = Some(o)),
                Endpoint::Reading => {
                    snapshot.reading = self.latest_reading().await?;
                    self.follow(snapshot.reading.as_ref());
                    Ok(())
                }
                Endpoint::Today => self.client.today().await.map(|o| snapshot.today = o),
                Endpoint::Peak => self
                    .client
                    .quarter_hour_peak()
                    .await
                    .map(|o| snapshot.peak = o),
                Endpoint::Monitoring => self
                    .client
                    .monitoring()
                    .await
                    .map(|o| snapshot.monitoring = Some(o)),
                Endpoint::Version => self
                    .client
                    .version()
                    .await
                    .map(|o| snapshot.version = Some(o)),
            };
            match result {
                Ok(()) => {
                    self.schedule.fetched(endpoint, at);
                    let failed_before = self.side.answered(endpoint);
                    if failed_before > 0 {
                        info!(
                            endpoint = %endpoint,
                            failed_polls = failed_before,
                            "DSMR-reader endpoint answers again"
                        );
                        let _ = self
                            .events
                            .send(SourceEvent::SideFailing(endpoint, None))
                            .await;
                    }
                }
                Err(error) => side_failures.push((endpoint, error)),
            }
        }
        // Meter statistics asked out of turn, without the reading, stand for DSMR-reader.
        if !asked.contains(Endpoint::Reading)
            && let Some((_, error)) = side_failures.pop()
        {
            return Err(error);
        }
        for (endpoint, error) in side_failures {
            self.side_failed(endpoint, at, &error).await;
        }
        Ok(())
    }

    /// A side endpoint failed while the reading answered: logged once, asked again on its own
    /// backoff (hourly when DSMR-reader does not have it); its entities keep their last values.
    async fn side_failed(&mut self, endpoint: Endpoint, at: Instant, error: &SourceError) {
        let absent = matches!(error, SourceError::NotFound(_));
        let period = self.schedule.cadence().period(endpoint);
        let failed = self.side.failed(endpoint, period, absent);
        let asked = error
            .retry_after()
            .map_or(Duration::ZERO, |wait| wait.min(outage::MAX_RETRY_AFTER));
        let retry_in = failed.retry_in.max(asked);
        self.schedule.retry_after(endpoint, at, retry_in);
        let retry_in_s = retry_in.as_secs();
        let mut news = None;
        {
            let dyn_error: &(dyn std::error::Error + 'static) = error;
            match (absent, failed.first) {
                (true, true) => {
                    info!(
                        endpoint = %endpoint,
                        retry_in_s,
                        "DSMR-reader does not have this endpoint (an older version?); its entities are left out"
                    );
                    let _ = self.events.send(SourceEvent::Absent(endpoint)).await;
                }
                (false, true) => {
                    warn!(
                        endpoint = %endpoint,
                        error = dyn_error,
                        retry_in_s,
                        "DSMR-reader endpoint failed; its entities keep their last values, retrying with backoff"
                    );
                    news = Some(in_words(dyn_error));
                }
                (_, false) => debug!(
                    endpoint = %endpoint,
                    error = dyn_error,
                    retry_in_s,
                    "DSMR-reader endpoint still failing"
                ),
            }
        }
        if let Some(words) = news {
            let _ = self
                .events
                .send(SourceEvent::SideFailing(endpoint, Some(words)))
                .await;
        }
    }

    /// The newest reading the map stage can take: stamped at most `MAX_FUTURE` ahead of the
    /// wall clock. A row stamped further ahead (one telegram from a meter with a wrong clock)
    /// stays the newest in DSMR-reader's table until the clock passes it, and would hide the
    /// real readings until then.
    async fn latest_reading(&self) -> Result<Option<Object>, SourceError> {
        let until = filter_time(OffsetDateTime::now_utc() + crate::map::MAX_FUTURE);
        let reading = self
            .client
            .latest_reading(self.since.as_deref(), until.as_deref())
            .await?;
        if reading.is_some() || self.since.is_some() {
            return Ok(reading);
        }
        // Nothing at all up to a few minutes ahead: DSMR-reader has no readings, or every one
        // is ahead of this host's clock. The newest tells which, and the map stage skips it as
        // stamped in the future and says so: a clock that is off shows in the log.
        self.client.latest_reading(None, None).await
    }

    /// Sets the filter of the next reading request from this one; a reading stamped in the
    /// future (which the map stage skips) leaves it as it is.
    fn follow(&mut self, reading: Option<&Object>) {
        match reading {
            Some(r) => {
                let at = match r.get("timestamp") {
                    Some(Value::String(s)) => crate::map::parse_timestamp(s),
                    _ => None,
                };
                if at.is_some_and(|at| at > OffsetDateTime::now_utc() + crate::map::MAX_FUTURE) {
                    return;
                }
                self.since = at.and_then(filter_time);
            }
            // Nothing at or after the last timestamp: the meter clock went back or the row is
            // gone. Ask once without the filter to catch up.
            None if self.since.is_some() => {
                debug!("no reading at or after the last one; next poll asks without a filter");
                self.since = None;
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    /// Cancelled while DSMR-reader has a request hanging (accepted, never answered), the
    /// source ends at once: on the paused clock no time passes, where waiting for the request
    /// would have let the clock run to its 10 s timeout.
    #[tokio::test(start_paused = true)]
    async fn cancel_ends_the_source_while_a_request_hangs() {
        crate::tls::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let interval = Duration::from_secs(10);
        let client = DsmrClient::new(&super::DsmrConfig {
            url,
            api_key: "key".into(),
            ca_pem: None,
            poll_interval: interval,
        })
        .unwrap();
        let (events, _events) = mpsc::channel(8);
        let (_requests, requests) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let source = tokio::spawn(run(
            client,
            Cadence::new(interval),
            events,
            requests,
            shutdown.clone(),
        ));
        let (_held, _) = listener.accept().await.unwrap();
        let cancelled_at = Instant::now();
        shutdown.cancel();
        source.await.unwrap();
        assert_eq!(Instant::now() - cancelled_at, Duration::ZERO);
    }

    /// DSMR-reader on a loopback port, serving the fixtures of a real DSMR-reader 5.11. It can
    /// go away in the two ways a restart looks from outside: refusing connections, or accepting
    /// them and never answering, where a connection it took while hanging stays unanswered even
    /// after it answers again (as when the app behind its web server hangs).
    struct Reader {
        addr: std::net::SocketAddr,
        listener: Option<tokio::task::JoinHandle<()>>,
        connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
        held: std::sync::Arc<std::sync::Mutex<Vec<tokio::net::TcpStream>>>,
        /// When each connection taken while hanging came in.
        accepted: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    }

    fn fixture(endpoint: Endpoint) -> &'static str {
        match endpoint {
            Endpoint::MeterStatistics => {
                include_str!("../../tests/fixtures/v2_datalogger_meter-statistics.json")
            }
            Endpoint::Reading => {
                include_str!("../../tests/fixtures/v2_datalogger_dsmrreading_latest.json")
            }
            Endpoint::Today => include_str!("../../tests/fixtures/v2_consumption_today.json"),
            Endpoint::Peak => include_str!(
                "../../tests/fixtures/v2_consumption_quarter-hour-peak-electricity_latest.json"
            ),
            Endpoint::Monitoring => {
                include_str!("../../tests/fixtures/v2_application_monitoring.json")
            }
            Endpoint::Version => include_str!("../../tests/fixtures/v2_application_version.json"),
        }
    }

    /// Answers each request on `stream` with its endpoint's fixture, keeping the connection.
    async fn answer_on(mut stream: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
                continue;
            };
            let request = String::from_utf8_lossy(&head[..end]).into_owned();
            head.drain(..end + 4);
            let path = request.split(' ').nth(1).unwrap_or_default();
            let path = path.split('?').next().unwrap_or_default();
            let body = Endpoint::ALL
                .into_iter()
                .find(|e| path == format!("/api/v2/{}", e.path()))
                .map_or("{}", fixture);
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    impl Reader {
        async fn answering() -> Reader {
            let mut reader = Reader {
                addr: "127.0.0.1:0".parse().unwrap(),
                listener: None,
                connections: Default::default(),
                held: Default::default(),
                accepted: Default::default(),
            };
            reader.answer().await;
            reader
        }

        fn url(&self) -> url::Url {
            url::Url::parse(&format!("http://{}/", self.addr)).unwrap()
        }

        /// Listens on its port (a free one the first time) and answers.
        async fn answer(&mut self) {
            self.stop_listening().await;
            let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
            self.addr = listener.local_addr().unwrap();
            let connections = self.connections.clone();
            self.listener = Some(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections
                        .lock()
                        .unwrap()
                        .push(tokio::spawn(answer_on(stream)));
                }
            }));
        }

        /// Connections are refused, and those it had are closed.
        async fn refuse(&mut self) {
            self.stop_listening().await;
            for connection in self.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }

        /// Connections are accepted and never answered; those it had are closed.
        async fn hang(&mut self) {
            self.refuse().await;
            let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
            let (held, accepted) = (self.held.clone(), self.accepted.clone());
            self.listener = Some(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.lock().unwrap().push(Instant::now());
                    held.lock().unwrap().push(stream);
                }
            }));
        }

        async fn stop_listening(&mut self) {
            if let Some(listener) = self.listener.take() {
                listener.abort();
                // The port is free once the aborted task is dropped.
                let _ = listener.await;
            }
        }
    }

    /// What the pipeline heard from the source.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Heard {
        Reading,
        Failed,
        Unreachable,
        Other,
    }

    /// Adds what the source sends to `heard`, stamped on the (paused) clock, until `until`.
    async fn listen(
        events: &mut mpsc::Receiver<SourceEvent>,
        heard: &mut Vec<(Instant, Heard)>,
        until: impl Fn(Heard) -> bool,
    ) {
        loop {
            let kind = match events.recv().await.expect("the source runs") {
                SourceEvent::Poll(snapshot) if snapshot.reading.is_some() => Heard::Reading,
                SourceEvent::Failed(_) => Heard::Failed,
                SourceEvent::Unreachable => Heard::Unreachable,
                _ => Heard::Other,
            };
            heard.push((Instant::now(), kind));
            if until(kind) {
                return;
            }
        }
    }

    /// What one outage looked like from the pipeline.
    struct Outage {
        /// When DSMR-reader went away and came back.
        down: Instant,
        back: Instant,
        /// Everything the source sent from `down` on, up to the first reading after `back`.
        heard: Vec<(Instant, Heard)>,
        /// Connections DSMR-reader accepted while it hung (every request then takes one).
        accepted: Vec<Instant>,
    }

    impl Outage {
        fn at(&self, kind: Heard) -> Vec<Instant> {
            self.heard
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(t, _)| *t)
                .collect()
        }
    }

    /// Runs the source (its own loop and HTTP client, at `interval`) against DSMR-reader that
    /// goes away (refusing or hanging) for `outage`, a third into an interval.
    async fn outage(interval: Duration, hangs: bool, outage: Duration) -> Outage {
        let mut reader = Reader::answering().await;
        let client = DsmrClient::new(&super::DsmrConfig {
            url: reader.url(),
            api_key: "key".into(),
            ca_pem: None,
            poll_interval: interval,
        })
        .unwrap();
        let (events_tx, mut events) = mpsc::channel(8);
        let (_requests, requests) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let source = tokio::spawn(run(
            client,
            Cadence::new(interval),
            events_tx,
            requests,
            shutdown.clone(),
        ));
        listen(&mut events, &mut Vec::new(), |h| h == Heard::Reading).await;
        tokio::time::sleep(interval / 3).await;

        let down = Instant::now();
        if hangs {
            reader.hang().await;
        } else {
            reader.refuse().await;
        }
        let mut heard = Vec::new();
        let listening = listen(&mut events, &mut heard, |_| false);
        let _ = tokio::time::timeout_at(down + outage, listening).await;
        reader.answer().await;
        let back = Instant::now();
        listen(&mut events, &mut heard, |h| h == Heard::Reading).await;
        shutdown.cancel();
        source.await.unwrap();
        let accepted = reader.accepted.lock().unwrap().clone();
        Outage {
            down,
            back,
            heard,
            accepted,
        }
    }

    /// Gaps between consecutive instants.
    fn gaps(times: &[Instant]) -> Vec<Duration> {
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Never closer than one interval (not more often), and one interval apart as a rule (no
    /// backoff past it). The paused clock jumps to the next timer whenever the runtime is idle,
    /// also while a refused or hung connection's real socket event is still on its way: on a
    /// loaded machine a poll then and again ends at its timeout instead, a gap of two intervals
    /// that a real clock never shows.
    fn assert_one_interval_apart(times: &[Instant], interval: Duration, what: &str) {
        let gaps = gaps(times);
        let exact = gaps
            .iter()
            .filter(|g| g.abs_diff(interval) <= Duration::from_millis(5))
            .count();
        for gap in &gaps {
            assert!(
                *gap + Duration::from_millis(5) >= interval
                    && *gap <= 2 * interval + Duration::from_millis(5),
                "{what} {gap:?} apart"
            );
        }
        assert!(
            exact * 10 >= gaps.len() * 9,
            "{what}: {exact} of {} gaps one interval: {gaps:?}",
            gaps.len()
        );
    }

    /// The source's own loop and HTTP client, at the default 5 s interval on the paused clock,
    /// against DSMR-reader that refuses connections for seconds up to an hour: its entities
    /// turn unavailable within 30 s, failed polls are retried exactly one interval apart for
    /// as long as the outage lasts (no backoff past the interval, and not more often), and
    /// once DSMR-reader answers again a reading comes within two intervals.
    #[tokio::test(start_paused = true)]
    async fn after_any_refusing_outage_a_reading_comes_within_two_intervals() {
        crate::tls::install_crypto_provider();
        let interval = Duration::from_secs(5);
        for length in [3, 17, 31, 64, 600, 3600].map(Duration::from_secs) {
            let seen = outage(interval, false, length).await;
            let case = format!("refused for {length:?}");
            let reading = seen.at(Heard::Reading)[0];
            assert!(
                reading - seen.back <= 2 * interval,
                "{case}: a reading {:?} after DSMR-reader answered again",
                reading - seen.back
            );
            let failed = seen.at(Heard::Failed);
            if length >= interval {
                let first = failed.first().map(|t| *t - seen.down);
                assert!(first.is_some_and(|t| t <= interval), "{case}: {first:?}");
            }
            assert_one_interval_apart(&failed, interval, &format!("{case}: failed polls"));
            if length >= Duration::from_secs(30) {
                let unreachable = seen.at(Heard::Unreachable);
                assert_eq!(unreachable.len(), 1, "{case}");
                assert!(
                    unreachable[0] - seen.down <= Duration::from_secs(30),
                    "{case}"
                );
            }
        }
    }

    /// The same against DSMR-reader that accepts connections and never answers, where the
    /// request in flight when it answers again hangs until its timeout: each request waits out
    /// its timeout (one interval) and the next is sent at once, so DSMR-reader is asked exactly
    /// once per interval however long it hangs, and a reading still comes within two intervals
    /// of it answering again.
    #[tokio::test(start_paused = true)]
    async fn after_any_hanging_outage_a_reading_comes_within_two_intervals() {
        crate::tls::install_crypto_provider();
        let interval = Duration::from_secs(5);
        for length in [3, 17, 31, 64, 600].map(Duration::from_secs) {
            let seen = outage(interval, true, length).await;
            let case = format!("hanging for {length:?}");
            let reading = seen.at(Heard::Reading)[0];
            assert!(
                reading - seen.back <= 2 * interval,
                "{case}: a reading {:?} after DSMR-reader answered again",
                reading - seen.back
            );
            if length >= interval {
                let first = seen.accepted.first().map(|t| *t - seen.down);
                assert!(first.is_some_and(|t| t <= interval), "{case}: {first:?}");
            }
            assert_one_interval_apart(&seen.accepted, interval, &format!("{case}: requests"));
            if length >= Duration::from_secs(30) {
                let unreachable = seen.at(Heard::Unreachable);
                assert_eq!(unreachable.len(), 1, "{case}");
                assert!(
                    unreachable[0] - seen.down <= Duration::from_secs(30),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn filter_carries_the_readings_offset() {
        assert_eq!(
            filter_time(datetime!(2026-11-26 14:02:14 +01:00)).as_deref(),
            Some("2026-11-26T14:02:14+01:00")
        );
        // The repeated autumn hour, told apart by its offset.
        assert_eq!(
            filter_time(datetime!(2026-10-25 02:30:00.5 +02:00)).as_deref(),
            Some("2026-10-25T02:30:00+02:00")
        );
        assert_eq!(
            filter_time(datetime!(2026-10-25 01:30:00 UTC)).as_deref(),
            Some("2026-10-25T01:30:00+00:00")
        );
    }
}
