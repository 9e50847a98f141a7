//! Simulated DSMR-reader: a local stand-in for DSMR-reader 5.11's REST API v2, backed by a
//! simulated household and DSMR 5 meter.
//!
//! One simulator serves three purposes: `dsmr-bridge demo` runs the bridge without a real
//! meter, integration tests inject faults and serve captured fixtures verbatim, and the
//! benchmark runs a day in accelerated time. Responses follow the captured real responses
//! field for field, so whatever works against the simulator works against DSMR-reader.
//!
//! The meter model (`meter`) advances lazily to the simulated clock on each request; the
//! clock runs at `SimOptions::speed` and can be paused or set by tests.

mod api;
pub mod history;
pub mod meter;
mod prices;
mod telegram;
mod zone;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use time::macros::{datetime, offset};
use time::{Duration, OffsetDateTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

pub use history::{Archive, ArchiveNow, Grouping, HistoryOptions, Hostile};
pub use meter::{MeterModel, Reading, Registers};
pub use telegram::P1Profile;
pub use zone::TimeZone;

/// The fields of a DSMR-reader 5.11 reading (`/api/v2/datalogger/dsmrreading`), in the order
/// of the captured `v2_datalogger_dsmrreading_latest.json`; the simulator writes them so.
pub const READING_FIELDS: [&str; 22] = [
    "id",
    "timestamp",
    "electricity_delivered_1",
    "electricity_returned_1",
    "electricity_delivered_2",
    "electricity_returned_2",
    "electricity_currently_delivered",
    "electricity_currently_returned",
    "phase_currently_delivered_l1",
    "phase_currently_delivered_l2",
    "phase_currently_delivered_l3",
    "extra_device_timestamp",
    "extra_device_delivered",
    "phase_currently_returned_l1",
    "phase_currently_returned_l2",
    "phase_currently_returned_l3",
    "phase_voltage_l1",
    "phase_voltage_l2",
    "phase_voltage_l3",
    "phase_power_current_l1",
    "phase_power_current_l2",
    "phase_power_current_l3",
];

/// Request log lines kept for `Simulator::request_log`.
const LOG_LINES: usize = 1_000;
/// Longest request line kept in the log; longer ones are cut.
const LOG_LINE_CHARS: usize = 512;
/// Distinct paths (and orderings of a path) counted for `Simulator::requests`; fuzzing cannot
/// grow the map beyond this.
const COUNTED_PATHS: usize = 1_024;
/// Cap on request head size (hyper answers 431 beyond it).
const MAX_HEAD_BYTES: usize = 16 * 1_024;
const MAX_HEADERS: usize = 64;
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The simulated clock stays well inside `time`'s range, so no date arithmetic can overflow.
const EARLIEST: OffsetDateTime = datetime!(2000-01-01 00:00:00 UTC);
const LATEST: OffsetDateTime = datetime!(9000-01-01 00:00:00 UTC);

/// What the simulated installation looks like.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Accepted as `Authorization: Token <key>` or `X-AUTHKEY: <key>`.
    pub api_key: String,
    /// 1 or 3; a single-phase meter reports null for every L2/L3 field.
    pub phases: u8,
    /// Without a gas meter the `extra_device_*` fields are null and today's gas is 0.
    pub gas: bool,
    /// Solar panels return power around noon; without them returned registers stay 0.
    pub solar: bool,
    /// Electricity meter id, telegram line `0-0:96.1.1`.
    pub equipment_id: String,
    /// Gas meter id, telegram line `0-1:96.1.0`.
    pub gas_equipment_id: String,
    /// The meter behind DSMR-reader as its telegram shows it: Dutch, Dutch with a water meter,
    /// or Belgian with the capacity tariff's lines.
    pub p1: P1Profile,
    /// Simulated wall-clock at start; its offset is the server's time zone for every answer.
    pub start: OffsetDateTime,
    /// Simulated seconds per real second (720 runs a day in two minutes).
    pub speed: f64,
    /// Seeds appliance switching and noise.
    pub seed: u64,
    /// Reported by `application/version`.
    pub version: String,
    /// The server's time zone, in which timestamps are printed and naive filter times are
    /// placed; `None`: `start`'s offset all year.
    pub zone: Option<TimeZone>,
}

