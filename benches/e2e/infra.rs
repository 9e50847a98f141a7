//! The real parts of the end-to-end benchmark: a Mosquitto of our own, an MQTT subscriber that
//! timestamps what reaches the broker, a recording pass-through in front of the simulator (so
//! the analysis knows exactly which answers the bridge got, and when), the bridge on a thread
//! of its own, and /proc readings.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dsmr_bridge::config::Config;
use dsmr_bridge::dedup::Stats;
use dsmr_bridge::sink::BrokerConfig;
use dsmr_bridge::source::{Cadence, DsmrClient};
use dsmr_bridge::status::StatusReporter;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alloc;

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

use crate::mosquitto::Setup;
pub use crate::mosquitto::{Mosquitto, free_port, terminate};

/// A Mosquitto of the benchmark's own on a free port, with persistence (the retained store and
/// persistent sessions survive a restart) as in Home Assistant's Mosquitto app.
pub fn mosquitto(persistence: bool) -> anyhow::Result<Mosquitto> {
    // `set_tcp_nodelay`: without it Nagle's algorithm and the subscriber's delayed ACK can
    // hold a lone message for 40 ms at the broker, which is not the bridge's doing.
    let general = "max_queued_messages 0\nmax_inflight_messages 100\nset_tcp_nodelay true\n\
                   autosave_interval 3600\n";
    Ok(Mosquitto::start(Setup {
        persistence,
        general: general.into(),
        ..Setup::default()
    })?)
}

/// One message as the subscriber received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub topic: String,
    pub payload: String,
    pub retained: bool,
}

/// An MQTT client that records every message on its subscriptions with its arrival time, and
/// reconnects within milliseconds when the broker comes back.
pub struct Subscriber {
    _client: AsyncClient,
    seen: Arc<Mutex<Vec<Seen>>>,
    arrived: Arc<tokio::sync::Notify>,
    connacks: Arc<Mutex<Vec<Instant>>>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// `persistent`: a session the broker keeps (and queues for) while we are away.
    pub async fn connect(
        port: u16,
        filters: &[&str],
        id: &str,
        persistent: bool,
    ) -> anyhow::Result<Self> {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(!persistent)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        for filter in filters {
            client.subscribe(*filter, QoS::AtLeastOnce).await?;
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connacks = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let (sink, acks, notify) = (seen.clone(), connacks.clone(), arrived.clone());
        // One SUBACK per subscribe request.
        let mut pending = filters.len();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        // A thread and runtime of its own, so that arrival times are taken when the message
        // arrives, not when the benchmark's simulator and pass-through leave a worker free.
        let receive = async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    () = stopped.cancelled() => return,
                };
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        lock(&sink).push(Seen {
                            at: Instant::now(),
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retained: p.retain,
                        });
                        notify.notify_waiters();
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => lock(&acks).push(Instant::now()),
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        pending = pending.saturating_sub(1);
                        if pending == 0
                            && let Some(tx) = subscribed_tx.take()
                        {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("subscriber".into())
            .spawn(move || runtime.block_on(receive))?;
        // Until SUBACK nothing is guaranteed to be seen.
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .context("subscriber: no SUBACK")??;
        Ok(Self {
            _client: client,
            seen,
            arrived,
            connacks,
            stop,
            thread: Some(thread),
        })
    }

    pub fn all(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    pub fn len(&self) -> usize {
        lock(&self.seen).len()
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *lock(&self.seen))
    }

    /// Waits until `check` finds something in what was seen (checked on every arrival), at
    /// most until `deadline`.
    pub async fn wait_for<T>(
        &self,
        deadline: Instant,
        check: impl Fn(&[Seen]) -> Option<T>,
    ) -> Option<T> {
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = check(&lock(&self.seen)) {
                return Some(found);
            }
            tokio::time::timeout_at(deadline.into(), notified)
                .await
                .ok()?;
        }
    }

    pub fn connacks(&self) -> Vec<Instant> {
        lock(&self.connacks).clone()
    }

    /// Waits until nothing new has arrived for `quiet`, at most `limit`.
    pub async fn settle(&self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = (self.len(), Instant::now());
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let n = self.len();
            if n != last.0 {
                last = (n, Instant::now());
            } else if last.1.elapsed() >= quiet {
                return;
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the retained store holds under `filter`, as a new subscriber receives it.
pub async fn retained(port: u16, filter: &str) -> anyhow::Result<Vec<Seen>> {
    let id = format!("bench-retained-{}", free_port()?);
    let watcher = Subscriber::connect(port, &[filter], &id, false).await?;
    watcher
        .settle(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    Ok(watcher.all().into_iter().filter(|s| s.retained).collect())
}

/// DSMR-reader's endpoints the bridge polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    MeterStats,
    Reading,
    Today,
    Peak,
    Monitoring,
    Version,
    Other,
}

impl Endpoint {
    fn of(path: &str) -> Self {
        match path.trim_end_matches('/') {
            "/api/v2/datalogger/meter-statistics" => Self::MeterStats,
            "/api/v2/datalogger/dsmrreading" => Self::Reading,
            "/api/v2/consumption/today" => Self::Today,
            "/api/v2/consumption/quarter-hour-peak-electricity" => Self::Peak,
            "/api/v2/application/monitoring" => Self::Monitoring,
            "/api/v2/application/version" => Self::Version,
            _ => Self::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::MeterStats => "datalogger/meter-statistics",
            Self::Reading => "datalogger/dsmrreading",
            Self::Today => "consumption/today",
            Self::Peak => "consumption/quarter-hour-peak-electricity",
            Self::Monitoring => "application/monitoring",
            Self::Version => "application/version",
            Self::Other => "other",
        }
    }
}

/// One request the bridge made and the answer it got, with the times the pass-through saw
/// the request arrive and handed the answer back.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub endpoint: Endpoint,
    pub t_in: Instant,
    pub t_out: Instant,
    pub status: u16,
    pub body: Bytes,
}

/// A recording HTTP pass-through in front of the simulator.
pub struct Proxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Exchange>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(upstream, true).await
    }

