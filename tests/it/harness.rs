//! Real parts for the integration tests: a Mosquitto broker on a free port (restartable), the
//! simulated DSMR-reader, the bridge binary, and an MQTT client that reads what the broker holds.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::eventually::eventually;

#[path = "../support/mosquitto.rs"]
mod mosquitto;

use mosquitto::{Mosquitto, Setup};

pub fn free_port() -> u16 {
    mosquitto::free_port().expect("a free port")
}

/// Ends a child process the test started, if it still runs.
fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A Mosquitto process owned by one test.
pub struct Broker(Mosquitto);

impl std::ops::Deref for Broker {
    type Target = Mosquitto;
    fn deref(&self) -> &Mosquitto {
        &self.0
    }
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_with(false)
    }

    /// On a port chosen beforehand (the bridge was told it before the broker existed).
    pub fn start_on(port: u16) -> Broker {
        Broker(Mosquitto::start_on(port, Self::setup(false)).expect("start mosquitto"))
    }

    fn setup(persistence: bool) -> Setup {
        Setup {
            persistence,
            general: "autosave_interval 1\n".into(),
            ..Setup::default()
        }
    }

    /// With persistence the broker keeps retained messages across restarts, as Home
    /// Assistant's Mosquitto app does.
    pub fn start_with(persistence: bool) -> Broker {
        Broker(Mosquitto::start(Self::setup(persistence)).expect("start mosquitto"))
    }

    /// With `general` options in the broker's configuration, e.g. `max_inflight_messages 1`.
    pub fn start_configured(general: &str) -> Broker {
        let setup = Setup {
            general: general.to_owned(),
            ..Setup::default()
        };
        Broker(Mosquitto::start(setup).unwrap_or_else(|e| panic!("{e}")))
    }

    /// With listeners per test need besides the plain, anonymous `port` (for the test's own
    /// `Watcher`): `listeners` adds them with their own settings (per_listener_settings), e.g.
    /// TLS files or a password file, and the broker is up once `ports` are open too.
    pub fn start_with_listeners(listeners: &str, ports: &[u16]) -> Broker {
        let setup = Setup {
            listeners: listeners.to_owned(),
            listener_ports: ports.to_vec(),
            ..Setup::default()
        };
        Broker(Mosquitto::start(setup).unwrap_or_else(|e| panic!("{e}")))
    }

    /// SIGTERM, so that a persistent broker writes its store.
    pub fn stop(&mut self) {
        self.0.stop();
    }

    pub fn restart(&mut self) {
        self.0.restart().expect("restart mosquitto");
    }
}

/// One message as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: String,
    pub retained: bool,
}