impl Default for SimOptions {
    /// Like the demo installation: the fixtures' meter ids, three phases, gas and solar,
    /// starting now at +01:00 in real time.
    fn default() -> Self {
        let now = OffsetDateTime::now_utc().to_offset(offset!(+1));
        Self {
            api_key: "demo-key".to_owned(),
            phases: 3,
            gas: true,
            solar: true,
            equipment_id: "12345678901234567890123456789000".to_owned(),
            gas_equipment_id: "12345678901234567890123456789001".to_owned(),
            p1: P1Profile::Dutch,
            start: now - Duration::nanoseconds(i64::from(now.nanosecond())),
            speed: 1.0,
            seed: 1,
            version: "5.11.0".to_owned(),
            zone: None,
        }
    }
}

/// A failure mode applied to every `/api/` request until cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This status with `{"detail": "<reason phrase>"}`; codes outside 200–599 become 500.
    Status(u16),
    /// 200 with an HTML page, like a proxy's login page.
    Html,
    /// 200 JSON whose body is the normal answer cut in half.
    Truncated,
    /// 200 `application/json` whose body is not JSON.
    Garbage,
    /// The request is read and never answered; the connection closes when the fault is
    /// cleared or the simulator stops.
    Hang,
    /// 403 `{"detail": "Invalid auth key"}`, as for a wrong key.
    InvalidKey,
    /// 403 `{"detail": "API is disabled"}`.
    ApiDisabled,
}

/// A running simulated DSMR-reader. Clones share the same server; it stops when the last
/// clone is dropped or on `shutdown`.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    listener: Mutex<Option<JoinHandle<()>>>,
    shut_down: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.listener).take() {
            task.abort();
        }
    }
}

/// What the server tasks share with the handle.
struct Shared {
    state: Mutex<State>,
    fault: watch::Sender<Option<Fault>>,
    /// `host:port` for pagination links when a request has no usable Host header.
    fallback_host: String,
}

struct State {
    api_key: String,
    zone: TimeZone,
    version: String,
    equipment_id: String,
    gas_equipment_id: String,
    clock: Clock,
    model: MeterModel,
    overrides: HashMap<String, api::Reply>,
    register_overrides: HashMap<String, Option<String>>,
    timestamp_shift: Duration,
    counts: HashMap<String, u64>,
    log: VecDeque<String>,
    archive: Option<Archive>,
}

/// Simulated time: real elapsed time times `speed`, from an anchor that `set` moves.
#[derive(Debug)]
struct Clock {
    anchor_sim: OffsetDateTime,
    anchor_real: Instant,
    speed: f64,
    paused: bool,
}

impl Clock {
    fn now(&self) -> OffsetDateTime {
        if self.paused {
            return self.anchor_sim;
        }
        let elapsed = self.anchor_real.elapsed().as_secs_f64() * self.speed;
        Duration::checked_seconds_f64(elapsed)
            .and_then(|d| self.anchor_sim.checked_add(d))
            .map_or(LATEST, clamp_time)
    }

    fn set(&mut self, t: OffsetDateTime) {
        let offset = self.anchor_sim.offset();
        self.anchor_sim = clamp_time(t)
            .checked_to_offset(offset)
            .unwrap_or(self.anchor_sim);
        self.anchor_real = Instant::now();
    }

    fn pause(&mut self, paused: bool) {
        if paused != self.paused {
            self.anchor_sim = self.now();
            self.anchor_real = Instant::now();
            self.paused = paused;
        }
    }
}

fn clamp_time(t: OffsetDateTime) -> OffsetDateTime {
    let offset = t.offset();
    let clamped = t.clamp(EARLIEST, LATEST);
    clamped.checked_to_offset(offset).unwrap_or(clamped)
}

impl State {
    fn new(opts: &SimOptions) -> Self {
        Self {
            api_key: opts.api_key.clone(),
            zone: opts
                .zone
                .clone()
                .unwrap_or(TimeZone::Fixed(opts.start.offset())),
            version: opts.version.clone(),
            equipment_id: opts.equipment_id.clone(),
            gas_equipment_id: opts.gas_equipment_id.clone(),
            clock: Clock {
                anchor_sim: opts.start,
                anchor_real: Instant::now(),
                speed: opts.speed,
                paused: false,
            },
            model: MeterModel::new(opts),
            overrides: HashMap::new(),
            register_overrides: HashMap::new(),
            timestamp_shift: Duration::ZERO,
            counts: HashMap::new(),
            log: VecDeque::with_capacity(LOG_LINES),
            archive: None,
        }
    }

