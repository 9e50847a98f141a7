//! A real Home Assistant Core for the tests that need one: installed once into a cache by
//! `scripts/ha-core` (Python 3.13 and PyPI), started on a free port of 127.0.0.1 under a
//! watchdog that ends it with the test process however that ends, onboarded through its HTTP
//! API, and holding a long-lived token of its owner.
//!
//! Two kinds: `shared(version)`, one Core per version and test binary, started at first use
//! and shared by every test (each works under ids of its own); and `start(version, setup)`, a
//! Core of the test's own, in a config dir of the test's choosing and optionally with its wall
//! clock started at a chosen time (libfaketime), e.g. just before a clock change. Both return
//! `None` on a machine that cannot install the Core, after one line that says why; under CI
//! that is a failure (`crate::optional`). A Core that installed but does not start always fails
//! the test.
//!
//! Included by `tests/it/main.rs` beside `eventually.rs` and `optional.rs`.
// Each test file uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_tungstenite::tungstenite::Message;

use crate::eventually::eventually;
use crate::optional;

/// Installed and with warm caches a Core answers in about 3 s; the first start of a version
/// compiles its Python files, and the machine may be busy with the rest of the suite.
const CORE_START: Duration = Duration::from_secs(240);

/// A Core stopped with SIGTERM writes its database and exits within seconds.
const CORE_STOP: Duration = Duration::from_secs(30);

/// Ten years: a Core restarted with its clock moved on (faketime) still takes the token.
const TOKEN_DAYS: u32 = 3650;

/// Why this machine cannot have a Core: one line for the skip, and the installer's whole
/// output for CI's failure.
#[derive(Clone, Debug)]
pub struct Unavailable {
    pub reason: String,
    pub details: String,
}

impl Unavailable {
    fn new(reason: impl Into<String>) -> Unavailable {
        Unavailable {
            reason: reason.into(),
            details: String::new(),
        }
    }
}

/// How a Core of the test's own starts.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Core's wall clock starts at this instant and runs on from there (libfaketime, with
    /// `LD_PRELOAD`); its monotonic clock is shifted alike, so its timers keep working.
    pub faketime: Option<OffsetDateTime>,
    /// With `faketime`, Core's clocks run this many times faster than real time (libfaketime's
    /// `x` rate): its 5-minute compile every 5 s at 60, its hourly one every minute.
    pub rate: Option<u32>,
    /// Core's config dir (`configuration.yaml`, the database, `.storage`), kept after the test;
    /// a temporary one, removed with the `Core`, when `None`.
    pub config_dir: Option<PathBuf>,
}

/// A running, onboarded Home Assistant Core on 127.0.0.1.
pub struct Core {
    pub version: String,
    pub port: u16,
    /// A long-lived access token of the owner, valid for `TOKEN_DAYS` of Core's clock.
    pub token: String,
    dir: PathBuf,
    hass: PathBuf,
    /// Ends Core when the test process ends; see `launch`.
    watchdog: Option<Child>,
    /// Core's clock rate under libfaketime.
    rate: Option<u32>,
    _temp: Option<tempfile::TempDir>,
}

/// The shared Core of `version`: started once per test binary, at first use. Blocks until it
/// answers; `None` (after one line saying why) when this machine cannot install it.
#[track_caller]
pub fn shared(version: &str) -> Option<&'static Core> {
    type Slot = OnceLock<Result<Core, Failure>>;
    static SHARED: Mutex<BTreeMap<String, &'static Slot>> = Mutex::new(BTreeMap::new());
    let slot: &'static Slot = SHARED
        .lock()
        .unwrap()
        .entry(version.to_owned())
        .or_insert_with(|| Box::leak(Box::default()));
    // Every test that wants this Core waits here for the one that starts it; a start that
    // failed is reported to each of them, not tried again.
    match slot.get_or_init(|| in_plain_thread(version.to_owned(), Setup::default())) {
        Ok(core) => Some(core),
        Err(failure) => failure.report(version),
    }
}

/// A Core of the test's own, stopped when dropped. Blocks until it answers; `None` (after one
/// line saying why) when this machine cannot install it or has no libfaketime for
/// `setup.faketime`.
#[track_caller]
pub fn start(version: &str, setup: Setup) -> Option<Core> {
    match in_plain_thread(version.to_owned(), setup) {
        Ok(core) => Some(core),
        Err(failure) => failure.report(version),
    }
}

/// What kept a Core from answering.
#[derive(Debug)]
enum Failure {
    /// This machine cannot install it: a skip, or under CI a failure.
    Unavailable(Unavailable),
    /// It installed but did not come up: always a failure.
    Failed(String),
}