/// An MQTT client of the test's own, recording everything on its subscriptions.
pub struct Watcher {
    pub client: AsyncClient,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    pub async fn connect(port: u16, filters: &[&str]) -> Watcher {
        let id = format!("test-watcher-{}", free_port());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        for filter in filters {
            client
                .subscribe(*filter, QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let again = client.clone();
        let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        let task = tokio::spawn(async move {
            let mut connects = 0;
            loop {
                match eventloop.poll().await {
                    // A restarted broker forgets subscriptions (clean session): subscribe again.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connects += 1;
                        if connects > 1 {
                            for filter in &filters {
                                let _ = again.try_subscribe(filter.as_str(), QoS::AtLeastOnce);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push(Seen {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retained: p.retain,
                    }),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Watcher { client, seen, task }
    }

    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    pub fn on(&self, topic: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.topic == topic)
            .collect()
    }

    /// Waits until `check` holds on what was seen; panics naming `what` if it never does.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&[Seen]) -> bool) {
        eventually(what)
            .until(async || {
                let seen = self.all();
                if check(&seen) {
                    Ok(())
                } else {
                    Err(SeenList(seen))
                }
            })
            .await;
    }
}

/// What a subscriber saw, one message a line, for a failed wait.
struct SeenList(Vec<Seen>);

impl std::fmt::Display for SeenList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.0 {
            writeln!(f, "{} = {}", s.topic, s.payload)?;
        }
        Ok(())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The retained messages the broker holds under `filter`, as a new subscriber receives them.
pub async fn retained(port: u16, filter: &str) -> BTreeMap<String, String> {
    // The broker sends a subscription's retained messages before it handles the subscriber's
    // next packet: a message the subscriber then sends itself, on a topic of its own, arrives
    // after the last of them.
    let end = format!("dsmr-bridge-tests/end-of-retained/{}", free_port());
    let watcher = Watcher::connect(port, &[filter, &end]).await;
    watcher
        .client
        .publish(&end, QoS::AtLeastOnce, false, "")
        .await
        .expect("publish the end marker");
    watcher
        .wait_for(&format!("the retained messages under {filter}"), |seen| {
            seen.iter().any(|s| s.topic == end)
        })
        .await;
    watcher
        .all()
        .into_iter()
        .filter(|s| s.retained)
        .map(|s| (s.topic, s.payload))
        .collect()
}

/// The bridge binary, started like a user would, with its output captured to a file.
pub struct Bridge {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
    pub health_file: PathBuf,
}

pub fn bridge_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsmr-bridge"))
}

impl Bridge {
    pub fn start(args: &[String]) -> Bridge {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[String], env: &[(&str, String)]) -> Bridge {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("bridge.log");
        let health_file = dir.path().join("health");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut command = bridge_command();
        // Inside Home Assistant the status page takes the ingress port on every address; tests
        // that play Home Assistant run side by side, so each gets a free port of its own.
        let plays_ha = env.iter().any(|(k, _)| *k == "SUPERVISOR_TOKEN");
        if plays_ha && !args.iter().any(|a| a == "--status-listen") {
            command.args(["--status-listen", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .env("RUST_LOG_STYLE", "never")
            .env_remove("RUST_LOG")
            .env_remove("SUPERVISOR_TOKEN")
            .env_remove("HASSIO_TOKEN")
            .env("DSMR_BRIDGE_HEALTH_FILE", &health_file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start dsmr-bridge");
        Bridge {
            child: Some(child),
            log,
            _dir: dir,
            health_file,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `dsmr-bridge healthcheck` against this bridge's health file.
    pub fn healthcheck(&self) -> (i32, String) {
        let output = bridge_command()
            .arg("healthcheck")
            .env("DSMR_BRIDGE_HEALTH_FILE", &self.health_file)
            .output()
            .expect("run healthcheck");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends the signal named `name` without its `SIG` (`"TERM"`, `"INT"`, `"HUP"`).
    pub fn signal(&self, name: &str) {
        use nix::sys::signal::{Signal, kill};

        let signal: Signal = format!("SIG{name}").parse().expect("a signal name");
        let pid = i32::try_from(self.pid()).expect("a process id");
        kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal the bridge");
    }

    /// Waits for the process to exit and returns its exit code (`None`: ended by a signal).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("running");
        let status = eventually("the bridge to exit").until_blocking(|| match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            _ => Err("still running"),
        });
        self.child = None;
        status.code()
    }

    /// Waits until the log holds `needle`.
    pub async fn wait_log(&self, needle: &str) {
        self.wait_log_count(needle, 1).await;
    }

    /// Waits until the log holds `needle` at least `count` times: the positive signal that
    /// the bridge got that far, before a test checks that something else did not happen.
    pub async fn wait_log_count(&self, needle: &str, count: usize) {
        let what = match count {
            1 => format!("the log line {needle:?}"),
            n => format!("{n} log lines {needle:?}"),
        };
        eventually(what)
            .until(async || {
                let log = self.log();
                if log.matches(needle).count() >= count {
                    Ok(())
                } else {
                    Err(format!("the log:\n{log}"))
                }
            })
            .await;
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        kill(&mut self.child);
        if std::thread::panicking() {
            let mut err = std::io::stderr();
            let _ = writeln!(err, "--- bridge log ---\n{}", self.log());
        }
    }
}

/// Flags for a bridge pointed at `dsmr` and the broker on `port`.
pub fn args(dsmr: &url::Url, port: u16, base: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--dsmr-reader-url".to_owned(),
        dsmr.to_string(),
        "--dsmr-reader-api-key".to_owned(),
        SIM_KEY.to_owned(),
        "--mqtt-host".to_owned(),
        "127.0.0.1".to_owned(),
        "--mqtt-port".to_owned(),
        port.to_string(),
        "--base-topic".to_owned(),
        base.to_owned(),
        "--poll-interval".to_owned(),
        "1".to_owned(),
        "--log-level".to_owned(),
        "debug".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Random-looking, as DSMR-reader's keys are: the bridge cuts any 8 characters of it out of its
/// log, and a run of digits would also match the fixture meter's equipment id.
pub const SIM_KEY: &str = "TESTKEY-Qx7vLr2wZk";

/// The simulator's default meter (three phases, gas, solar) with the tests' API key.
pub fn sim_options() -> dsmr_sim::SimOptions {
    dsmr_sim::SimOptions {
        api_key: SIM_KEY.to_owned(),
        ..dsmr_sim::SimOptions::default()
    }
}

/// Waits until the bridge has asked `sim` for the newest reading `n` more times: it polled
/// that often since the call, with whatever `sim` was set to answer by then. After the first
/// request that is counted, each poll before it has finished.
pub async fn polls(sim: &dsmr_sim::Simulator, n: u64) {
    const READING: &str = "/api/v2/datalogger/dsmrreading";
    let start = sim.requests(READING);
    eventually(format!("{n} polls"))
        .until(async || match sim.requests(READING) - start {
            asked if asked >= n => Ok(()),
            asked => Err(format!("{asked} polls")),
        })
        .await;
}

/// A simulator that serves the captured responses of a real DSMR-reader 5.11.
pub async fn fixture_sim() -> dsmr_sim::Simulator {
    let sim = dsmr_sim::Simulator::start(sim_options())
        .await
        .expect("simulator");
    for (path, file) in [
        (
            "/api/v2/datalogger/dsmrreading",
            "v2_datalogger_dsmrreading_latest.json",
        ),
        (
            "/api/v2/datalogger/meter-statistics",
            "v2_datalogger_meter-statistics.json",
        ),
        ("/api/v2/consumption/today", "v2_consumption_today.json"),
        (
            "/api/v2/consumption/quarter-hour-peak-electricity",
            "v2_consumption_quarter-hour-peak-electricity_latest.json",
        ),
        ("/api/v2/application/version", "v2_application_version.json"),
        (
            "/api/v2/application/monitoring",
            "v2_application_monitoring.json",
        ),
    ] {
        sim.override_endpoint(path, 200, "application/json", fixture(file));
    }
    sim
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

// ---- Security tests: certificates, a Mosquitto with TLS and passwords, HTTP stand-ins. ----

/// A PEM certificate and its private key.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA made for one test: its certificate as a PEM file, and what signs server certificates.
pub struct Ca {
    pub cert: PathBuf,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// Certificates made for one test (rcgen, P-256): CAs and the server certificates they sign,
/// written as PEM files for Mosquitto, the TLS proxy and the bridge's `*_ca_file` options.
pub struct Pki {
    dir: tempfile::TempDir,
}

/// Valid from an hour ago (no clock skew can make it "not yet valid") for two days.
fn valid_for_the_test(params: &mut rcgen::CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(2);
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed CA (basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign) in
    /// `{name}.pem`.
    pub fn ca(&self, name: &str) -> Ca {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};

        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        valid_for_the_test(&mut params);
        let key = rcgen::KeyPair::generate().expect("CA key");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let cert = self.path(&format!("{name}.pem"));
        std::fs::write(&cert, issuer.pem()).expect("write CA certificate");
        Ca { cert, issuer }
    }

    /// A server certificate signed by `ca` for `names` (IP addresses and DNS names, e.g.
    /// `["127.0.0.1", "localhost"]`), in `{name}.pem` and `{name}.key`.
    pub fn server(&self, ca: &Ca, name: &str, names: &[&str]) -> CertFiles {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};

        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("subject alternative names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        valid_for_the_test(&mut params);
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &ca.issuer)
            .expect("server certificate");
        let files = CertFiles {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }
}

/// Adds `user` with `password` to a Mosquitto password file (created when missing).
pub fn mosquitto_passwd(file: &Path, user: &str, password: &str) {
    let mut command = Command::new("mosquitto_passwd");
    if !file.exists() {
        command.arg("-c");
    }
    let status = command
        .arg("-b")
        .arg(file)
        .arg(user)
        .arg(password)
        .stdout(Stdio::null())
        .status()
        .expect("mosquitto_passwd (comes with mosquitto)");
    assert!(status.success(), "mosquitto_passwd failed");
}

/// An HTTP server that gives every request the same `reply` and records the requests (another
/// origin a redirect points at, the Supervisor's API). `server.received_requests()` lists them.
pub async fn http_stand_in(reply: wiremock::ResponseTemplate) -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(reply)
        .mount(&server)
        .await;
    server
}

/// A JSON answer, as DSMR-reader and the Supervisor give them.
pub fn json_reply(status: u16, body: impl Into<String>) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(status).set_body_raw(body.into(), "application/json")
}

/// The server's address as the bridge takes it: `http://127.0.0.1:PORT/`.
pub fn url_of(server: &wiremock::MockServer) -> url::Url {
    url::Url::parse(&server.uri()).expect("URL")
}

/// The requests `server` received so far.
pub async fn requests(server: &wiremock::MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

/// The value of header `name` in a recorded request, if it was sent as text.
pub fn header<'r>(request: &'r wiremock::Request, name: &str) -> Option<&'r str> {
    request.headers.get(name)?.to_str().ok()
}

/// A server whose answer never ends: 200 `application/json`, chunked (no Content-Length),
/// 64 KiB chunks of JSON whitespace after an opening `{`, until the client goes away or `limit`
/// bytes. Raw TCP on purpose: wiremock serves a body fixed in advance, while these tests need
/// one without an end, and the count of bytes the server got to write before the bridge hung up.
pub struct EndlessAnswer {
    pub addr: std::net::SocketAddr,
    /// Body bytes written per response.
    sent: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EndlessAnswer {
    pub async fn start(limit: u64) -> EndlessAnswer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let counts = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counts = counts.clone();
                tokio::spawn(async move {
                    // The request head; its content does not matter.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let start = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n{\r\n";
                    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                    let mut written = 0u64;
                    if stream.write_all(start.as_bytes()).await.is_ok() {
                        written = 1;
                        while written < limit && stream.write_all(chunk.as_bytes()).await.is_ok() {
                            written += 0x10000;
                        }
                    }
                    counts.lock().unwrap().push(written);
                    let _ = stream.shutdown().await;
                });
            }
        });
        EndlessAnswer { addr, sent, task }
    }

    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.addr)).expect("URL")
    }

    /// Body bytes written for each finished response.
    pub fn sent(&self) -> Vec<u64> {
        self.sent.lock().unwrap().clone()
    }
}

impl Drop for EndlessAnswer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TLS in front of a plain HTTP server (the simulator), like a reverse proxy with its own
/// certificate in front of DSMR-reader.
pub struct TlsProxy {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    pub async fn start(files: &CertFiles, target: std::net::SocketAddr) -> TlsProxy {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .expect("certificate file")
            .collect::<Result<_, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(&files.key).expect("key");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that rejects the certificate ends the handshake: nothing to do.
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                    }
                });
            }
        });
        TlsProxy { addr, task }
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("https://{}/", self.addr)).expect("URL")
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Peak resident memory of a process in KiB (`VmHWM`), on Linux.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