    /// Brings the meter up to the simulated clock.
    fn sync(&mut self) {
        let now = self.clock.now();
        self.model.advance_to(now);
    }

    fn count(&mut self, key: String) {
        if let Some(count) = self.counts.get_mut(&key) {
            *count += 1;
        } else if self.counts.len() < COUNTED_PATHS {
            self.counts.insert(key, 1);
        }
    }

    /// Brings an archive that runs on the simulator's clock up to it, its hours from the
    /// meter's registers.
    fn sync_archive(&mut self) {
        let now = self.clock.now();
        let model = &self.model;
        if let Some(archive) = self.archive.as_mut().filter(|a| a.follows_clock()) {
            archive.advance_with(now, |t| {
                model
                    .marked(t)
                    .map(|([d1, r1, d2, r2], gas)| [d1, d2, r1, r2, gas])
            });
        }
    }

    fn record(&mut self, method: &str, path: &str, query: Option<&str>) {
        self.count(path.to_owned());
        let ordering = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "ordering")
                .last()
                .map(|(_, v)| v.into_owned())
        });
        if let Some(ordering) = ordering {
            self.count(format!("{path}?ordering={ordering}"));
        }
        let mut line = match query {
            Some(q) => format!("{method} {path}?{q}"),
            None => format!("{method} {path}"),
        };
        if line.len() > LOG_LINE_CHARS {
            let mut cut = LOG_LINE_CHARS;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    fn reply(&mut self, req: &api::Request<'_>, host: &str, fault: Option<&Fault>) -> api::Reply {
        if let Some(reply) = fault.and_then(api::fault_reply) {
            return reply;
        }
        let reply = match self.overrides.get(req.path) {
            Some(reply) => reply.clone(),
            None => {
                self.sync();
                self.sync_archive();
                let ctx = api::Context {
                    model: &self.model,
                    api_key: &self.api_key,
                    version: &self.version,
                    ids: telegram::MeterIds {
                        electricity: &self.equipment_id,
                        gas: &self.gas_equipment_id,
                    },
                    register_overrides: &self.register_overrides,
                    shift: self.timestamp_shift,
                    now: self.clock.now(),
                    host,
                    zone: &self.zone,
                    archive: self.archive.as_ref(),
                };
                api::respond(&ctx, req)
            }
        };
        match fault {
            Some(Fault::Truncated) => api::truncate(reply),
            _ => reply,
        }
    }
}

impl Simulator {
    /// Starts serving on a free port of 127.0.0.1.
    pub async fn start(opts: SimOptions) -> io::Result<Simulator> {
        Self::start_on(opts, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts serving on `addr` (port 0 picks a free one); must run inside a tokio runtime.
    pub async fn start_on(mut opts: SimOptions, addr: SocketAddr) -> io::Result<Simulator> {
        validate(&opts)?;
        opts.start = clamp_time(opts.start);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&opts)),
            fault: watch::Sender::new(None),
            fallback_host: connect_addr(addr).to_string(),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Simulator {
            inner: Arc::new(Inner {
                shared,
                addr,
                listener: Mutex::new(Some(task)),
                shut_down: AtomicBool::new(false),
            }),
        })
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> Url {
        let text = format!("http://{}/", connect_addr(self.inner.addr));
        Url::parse(&text).expect("a socket address always forms a valid http URL")
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Applies `fault` to every `/api/` request from now on; `None` clears it. Clearing
    /// `Hang` closes the connections it held.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.inner.shared.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Option<Fault> {
        self.inner.shared.fault.borrow().clone()
    }