impl Failure {
    #[track_caller]
    fn report<T>(&self, version: &str) -> Option<T> {
        match self {
            Failure::Unavailable(why) => {
                if optional::required() && !why.details.is_empty() {
                    eprintln!("{}", why.details);
                }
                optional::skip(&format!("Home Assistant Core {version}"), &why.reason);
                None
            }
            Failure::Failed(message) => panic!("Home Assistant Core {version}: {message}"),
        }
    }
}

/// Starts the Core from a plain thread: a caller inside a runtime must not block it on a
/// runtime of the Core's own, and a panic becomes a `Failure` the caller reports.
fn in_plain_thread(version: String, setup: Setup) -> Result<Core, Failure> {
    let start = std::thread::spawn(move || {
        let venv = install(&version).map_err(Failure::Unavailable)?;
        let faketime = match setup.faketime {
            Some(_) => Some(libfaketime().map_err(Failure::Unavailable)?),
            None => None,
        };
        Ok(Core::launch_new(&version, &venv, setup, faketime))
    });
    match start.join() {
        Ok(result) => result,
        Err(panic) => Err(Failure::Failed(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "did not start".to_owned()),
        )),
    }
}

/// `scripts/ha-core <version>`, once per version and test binary: the virtualenv it installed
/// into (or found in the cache), or why it could not.
pub fn install(version: &str) -> Result<PathBuf, Unavailable> {
    type Slot = Arc<OnceLock<Result<PathBuf, Unavailable>>>;
    static INSTALLS: Mutex<BTreeMap<String, Slot>> = Mutex::new(BTreeMap::new());
    let slot = INSTALLS
        .lock()
        .unwrap()
        .entry(version.to_owned())
        .or_default()
        .clone();
    slot.get_or_init(|| run_installer(version)).clone()
}

fn run_installer(version: &str) -> Result<PathBuf, Unavailable> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ha-core");
    let output = Command::new(&script)
        .arg(version)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Unavailable::new(format!("cannot run {}: {e}", script.display())))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        // The script's own message (`scripts/ha-core: needs Python 3.13 …`) is its last line;
        // pip's, after a failed download, too.
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        let reason = match last {
            Some(line) if line.starts_with("scripts/ha-core:") => line.trim().to_owned(),
            Some(line) => format!("scripts/ha-core {version} failed: {}", line.trim()),
            None => format!("scripts/ha-core {version} failed ({})", output.status),
        };
        return Err(Unavailable {
            reason,
            details: stderr,
        });
    }
    let venv = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(PathBuf::from(venv))
}

/// Where the `faketime` package puts its library: Debian's multiarch folder, others' plain
/// lib folders; `LIBFAKETIME` names another.
fn libfaketime() -> Result<PathBuf, Unavailable> {
    if let Some(path) = std::env::var_os("LIBFAKETIME") {
        return Ok(PathBuf::from(path));
    }
    let arch = std::env::consts::ARCH;
    let candidates = [
        format!("/usr/lib/{arch}-linux-gnu/faketime/libfaketime.so.1"),
        "/usr/lib/faketime/libfaketime.so.1".to_owned(),
        "/usr/local/lib/faketime/libfaketime.so.1".to_owned(),
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Unavailable::new(format!(
                "faketime for a Core at a chosen time: no {} (apt-get install faketime, or set LIBFAKETIME)",
                candidates[0]
            ))
        })
}