    /// `keep_alive: false` answers every request with `Connection: close` and closes the
    /// connection after it, as DSMR-reader's gunicorn (sync workers) does.
    pub async fn start_with(upstream: SocketAddr, keep_alive: bool) -> anyhow::Result<Self> {
        let tls = dsmr_bridge::tls::client_config(None)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .build()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
        let shared = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (http, log) = (http.clone(), shared.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (http, log) = (http.clone(), log.clone());
                        async move { Ok::<_, Infallible>(forward(req, http, upstream, log).await) }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, log, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut *lock(&self.log))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    req: Request<Incoming>,
    http: reqwest::Client,
    upstream: SocketAddr,
    log: Arc<Mutex<Vec<Exchange>>>,
) -> Response<Full<Bytes>> {
    let t_in = Instant::now();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let endpoint = Endpoint::of(req.uri().path());
    let mut upstream_req = http.get(format!("http://{upstream}{path_and_query}"));
    for name in [hyper::header::AUTHORIZATION, hyper::header::ACCEPT] {
        if let Some(value) = req.headers().get(&name) {
            upstream_req = upstream_req.header(name.as_str(), value.as_bytes());
        }
    }
    let _ = req.into_body().collect().await;
    let (status, content_type, body) = match upstream_req.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            match response.bytes().await {
                Ok(body) => (status, content_type, body),
                Err(_) => (502, "text/plain".to_owned(), Bytes::new()),
            }
        }
        Err(_) => (502, "text/plain".to_owned(), Bytes::new()),
    };
    let t_out = Instant::now();
    lock(&log).push(Exchange {
        endpoint,
        t_in,
        t_out,
        status,
        body: body.clone(),
    });
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// What the bridge thread reports when it ends.
pub struct BridgeOutcome {
    pub stats: Stats,
    pub heap: alloc::Counters,
}

/// The bridge (`dsmr_bridge::run_with`) on a thread of its own with a current-thread runtime,
/// as `main.rs` runs it, so its CPU time can be read from /proc and its allocations counted.
pub struct BridgeThread {
    pub shutdown: CancellationToken,
    pub tid: u32,
    handle: std::thread::JoinHandle<anyhow::Result<BridgeOutcome>>,
}

impl BridgeThread {
    pub fn spawn(config: Config, broker: BrokerConfig, cadence: Cadence) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("bridge".into())
            .spawn(move || {
                alloc::start_counting();
                let _ = tid_tx.send(current_tid());
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| {
                        rt.block_on(async move {
                            let client = DsmrClient::new(&config.dsmr)?;
                            dsmr_bridge::run_with(
                                config,
                                broker,
                                client,
                                cadence,
                                StatusReporter::unobserved(),
                                stop,
                            )
                            .await
                        })
                    });
                let heap = alloc::stop_counting();
                result.map(|stats| BridgeOutcome { stats, heap })
            })?;
        let tid = tid_rx.recv().context("bridge thread id")?;
        Ok(Self {
            shutdown,
            tid,
            handle,
        })
    }

    /// CPU time of the bridge thread so far.
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(
            schedstat_ns(&format!("/proc/self/task/{}/schedstat", self.tid)).unwrap_or(0),
        )
    }

    pub fn stop(self) -> anyhow::Result<BridgeOutcome> {
        self.shutdown.cancel();
        match self.handle.join() {
            Ok(result) => result,
            Err(_) => bail!("bridge thread panicked"),
        }
    }
}

pub fn broker_config(port: u16, base: &str) -> BrokerConfig {
    BrokerConfig {
        host: "127.0.0.1".into(),
        port,
        username: None,
        password: None,
        tls: false,
        ca_pem: None,
        qos: 1,
        client_id: format!("dsmr-bridge_{base}"),
        will_topic: format!("{base}/status"),
    }
}

/// The default cadence with every period divided by `speed`.
pub fn scaled_cadence(speed: f64) -> Cadence {
    Cadence::new(crate::common::POLL).sped_up(speed)
}

fn current_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// First field of a schedstat file: time on the CPU in ns.
fn schedstat_ns(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of all live threads of a process (ns resolution).
pub fn process_cpu(pid: u32) -> Duration {
    let mut ns = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            ns += schedstat_ns(&format!("{}/schedstat", task.path().display())).unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// utime + stime from /proc/<pid>/stat (clock ticks, 10 ms), including exited threads.
pub fn process_cpu_ticks(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let Some((_, after)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// A `kB` line of /proc/<pid>/status (VmHWM, VmRSS).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The host's CPU steal time since the last snapshot: another guest on the same host running
/// on our CPUs. It shows when a run was disturbed from outside this machine.
#[derive(Debug, Clone, Copy)]
pub struct Steal {
    steal: u64,
    total: u64,
}

impl Steal {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        Self {
            steal: ticks.get(7).copied().unwrap_or(0),
            total: ticks.iter().take(8).sum(),
        }
    }

    /// Percentage of CPU time stolen since `self`.
    pub fn percent_since(self) -> f64 {
        let now = Self::now();
        let total = now.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * now.steal.saturating_sub(self.steal) as f64 / total as f64
    }
}

pub fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}