    /// Closes the listening socket and open connections, so connects are refused; the meter
    /// and all settings are kept for `resume_listening`.
    pub async fn stop_listening(&self) {
        let task = lock(&self.inner.listener).take();
        if let Some(task) = task {
            task.abort();
            // The listener is closed once the aborted task has been dropped.
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn resume_listening(&self) -> io::Result<()> {
        if self.inner.shut_down.load(Ordering::SeqCst) {
            return Err(io::Error::other("the simulator has been shut down"));
        }
        if lock(&self.inner.listener).is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.inner.addr).await?;
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&self.inner.shared)));
        let mut slot = lock(&self.inner.listener);
        match slot.as_ref() {
            // Another resume won the race; keep its listener.
            Some(_) => task.abort(),
            None => *slot = Some(task),
        }
        Ok(())
    }

    /// Serves `body` verbatim for `path` (any method, no auth check) until `clear_overrides`;
    /// a fault still takes precedence.
    pub fn override_endpoint(&self, path: &str, status: u16, content_type: &str, body: String) {
        let reply = api::Reply {
            status: api::valid_status(status),
            content_type: content_type.to_owned(),
            body,
            allow: None,
        };
        self.state().overrides.insert(path.to_owned(), reply);
    }

    pub fn clear_overrides(&self) {
        self.state().overrides.clear();
    }

    /// Requests received for `path` (without query), whatever the answer.
    pub fn requests(&self, path: &str) -> u64 {
        self.state().counts.get(path).copied().unwrap_or(0)
    }

    /// Requests received for `path` with `ordering=<ordering>` (the last `ordering` of the
    /// query, as Django reads it): the history import's readings (`timestamp`) apart from the
    /// live poll's (`-timestamp`).
    pub fn requests_ordered(&self, path: &str, ordering: &str) -> u64 {
        let key = format!("{path}?ordering={ordering}");
        self.state().counts.get(&key).copied().unwrap_or(0)
    }

    /// The last requests as `"GET /api/v2/...?query"`, newest last.
    pub fn request_log(&self) -> Vec<String> {
        self.state().log.iter().cloned().collect()
    }

    /// Current simulated time.
    pub fn now(&self) -> OffsetDateTime {
        self.state().clock.now()
    }

    /// Jumps the simulated clock; the meter integrates up to it on the next request. A jump
    /// back freezes the meter until the clock passes its latest reading again, since
    /// registers and reading timestamps never run backwards.
    pub fn set_time(&self, t: OffsetDateTime) {
        self.state().clock.set(t);
    }

    /// Freezes (or resumes) the simulated clock, for tests that want stable values.
    pub fn pause_clock(&self, paused: bool) {
        self.state().clock.pause(paused);
    }

    /// Swaps the electricity meter at the current time: a new equipment id and registers
    /// restarting at `registers` (e.g. `Registers::NEW_METER`). The gas meter stays.
    pub fn set_meter(&self, equipment_id: &str, registers: Registers) {
        let mut state = self.state();
        state.sync();
        state.model.swap_meter(registers);
        state.equipment_id = equipment_id.to_owned();
    }

    /// Forces `field` of every `dsmrreading` result and of `meter-statistics` to `value`
    /// (decimal text, or null for `None`); the telegram and the other endpoints keep the
    /// model's values.
    pub fn set_register_override(&self, field: &str, value: Option<String>) {
        self.state()
            .register_overrides
            .insert(field.to_owned(), value);
    }

    pub fn clear_register_overrides(&self) {
        self.state().register_overrides.clear();
    }

    /// Shifts every timestamp the meter reports (readings, gas, telegram, peaks), as if its
    /// clock ran behind (negative) or ahead (positive); filters apply to shifted values.
    pub fn set_reading_timestamp_offset(&self, offset: Duration) {
        self.state().timestamp_shift = offset;
    }

    /// Leaves one reading stamped `ahead` of now in the readings table, with
    /// `currently_delivered` W; the meter goes on as before.
    pub fn insert_stray_reading(&self, ahead: Duration, currently_delivered: u32) {
        let mut state = self.state();
        state.sync();
        state.model.push_stray(ahead, currently_delivered);
    }

    /// Serves `opts`' archive from `statistics/hour` and `statistics/day`, and its hours'
    /// readings from `datalogger/dsmrreading`, from now on, as DSMR-reader serves them at
    /// `opts.now`. On the simulator's clock (`ArchiveNow::Clock`) the archive runs up to the
    /// clock's hour and the meter counts on from its registers there (its older readings are
    /// dropped); the hours after it are the meter's own, so the live values, the readings and
    /// what DSMR-reader archives after midnight are one household.
    pub fn set_history(&self, opts: HistoryOptions) {
        let mut state = self.state();
        let mut archive = Archive::new(opts);
        if archive.follows_clock() {
            // The archive runs up to the clock, then the meter counts on from its registers:
            // readings, archived hours and live values are one household.
            state.sync();
            archive.advance_to(state.clock.now());
            let (hour, [e1, e2, e1r, e2r, gas]) = archive.hand_over();
            state.model.align(hour, [e1, e1r, e2, e2r], gas);
        }
        state.archive = Some(archive);
    }

    /// Moves the archive's clock `hours` on: the household runs on, and DSMR-reader archives
    /// each day once its statistics run has come (after midnight). For an archive on the
    /// simulator's clock (`ArchiveNow::Clock`) move the clock instead (`set_time`).
    pub fn extend_history(&self, hours: u32) {
        if let Some(archive) = self.state().archive.as_mut() {
            archive.extend(hours);
        }
    }

    /// Moves the archive's clock to `t` (never back).
    pub fn set_history_time(&self, t: OffsetDateTime) {
        if let Some(archive) = self.state().archive.as_mut() {
            archive.advance_to(t);
        }
    }

    /// A copy of the archive as served now, to check what a client made of it.
    pub fn archive(&self) -> Option<Archive> {
        let mut state = self.state();
        state.sync();
        state.sync_archive();
        state.archive.clone()
    }

    /// The meter's latest reading at the current simulated time.
    pub fn latest_reading(&self) -> Reading {
        let mut state = self.state();
        state.sync();
        state.model.latest().clone()
    }

    /// Stops serving for good: the listener and all connections close.
    pub fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::SeqCst);
        if let Some(task) = lock(&self.inner.listener).take() {
            task.abort();
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.shared.state)
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