impl Core {
    fn launch_new(version: &str, venv: &Path, setup: Setup, faketime: Option<PathBuf>) -> Core {
        let (dir, temp) = match setup.config_dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir).expect("Core's config dir");
                (dir, None)
            }
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                (temp.path().to_owned(), Some(temp))
            }
        };
        let mut core = Core {
            version: version.to_owned(),
            port: 0,
            token: String::new(),
            dir,
            hass: venv.join("bin/hass"),
            watchdog: None,
            rate: None,
            _temp: temp,
        };
        core.rate = setup.rate;
        core.launch(setup.faketime.zip(faketime));
        core.token = off_runtime(|| runtime().block_on(onboard(core.port, &core.dir)));
        core
    }

    /// Writes the configuration for a free port and starts `hass` under a watchdog shell that
    /// ends it when this test process ends, however it ends; waits until its HTTP API answers.
    /// The port is free when chosen, but another test may bind it before Core does (twelve run
    /// at a time): Core then logs that it cannot serve HTTP and is started again on another.
    fn launch(&mut self, faketime: Option<(OffsetDateTime, PathBuf)>) {
        for _ in 0..3 {
            if self.launch_once(faketime.clone()) {
                return;
            }
            self.stop();
        }
        panic!(
            "Home Assistant Core {}: every port taken before it bound one",
            self.version
        );
    }

    /// One start on a new port; `false` when the port was taken before Core bound it.
    fn launch_once(&mut self, faketime: Option<(OffsetDateTime, PathBuf)>) -> bool {
        self.port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        std::fs::write(
            self.dir.join("configuration.yaml"),
            format!(
                "homeassistant:\n  name: test\n  time_zone: Europe/Amsterdam\n  latitude: 52.37\n  longitude: 4.89\n  elevation: 0\n  unit_system: metric\n  currency: EUR\n  country: NL\nhttp:\n  server_host: 127.0.0.1\n  server_port: {port}\nrecorder:\n  commit_interval: 1\nonboarding:\nauth:\nenergy:\nwebsocket_api:\napi:\n",
                port = self.port
            ),
        )
        .expect("configuration.yaml");
        let _ = std::fs::remove_file(self.dir.join("hass.pid"));
        let script = format!(
            "{hass} -c {dir} --skip-pip >>{dir}/hass.log 2>&1 & h=$!; echo $h >{dir}/hass.pid; while kill -0 {me} 2>/dev/null && kill -0 $h 2>/dev/null; do sleep 1; done; kill $h 2>/dev/null; wait $h",
            hass = self.hass.display(),
            dir = self.dir.display(),
            me = std::process::id()
        );
        let mut command = Command::new("sh");
        command
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((at, library)) = faketime {
            // `@` starts the clock there and lets it run; the time is read as local time, so
            // Core's process runs in UTC (its own time zone comes from configuration.yaml).
            // The monotonic clock is faked too: with FAKETIME_DONT_FAKE_MONOTONIC Python's
            // `time.sleep` fails with EINVAL.
            let at = at.to_offset(time::UtcOffset::UTC);
            let mut spec = format!(
                "@{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            );
            if let Some(rate) = self.rate {
                spec.push_str(&format!(" x{rate}"));
            }
            command
                .env("LD_PRELOAD", library)
                .env("FAKETIME", spec)
                .env("TZ", "UTC");
        }
        // The log runs on across starts: only what this start wrote counts.
        let (base, log) = (self.url(), self.dir.join("hass.log"));
        let logged = std::fs::metadata(&log).map_or(0, |m| m.len());
        self.watchdog = Some(command.spawn().expect("start hass"));
        let taken = format!("Failed to create HTTP server at port {}", self.port);
        let what = format!("Home Assistant Core {} to answer", self.version);
        off_runtime(|| {
            runtime().block_on(async {
                let http = http_client();
                eventually(what)
                    .within(CORE_START)
                    .every(Duration::from_millis(250))
                    .until(async || {
                        let this_start = std::fs::read(&log)
                            .map(|l| l.get(logged as usize..).unwrap_or_default().to_vec())
                            .unwrap_or_default();
                        if String::from_utf8_lossy(&this_start).contains(&taken) {
                            return Ok(false);
                        }
                        match http.get(format!("{base}api/onboarding")).send().await {
                            Ok(answer) if answer.status().is_success() => Ok(true),
                            Ok(answer) => Err(WithLog(answer.status().to_string(), &log)),
                            Err(e) => Err(WithLog(e.to_string(), &log)),
                        }
                    })
                    .await
            })
        })
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Core's config dir.
    pub fn config_dir(&self) -> &Path {
        &self.dir
    }

    /// What Core logged so far (`hass.log` in its config dir, across restarts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hass.log")).unwrap_or_default()
    }

    /// Stops Core with SIGTERM, as a user's restart does, so it writes its database.
    pub fn stop(&mut self) {
        let Some(mut watchdog) = self.watchdog.take() else {
            return;
        };
        let pid = std::fs::read_to_string(self.dir.join("hass.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        // The watchdog ends within a second of Core.
        let stopped = eventually(format!("Home Assistant Core {} to stop", self.version))
            .within(CORE_STOP)
            .every(Duration::from_millis(100));
        stopped.until_blocking(|| match watchdog.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err("still running"),
        });
    }

    /// Stops Core and starts it again on the same config dir (same owner, same token, a new
    /// port), with its clock started at `faketime` if given.
    pub fn restart(&mut self, faketime: Option<OffsetDateTime>) {
        self.stop();
        let faketime = faketime.map(|at| {
            let library = libfaketime().unwrap_or_else(|why| {
                panic!("Home Assistant Core {}: {}", self.version, why.reason)
            });
            (at, library)
        });
        self.launch(faketime);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Shared Cores live in statics and are never dropped: their watchdogs end them.
        self.stop();
    }
}

/// An error, and Core's log when it is shown.
struct WithLog<'a>(String, &'a Path);

impl std::fmt::Display for WithLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = std::fs::read_to_string(self.1).unwrap_or_default();
        write!(f, "{}; Core's log:\n{log}", self.0)
    }
}

