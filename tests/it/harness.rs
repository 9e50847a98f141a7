//! Real parts for the integration tests: a Mosquitto broker on a free port (restartable), the
//! simulated DSMR-reader, the bridge binary, and an MQTT client that reads what the broker holds.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A Mosquitto process owned by one test.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    persistence: bool,
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_with(false)
    }

    /// With persistence the broker keeps retained messages across restarts, as Home
    /// Assistant's Mosquitto app does.
    pub fn start_with(persistence: bool) -> Broker {
        assert!(
            Command::new("mosquitto")
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "the tests need Mosquitto (apt-get install mosquitto); .ci/run installs it"
        );
        let mut broker = Broker {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            persistence,
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\nlog_dest file {}\n",
            self.port,
            self.dir.path().join("mosquitto.log").display()
        );
        if self.persistence {
            text += &format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                self.dir.path().display()
            );
        } else {
            text += "persistence false\n";
        }
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_open(self.port) {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, so that a persistent broker writes its store.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

    /// Waits until `check` holds on what was seen, or panics with `what` after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.all()) {
                return;
            }
            if Instant::now() > deadline {
                let topics: Vec<String> = self
                    .all()
                    .iter()
                    .map(|s| format!("{} = {}", s.topic, s.payload))
                    .collect();
                panic!("timed out waiting for {what}; saw:\n{}", topics.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The retained messages the broker holds under `filter`, as a new subscriber receives them.
pub async fn retained(port: u16, filter: &str) -> BTreeMap<String, String> {
    let watcher = Watcher::connect(port, &[filter]).await;
    // Retained messages arrive right after SUBACK; wait until they stop coming.
    let mut last = usize::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = watcher.all().len();
        if n == last && n > 0 {
            break;
        }
        last = n;
    }
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

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for log line {needle:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

pub const SIM_KEY: &str = "TESTKEY0123456789";

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}