fn validate(opts: &SimOptions) -> io::Result<()> {
    let invalid = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()));
    if !matches!(opts.phases, 1 | 3) {
        return invalid("phases must be 1 or 3");
    }
    if !opts.speed.is_finite() || opts.speed < 0.0 {
        return invalid("speed must be a finite, non-negative number");
    }
    Ok(())
}

/// The address a client connects to: an unspecified bind address means loopback.
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
    } else {
        addr
    }
}

/// A poisoned lock only means another request panicked mid-way; the state stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connections here means aborting this task closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(error) => {
                    // Typically out of file descriptors; back off instead of spinning.
                    tracing::debug!(error = %error, "Simulator accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = result {
        tracing::trace!(error = %error, "Simulator connection ended with an error.");
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, io::Error> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let request = api::Request {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query(),
        authorization: header(hyper::header::AUTHORIZATION.as_str()),
        x_authkey: header("x-authkey"),
    };
    let host = header(HOST.as_str())
        .filter(|h| is_plain_host(h))
        .unwrap_or(&shared.fallback_host);
    let fault = if request.path.starts_with("/api/") {
        shared.fault.borrow().clone()
    } else {
        None
    };
    lock(&shared.state).record(request.method, request.path, request.query);
    if fault == Some(Fault::Hang) {
        tracing::debug!(
            method = request.method,
            path = request.path,
            "Simulator hangs the request."
        );
        let mut changes = shared.fault.subscribe();
        let _ = changes.wait_for(|f| *f != Some(Fault::Hang)).await;
        return Err(io::Error::other("hung request released without an answer"));
    }
    let reply = lock(&shared.state).reply(&request, host, fault.as_ref());
    tracing::debug!(
        method = request.method,
        path = request.path,
        status = reply.status,
        "Simulator answered."
    );
    Ok(to_response(reply))
}

/// Only `host[:port]` characters go into the links we echo back.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
}