/// Runs `work` on a thread of its own: the caller may be inside a runtime, which must neither
/// block on a runtime of Core's nor start one.
fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(done) => done,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn http_client() -> reqwest::Client {
    dsmr_bridge::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// Creates the owner through the onboarding API and a long-lived token for it.
async fn onboard(port: u16, dir: &Path) -> String {
    let base = format!("http://127.0.0.1:{port}");
    let http = http_client();
    let client_id = format!("{base}/");
    let answer = http
        .post(format!("{base}/api/onboarding/users"))
        .json(
            &json!({"client_id": client_id, "name": "Test", "username": "test",
                      "password": "test-password-1", "language": "en"}),
        )
        .send()
        .await
        .expect("onboarding");
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let user: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "onboarding answered {status}: {text}; Core's log:\n{}",
            std::fs::read_to_string(dir.join("hass.log")).unwrap_or_default()
        )
    });
    let code = user["auth_code"].as_str().expect("auth_code").to_owned();
    let tokens: Value = http
        .post(format!("{base}/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", &code)
                .append_pair("client_id", &client_id)
                .finish(),
        )
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    let access = tokens["access_token"].as_str().expect("access token");
    long_lived_token(port, access).await
}

type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message from Core's WebSocket API.
async fn receive(ws: &mut WebSocket) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).expect("JSON");
            }
            Some(Ok(_)) => {}
            other => panic!("Core's WebSocket closed: {other:?}"),
        }
    }
}

/// Asks Core's WebSocket API, logged in with `access`, for a long-lived token.
async fn long_lived_token(port: u16, access: &str) -> String {
    let url = format!("ws://127.0.0.1:{port}/api/websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("Core's WebSocket API");
    assert_eq!(receive(&mut ws).await["type"], "auth_required");
    for message in [
        json!({"type": "auth", "access_token": access}),
        json!({"id": 1, "type": "auth/long_lived_access_token",
               "client_name": "dsmr-bridge tests", "lifespan": TOKEN_DAYS}),
    ] {
        ws.send(Message::text(message.to_string()))
            .await
            .expect("send");
    }
    let mut before = Vec::new();
    loop {
        let answer = receive(&mut ws).await;
        if answer["type"] == "result" && answer["id"] == 1 {
            return answer["result"]
                .as_str()
                .unwrap_or_else(|| panic!("no token: {answer}; before it: {before:?}"))
                .to_owned();
        }
        before.push(answer);
    }
}

/// A WebSocket connection to a Core, logged in as its owner, for what the tests ask and set
/// (entity registry, Energy preferences, statistics as the dashboard reads them).
pub struct CoreSocket {
    ws: WebSocket,
    next_id: u64,
}

impl CoreSocket {
    /// Sends `command` and returns its `result`, or the error Core answered.
    pub async fn call(&mut self, mut command: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.ws
            .send(Message::text(command.to_string()))
            .await
            .expect("send");
        loop {
            let answer = receive(&mut self.ws).await;
            if answer["type"] == "result" && answer["id"] == id {
                return if answer["success"] == true {
                    Ok(answer["result"].clone())
                } else {
                    Err(answer["error"].clone())
                };
            }
        }
    }
}

impl Core {
    /// A WebSocket connection logged in with the owner's token.
    pub async fn socket(&self) -> CoreSocket {
        let url = format!("ws://127.0.0.1:{}/api/websocket", self.port);
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("Core's WebSocket API");
        assert_eq!(receive(&mut ws).await["type"], "auth_required");
        ws.send(Message::text(
            json!({"type": "auth", "access_token": self.token}).to_string(),
        ))
        .await
        .expect("send");
        assert_eq!(receive(&mut ws).await["type"], "auth_ok");
        CoreSocket { ws, next_id: 1 }
    }

    /// Sets up Core's MQTT integration on the broker at 127.0.0.1:`port`, through its config
    /// flow as a user does in Settings → Devices & services.
    pub async fn add_mqtt(&self, port: u16) {
        let http = http_client();
        let base = self.url();
        let flow: Value = http
            .post(format!("{base}api/config/config_entries/flow"))
            .bearer_auth(&self.token)
            .json(&json!({"handler": "mqtt", "show_advanced_options": false}))
            .send()
            .await
            .expect("MQTT config flow")
            .json()
            .await
            .expect("flow JSON");
        let id = flow["flow_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no MQTT flow: {flow}"));
        let done: Value = http
            .post(format!("{base}api/config/config_entries/flow/{id}"))
            .bearer_auth(&self.token)
            .json(&json!({"broker": "127.0.0.1", "port": port}))
            .send()
            .await
            .expect("MQTT broker step")
            .json()
            .await
            .expect("flow JSON");
        assert_eq!(
            done["type"],
            "create_entry",
            "MQTT set up: {done}; Core's log:\n{}",
            self.log()
        );
    }
}