fn to_response(reply: api::Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&reply.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(CONTENT_TYPE, content_type);
    if let Some(allow) = reply.allow {
        headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    // gunicorn's sync workers close every connection; clients must cope with that.
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    use super::*;

    const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

    struct Answer {
        status: u16,
        head: String,
        body: String,
    }

    impl Answer {
        fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
        }
    }

    async fn raw(addr: SocketAddr, request: &[u8]) -> io::Result<Answer> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut bytes = Vec::new();
        timeout(WAIT, stream.read_to_end(&mut bytes)).await??;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    }

    async fn get(sim: &Simulator, path: &str) -> Answer {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Token demo-key\r\n\r\n",
            sim.addr()
        );
        raw(sim.addr(), request.as_bytes())
            .await
            .expect("HTTP exchange")
    }

    async fn paused_sim(opts: SimOptions) -> Simulator {
        let sim = Simulator::start(SimOptions {
            start: datetime!(2026-11-26 14:02:14 +1),
            ..opts
        })
        .await
        .expect("simulator starts");
        sim.pause_clock(true);
        sim.set_time(datetime!(2026-11-26 14:30:00 +1));
        sim
    }

    #[tokio::test]
    async fn serves_every_endpoint_over_http() {
        let sim = paused_sim(SimOptions::default()).await;
        assert_eq!(
            sim.url().as_str(),
            format!("http://127.0.0.1:{}/", sim.addr().port())
        );

        let latest = get(
            &sim,
            "/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1",
        )
        .await;
        assert_eq!(latest.status, 200);
        assert!(
            latest
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        assert!(
            latest
                .head
                .to_ascii_lowercase()
                .contains("connection: close")
        );
        assert_eq!(
            latest.json()["results"][0]["timestamp"],
            "2026-11-26T14:30:00+01:00"
        );
        let next = latest.json()["next"]
            .as_str()
            .map(str::to_owned)
            .expect("next link");
        assert!(next.starts_with(&format!(
            "http://{}/api/v2/datalogger/dsmrreading?limit=1&offset=1",
            sim.addr()
        )));

        let checks: [(&str, &str); 8] = [
            ("/api/v2/datalogger/meter-statistics", "dsmr_version"),
            ("/api/v2/consumption/today", "electricity1"),
            (
                "/api/v2/consumption/quarter-hour-peak-electricity?ordering=-read_at_start&limit=1",
                "count",
            ),
            (
                "/api/v2/consumption/electricity-live",
                "currently_delivered",
            ),
            ("/api/v2/consumption/gas-live", "currently_delivered"),
            (
                "/api/v2/consumption/gas?ordering=-read_at&limit=1",
                "results",
            ),
            ("/api/v2/application/version", "version"),
            ("/api/v2/application/monitoring", "problems"),
        ];
        for (path, field) in checks {
            let answer = get(&sim, path).await;
            assert_eq!(answer.status, 200, "{path}");
            assert!(!answer.json()[field].is_null(), "{path}: {}", answer.body);
        }

        let xauth =
            "GET /api/v2/application/version HTTP/1.1\r\nHost: x\r\nX-AUTHKEY: demo-key\r\n\r\n";
        assert_eq!(
            raw(sim.addr(), xauth.as_bytes())
                .await
                .expect("exchange")
                .status,
            200
        );
        let missing = raw(
            sim.addr(),
            b"GET /api/v2/application/version HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .expect("exchange");
        assert_eq!(
            (missing.status, missing.body.as_str()),
            (403, r#"{"detail":"Invalid auth key"}"#)
        );
        let post = b"POST /api/v2/consumption/electricity-live HTTP/1.1\r\nHost: x\r\nAuthorization: Token demo-key\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(raw(sim.addr(), post).await.expect("exchange").status, 405);
        let unknown = get(&sim, "/api/v2/does-not-exist").await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.body.contains("<title>Not Found</title>"));

        assert_eq!(sim.requests("/api/v2/application/version"), 3);
        let log = sim.request_log();
        assert_eq!(
            log.first().map(String::as_str),
            Some("GET /api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1")
        );
        assert_eq!(
            log.last().map(String::as_str),
            Some("GET /api/v2/does-not-exist")
        );
    }

    #[tokio::test]
    async fn faults_overrides_and_listener_control() {
        let sim = paused_sim(SimOptions::default()).await;
        let path = "/api/v2/consumption/electricity-live";

        sim.set_fault(Some(Fault::Status(503)));
        let answer = get(&sim, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (503, r#"{"detail":"Service Unavailable"}"#)
        );
        sim.set_fault(Some(Fault::Truncated));
        let answer = get(&sim, path).await;
        assert_eq!(answer.status, 200);
        assert!(
            answer.json().is_null(),
            "cut JSON does not parse: {}",
            answer.body
        );
        sim.set_fault(Some(Fault::InvalidKey));
        assert_eq!(get(&sim, path).await.status, 403);

        sim.set_fault(Some(Fault::Hang));
        let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
        stream
            .write_all(b"GET /api/v2/application/version HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let mut bytes = Vec::new();
        let pending = timeout(
            std::time::Duration::from_millis(200),
            stream.read_to_end(&mut bytes),
        )
        .await;
        assert!(pending.is_err(), "a hung request gets no answer");
        sim.set_fault(None);
        let closed = timeout(WAIT, stream.read_to_end(&mut bytes))
            .await
            .expect("closed after clearing");
        assert!(closed.is_ok() && bytes.is_empty());
        assert_eq!(get(&sim, path).await.status, 200);

        sim.override_endpoint(
            "/api/v2/datalogger/dsmrreading",
            200,
            "application/json",
            "{\"fixture\": true}".to_owned(),
        );
        assert_eq!(
            get(&sim, "/api/v2/datalogger/dsmrreading?limit=1")
                .await
                .body,
            "{\"fixture\": true}"
        );
        sim.clear_overrides();
        let oldest_kept = 1_667_u64.saturating_sub(meter::READING_HISTORY as u64) + 1;
        assert_eq!(
            get(&sim, "/api/v2/datalogger/dsmrreading?limit=1")
                .await
                .json()["results"][0]["id"],
            oldest_kept
        );

        sim.stop_listening().await;
        let refused = TcpStream::connect(sim.addr()).await;
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
        sim.resume_listening().await.expect("listens again");
        assert_eq!(get(&sim, path).await.status, 200);

        sim.shutdown();
        assert!(sim.resume_listening().await.is_err());
    }

    #[tokio::test]
    async fn clock_meter_swap_and_overrides() {
        let sim = paused_sim(SimOptions::default()).await;
        assert_eq!(sim.now(), datetime!(2026-11-26 14:30:00 +1));
        let before = sim.latest_reading();
        assert_eq!(before.timestamp, sim.now());

        sim.set_meter("NEWMETER", Registers::NEW_METER);
        sim.set_time(datetime!(2026-11-26 14:31:00 +1));
        let reading = get(
            &sim,
            "/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1",
        )
        .await
        .json();
        let delivered_2: f64 = reading["results"][0]["electricity_delivered_2"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        assert!(delivered_2 < 10.0, "registers restart low: {delivered_2}");
        let stats = get(&sim, "/api/v2/datalogger/meter-statistics")
            .await
            .json();
        assert!(
            stats["latest_telegram"]
                .as_str()
                .is_some_and(|t| t.contains("0-0:96.1.1(NEWMETER)"))
        );

        sim.set_register_override("electricity_delivered_1", None);
        let reading = get(
            &sim,
            "/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1",
        )
        .await
        .json();
        assert!(reading["results"][0]["electricity_delivered_1"].is_null());
        sim.clear_register_overrides();

        sim.set_reading_timestamp_offset(Duration::minutes(-10));
        let reading = get(
            &sim,
            "/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1",
        )
        .await
        .json();
        assert_eq!(
            reading["results"][0]["timestamp"],
            "2026-11-26T14:21:00+01:00"
        );

        sim.set_time(datetime!(2026-11-26 12:00:00 +1));
        assert_eq!(
            sim.latest_reading().timestamp,
            datetime!(2026-11-26 14:31:00 +1),
            "the meter never runs back"
        );
    }

    /// An archive on the simulator's clock: the meter counts on from the archive's registers,
    /// the readings at hour boundaries are the meter's, and after midnight DSMR-reader archives
    /// the day with the meter's hours, its totals matching the registers.
    #[tokio::test]
    async fn an_archive_on_the_clock_is_the_meter_s_past() {
        let sim = Simulator::start(SimOptions {
            start: datetime!(2026-11-26 13:40:00 +1),
            ..SimOptions::default()
        })
        .await
        .expect("simulator starts");
        sim.pause_clock(true);
        sim.set_history(HistoryOptions {
            first_day: time::macros::date!(2026 - 11 - 20),
            now: ArchiveNow::Clock,
            ..HistoryOptions::default()
        });
        let archive = sim.archive().expect("archive");
        let hour_start = |a: &Archive, t: OffsetDateTime| {
            let i = a.reading_index(t);
            a.reading(i)
                .filter(|r| r.timestamp == t)
                .map(|r| r.registers)
        };
        let at_13 = archive.hours().last().map(|h| h.0 + Duration::HOUR);
        assert_eq!(at_13, Some(datetime!(2026-11-26 13:00 +1)));
        let latest = sim.latest_reading();
        let last = archive.hours().len() - 1;
        let at_hand_over = hour_start(&archive, archive.hours()[last].0)
            .map(|r| std::array::from_fn::<u64, 5, _>(|f| r[f] + archive.hours()[last].1[f]));
        let [e1, e2, e1r, e2r, gas] = at_hand_over.expect("registers at 13:00");
        assert_eq!(latest.registers, [e1, e1r, e2, e2r]);
        assert_eq!(latest.gas.map(|g| g.delivered), Some(gas));

        sim.set_time(datetime!(2026-11-26 15:10:00 +1));
        let archive = sim.archive().expect("archive");
        let registers_at = |t: OffsetDateTime| hour_start(&archive, t).expect("a reading");
        let at_14 = registers_at(datetime!(2026-11-26 14:00 +1));
        let ([d1, r1, d2, r2], gas) = sim
            .state()
            .model
            .marked(datetime!(2026-11-26 15:00 +1))
            .expect("the meter passed 15:00");
        let at_15 = [d1, d2, r1, r2, gas];
        assert!(at_14[0] + at_14[1] >= e1 + e2, "the meter counts on");
        let hour_14 = archive
            .hours()
            .iter()
            .find(|h| h.0 == datetime!(2026-11-26 14:00 +1));
        let values = hour_14.expect("14:00 simulated").1;
        assert_eq!(
            std::array::from_fn::<u64, 5, _>(|f| at_14[f] + values[f]),
            at_15
        );
        let latest = sim.latest_reading();
        assert!(latest.registers[0] + latest.registers[2] >= at_15[0] + at_15[1]);
        assert!(
            archive
                .hour_rows()
                .iter()
                .all(|r| r.hour_start < datetime!(2026-11-26 00:00 +1))
        );

        sim.set_time(datetime!(2026-11-27 00:05:00 +1));
        let archive = sim.archive().expect("archive");
        let day = archive.published_day_rows().last().expect("a day row");
        assert_eq!(day.day, time::macros::date!(2026 - 11 - 26));
        let midnight = sim
            .state()
            .model
            .marked(datetime!(2026-11-27 00:00 +1))
            .expect("the meter passed midnight");
        let ([d1, r1, d2, r2], gas) = midnight;
        let end = [d1, d2, r1, r2, gas];
        let day_end: [u64; 5] = std::array::from_fn(|f| day.registers[f] + day.consumption[f]);
        assert_eq!(day_end, end);
        assert_eq!(archive.hour_rows().len(), 7 * 24);
    }

    #[tokio::test]
    async fn accelerated_clock_advances_the_meter() {
        let sim = Simulator::start(SimOptions {
            speed: 3_600.0,
            start: datetime!(2026-11-26 10:00:00 +1),
            ..SimOptions::default()
        })
        .await
        .expect("simulator starts");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let reading = sim.latest_reading();
        assert!(
            reading.timestamp >= datetime!(2026-11-26 10:06:00 +1),
            "{}",
            reading.timestamp
        );
    }

    #[tokio::test]
    async fn rejects_bad_options_and_survives_abuse() {
        for opts in [
            SimOptions {
                phases: 2,
                ..SimOptions::default()
            },
            SimOptions {
                speed: f64::NAN,
                ..SimOptions::default()
            },
        ] {
            let error = Simulator::start(opts).await.err().map(|e| e.kind());
            assert_eq!(error, Some(io::ErrorKind::InvalidInput));
        }
        let sim = paused_sim(SimOptions::default()).await;
        let huge = format!(
            "GET /api/v2/application/version HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
            "a".repeat(40_000)
        );
        if let Ok(answer) = raw(sim.addr(), huge.as_bytes()).await {
            assert!(
                answer.status == 431 || answer.status == 0,
                "{}",
                answer.status
            );
        }
        let fuzzy = [
            "/api/v2/datalogger/dsmrreading?limit=%FF%FE&offset=99999999999999999999&ordering=,,,-&timestamp__lte=%00",
            "/api/v2/datalogger/dsmrreading?timestamp__gte=9999-12-31T23:59:59-23:59&limit=18446744073709551615",
            "/api/v2/consumption/quarter-hour-peak-electricity?ordering=-average_delivered&read_at_start__gte=2026-11-26",
            "/api/v2/%2e%2e/%2e%2e/etc/passwd",
        ];
        for path in fuzzy {
            let status = get(&sim, path).await.status;
            assert!([200, 400, 404].contains(&status), "{path}: {status}");
        }
        let garbage = raw(sim.addr(), b"\x00\x01\x02 nonsense\r\n\r\n")
            .await
            .expect("exchange");
        assert_eq!(garbage.status, 400);
        assert_eq!(get(&sim, "/api/v2/application/version").await.status, 200);
    }
}
