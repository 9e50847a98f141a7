//! Fault tests: the bridge survives broker and DSMR-reader failures, never publishes a wrong
//! value, and afterwards the broker retains the newest value of every topic.

use std::collections::BTreeMap;
use std::time::Duration;

use dsmr_sim::{Fault, SimOptions, Simulator};

use crate::eventually::{PATIENCE, eventually};
use crate::harness::{Bridge, Broker, SIM_KEY, Watcher, args, polls, retained, sim_options};

/// The reading fields the simulator serves now, as DSMR-reader's API returns them.
async fn sim_values(sim: &Simulator) -> BTreeMap<String, String> {
    dsmr_bridge::tls::install_crypto_provider();
    let url = sim
        .url()
        .join("api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1")
        .unwrap();
    let page: serde_json::Value = reqwest::Client::new()
        .get(url)
        .header("Authorization", format!("Token {SIM_KEY}"))
        .send()
        .await
        .expect("simulator answers")
        .json()
        .await
        .expect("JSON");
    page["results"][0]
        .as_object()
        .expect("a reading")
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k.clone(), s.clone())),
            serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
            _ => None,
        })
        .collect()
}

/// Waits until the broker retains, for every reading topic, exactly what the (paused)
/// simulator serves.
async fn assert_broker_holds_newest(port: u16, base: &str, sim: &Simulator) {
    let want = sim_values(sim).await;
    eventually("the broker to hold the newest values")
        .until(async || {
            let held = retained(port, &format!("{base}/reading/#")).await;
            let stale: Vec<String> = [
                "electricity_delivered_1",
                "electricity_delivered_2",
                "electricity_currently_delivered",
                "phase_voltage_l1",
                "timestamp",
            ]
            .iter()
            .filter(|field| held.get(&format!("{base}/reading/{field}")) != want.get(**field))
            .map(|field| {
                format!(
                    "{field}: broker {:?}, meter {:?}",
                    held.get(&format!("{base}/reading/{field}")),
                    want.get(*field)
                )
            })
            .collect();
            if stale.is_empty() {
                Ok(())
            } else {
                Err(format!("{stale:?}"))
            }
        })
        .await;
}

async fn broker_restart(persistence: bool) {
    let base = if persistence { "restart-p" } else { "restart" };
    let mut broker = Broker::start_with(persistence);
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    let bridge = Bridge::start(&args(&sim.url(), broker.port, base, &[]));
    let status = format!("{base}/status");
    let watcher = Watcher::connect(broker.port, &[&status]).await;
    watcher
        .wait_for("online", |seen| seen.iter().any(|s| s.payload == "online"))
        .await;

    broker.stop();
    bridge.wait_log("Lost the broker connection").await;
    // The meter keeps moving for a few polls while the broker is away, then stands still for
    // a poll that is through (a second one started), so the queue holds its values.
    polls(&sim, 2).await;
    sim.pause_clock(true);
    polls(&sim, 2).await;
    broker.restart();
    bridge.wait_log("Connected to the broker again").await;

    assert_broker_holds_newest(broker.port, base, &sim).await;
    assert_eq!(
        retained(broker.port, &status)
            .await
            .get(&status)
            .map(String::as_str),
        Some("online")
    );
    eventually("the three discovery configs back")
        .until(
            async || match retained(broker.port, "homeassistant/device/+/config").await {
                configs if configs.len() == 3 => Ok(()),
                configs => Err(format!("{:?}", configs.keys())),
            },
        )
        .await;
}

/// Broker restarted without a retained store: the bridge reconnects and repairs everything.
#[tokio::test]
async fn broker_restart_without_persistence() {
    broker_restart(false).await;
}

/// Broker restarted with its retained store: stale retained values are overwritten.
#[tokio::test]
async fn broker_restart_with_persistence() {
    broker_restart(true).await;
}

/// No broker at startup: the bridge waits without a busy loop (the pauses between attempts
/// start at a second and grow; `src/retry.rs` tests their bounds), says so once, and
/// connects when the broker appears.
#[tokio::test]
async fn broker_unreachable_at_startup() {
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    let port = crate::harness::free_port();
    let bridge = Bridge::start(&args(&sim.url(), port, "late", &[]));
    let pause = "reconnecting to the broker after a pause delay_ms=";
    bridge.wait_log_count(pause, 2).await;
    let log = bridge.log();
    assert_eq!(
        log.matches("Cannot connect to the broker").count(),
        1,
        "logged once:\n{log}"
    );
    let pauses: Vec<u64> = log
        .lines()
        .filter_map(|l| {
            l.split_once(pause)?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        pauses[0] >= 1000 && pauses[1] > pauses[0],
        "pauses of {pauses:?} ms:\n{log}"
    );

    let _broker = Broker::start_on(port);
    let watcher = Watcher::connect(port, &["late/status"]).await;
    watcher
        .wait_for("online once the broker is up", |seen| {
            seen.iter().any(|s| s.payload == "online")
        })
        .await;
    assert!(bridge.log().contains("Connected to the broker"));
}

/// Each way DSMR-reader can fail: entities turn unavailable, one log line per outage, polling
/// goes on with backoff, and everything recovers by itself.
#[tokio::test]
async fn dsmr_reader_faults_mark_unavailable_and_recover() {
    let broker = Broker::start();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "faulty", &[]));
    let status = "faulty/dsmr-reader/status";
    let watcher = Watcher::connect(
        broker.port,
        &[status, "faulty/reading/electricity_delivered_1"],
    )
    .await;
    watcher
        .wait_for("online", |seen| {
            seen.iter()
                .any(|s| s.topic == status && s.payload == "online")
        })
        .await;

    let faults: Vec<(&str, Fault, &str)> = vec![
        ("500", Fault::Status(500), "DSMR-reader answered HTTP 500"),
        ("HTML", Fault::Html, "not its JSON"),
        ("truncated JSON", Fault::Truncated, "not its JSON"),
        ("garbage", Fault::Garbage, "not its JSON"),
        ("changed key", Fault::InvalidKey, "rejected the API key"),
        ("API disabled", Fault::ApiDisabled, "API is disabled"),
        ("no answer", Fault::Hang, "did not answer in time"),
    ];
    for (name, fault, message) in faults {
        let before = bridge.log();
        let lines_before = before.matches("DSMR-reader poll failed").count();
        let published_before = watcher.on("faulty/reading/electricity_delivered_1").len();
        sim.set_fault(Some(fault));
        watcher
            .wait_for(&format!("offline on {name}"), |seen| {
                seen.iter()
                    .rev()
                    .find(|s| s.topic == status)
                    .is_some_and(|s| s.payload == "offline")
            })
            .await;
        // A failed poll after the first (logged at debug as "still failing"; a fault that
        // needs the user turns offline at the first), and still one line for the outage.
        let still_failing = before.matches("DSMR-reader still failing").count();
        bridge
            .wait_log_count("DSMR-reader still failing", still_failing + 1)
            .await;
        let log = bridge.log();
        assert_eq!(
            log.matches("DSMR-reader poll failed").count(),
            lines_before + 1,
            "{name}: one line per outage"
        );
        assert!(
            log[before.len()..].contains(message),
            "{name}: expected {message:?} in:\n{}",
            &log[before.len()..]
        );
        // Nothing but availability changed on the broker meanwhile.
        assert_eq!(
            watcher.on("faulty/reading/electricity_delivered_1").len(),
            published_before,
            "{name}: no values from a failing DSMR-reader"
        );

        sim.set_fault(None);
        watcher
            .wait_for(&format!("online after {name}"), |seen| {
                seen.iter()
                    .rev()
                    .find(|s| s.topic == status)
                    .is_some_and(|s| s.payload == "online")
            })
            .await;
    }
    // Refused connections.
    sim.stop_listening().await;
    watcher
        .wait_for("offline when refused", |seen| {
            seen.iter()
                .rev()
                .find(|s| s.topic == status)
                .is_some_and(|s| s.payload == "offline")
        })
        .await;
    assert!(bridge.log().contains("cannot connect to DSMR-reader"));
    sim.resume_listening().await.unwrap();
    watcher
        .wait_for("online again", |seen| {
            seen.iter()
                .rev()
                .find(|s| s.topic == status)
                .is_some_and(|s| s.payload == "online")
        })
        .await;
    assert!(!bridge.log().contains("panicked"));
}

/// Values that would corrupt Home Assistant's statistics are never published: registers that
/// jump back, read 0, are null or jump absurdly high, and readings stamped in the past or far
/// in the future. A meter swap becomes a new device.
#[tokio::test]
async fn corrupt_values_are_never_published() {
    let broker = Broker::start();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    sim.pause_clock(true);
    let topic = "corrupt/reading/electricity_delivered_1";
    let watcher = Watcher::connect(
        broker.port,
        &[
            topic,
            "corrupt/reading/timestamp",
            "homeassistant/device/+/config",
        ],
    )
    .await;
    let bridge = Bridge::start(&args(
        &sim.url(),
        broker.port,
        "corrupt",
        &["--cache-ttl", "0"],
    ));
    watcher
        .wait_for("a first value", |seen| {
            seen.iter().any(|s| s.topic == topic)
        })
        .await;
    let good = sim_values(&sim).await["electricity_delivered_1"].clone();
    let good_value: f64 = good.parse().unwrap();

    let bad = [
        ("0.000".to_owned(), "reads 0"),
        (
            format!("{:.3}", good_value - 5.0),
            "is lower than the last value",
        ),
        (
            format!("{:.3}", good_value + 50_000.0),
            "rose more than any household",
        ),
    ];
    for (value, message) in &bad {
        sim.set_register_override("electricity_delivered_1", Some(value.clone()));
        bridge.wait_log(message).await;
    }
    // null: the last good value stays; nothing empty is published. The cache is off, so every
    // poll publishes the reading's timestamp: three more of those (the first may have been read
    // before the change) show that polls with the null were handled.
    let stamps = |seen: &[crate::harness::Seen]| {
        seen.iter()
            .filter(|s| s.topic == "corrupt/reading/timestamp")
            .count()
    };
    sim.set_register_override("electricity_delivered_1", None);
    let before = stamps(&watcher.all());
    watcher
        .wait_for("three polls with a null register", |seen| {
            stamps(seen) >= before + 3
        })
        .await;
    sim.clear_register_overrides();
    for seen in watcher.on(topic) {
        let v: f64 = seen
            .payload
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {:?}", seen.payload));
        assert!(
            v >= good_value && v < good_value + 10.0,
            "published a wrong register value {v}"
        );
    }

    // A reading from the past, then one far in the future: skipped, the clock stays sane.
    let stamp = watcher
        .on("corrupt/reading/timestamp")
        .last()
        .expect("a timestamp")
        .payload
        .clone();
    sim.set_reading_timestamp_offset(time::Duration::minutes(-30));
    bridge.wait_log("older than one already published").await;
    sim.set_reading_timestamp_offset(time::Duration::days(2));
    bridge.wait_log("in the future").await;
    // The clock is paused, so the only timestamp ever published is the good one.
    assert!(
        watcher
            .on("corrupt/reading/timestamp")
            .iter()
            .all(|s| s.payload == stamp),
        "a past or future timestamp was published"
    );
    sim.set_reading_timestamp_offset(time::Duration::ZERO);

    // Meter swap: a new equipment id, registers restarting low.
    sim.set_meter(
        "88888888888888888888888888888888",
        dsmr_sim::meter::Registers::NEW_METER,
    );
    sim.pause_clock(false);
    watcher
        .wait_for("a new electricity device", |seen| {
            seen.iter().any(|s| {
                s.topic == "homeassistant/device/dsmrbridge_88888888888888888888888888888888/config"
            })
        })
        .await;
    bridge.wait_log("Electricity meter identity changed").await;
    // The old meter's device is removed rather than fed the new meter's low registers.
    watcher
        .wait_for("the old device removed", |seen| {
            seen.iter().any(|s| {
                s.topic == "homeassistant/device/dsmrbridge_12345678901234567890123456789000/config"
                    && s.payload.is_empty()
            })
        })
        .await;
    watcher
        .wait_for("the new meter's low register", |seen| {
            seen.iter()
                .any(|s| s.topic == topic && s.payload.parse::<f64>().is_ok_and(|v| v < 1000.0))
        })
        .await;
    let held = retained(broker.port, topic).await;
    let now: f64 = held[topic].parse().unwrap();
    assert!(now < 1000.0, "the new meter's register is retained: {now}");
}

/// Home Assistant restarted and the broker's retained store wiped: the bridge republishes
/// everything, without waiting for the cache TTL.
#[tokio::test]
async fn ha_restart_with_wiped_broker_is_repaired() {
    let mut broker = Broker::start();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    sim.pause_clock(true);
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "wiped", &[]));
    // The broker acknowledged the configs and values: from here the TTL cache holds them back.
    bridge
        .wait_log_count("published topic=homeassistant/device/", 3)
        .await;
    bridge
        .wait_log("published topic=wiped/reading/electricity_delivered_1")
        .await;
    broker.restart();
    let ha = Watcher::connect(broker.port, &["homeassistant/device/#", "wiped/#"]).await;
    ha.client
        .publish(
            "homeassistant/status",
            rumqttc::QoS::AtLeastOnce,
            false,
            "online",
        )
        .await
        .unwrap();
    ha.wait_for("configs and states again", |seen| {
        seen.iter()
            .filter(|s| s.topic.starts_with("homeassistant/device/"))
            .count()
            >= 3
            && seen
                .iter()
                .any(|s| s.topic == "wiped/reading/electricity_delivered_1")
            && seen
                .iter()
                .any(|s| s.topic == "wiped/status" && s.payload == "online")
    })
    .await;
    assert_broker_holds_newest(broker.port, "wiped", &sim).await;
}

/// SIGTERM while the broker is away: the bridge exits promptly and cleanly.
#[tokio::test]
async fn sigterm_during_broker_outage_exits_promptly() {
    let mut broker = Broker::start();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    let mut bridge = Bridge::start(&args(&sim.url(), broker.port, "away", &[]));
    bridge.wait_log("Connected to the broker").await;
    broker.stop();
    bridge.wait_log("Lost the broker connection").await;
    let asked = std::time::Instant::now();
    bridge.signal("TERM");
    assert_eq!(bridge.wait_exit(), Some(0), "{}", bridge.log());
    // Not after a reconnect pause (1 s and more): at once. The pipeline's test of the same
    // shutdown (src/pipeline/tests.rs) shows no time passing on a paused clock.
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
    assert!(bridge.log().contains("last will"), "{}", bridge.log());
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Per topic, whether values ever went backwards on registers and timestamps.
#[derive(Default)]
struct OrderCheck {
    last: BTreeMap<String, String>,
    violations: Vec<String>,
    messages: u64,
    /// Day totals that started again from a lower value (at midnight).
    day_restarts: u64,
}

impl OrderCheck {
    fn observe(&mut self, topic: &str, payload: &str) {
        self.messages += 1;
        // Meter registers and timestamps only: day totals (`day-consumption/…`) rightly start
        // again from 0 at midnight.
        let ordered = topic.ends_with("/timestamp")
            || topic.contains("/reading/electricity_delivered_")
            || topic.contains("/reading/electricity_returned_")
            || topic.ends_with("/gas/delivered");
        if let Some(previous) = self.last.get(topic) {
            let lower = match (previous.parse::<f64>(), payload.parse::<f64>()) {
                (Ok(a), Ok(b)) => b < a,
                _ => payload < previous.as_str(),
            };
            if lower && ordered && self.violations.len() < 20 {
                self.violations
                    .push(format!("{topic}: {previous} then {payload}"));
            }
            if lower && topic.contains("/day-consumption/electricity") && !topic.ends_with("_cost")
            {
                self.day_restarts += 1;
            }
        }
        self.last.insert(topic.to_owned(), payload.to_owned());
    }
}

/// Soak: six simulated hours across midnight at 720 times real speed (polling every 5 simulated
/// seconds), with the broker restarted every simulated hour and DSMR-reader failing regularly.
/// Memory stays flat, no meter register goes backwards, day totals start again at midnight, and
/// every topic ends with the newest value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_six_simulated_hours_with_restarts_and_failures() {
    use dsmr_bridge::config::{Config, RawOptions};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    const SPEED: f64 = 720.0;
    const ALONE: &str = "DSMR_BRIDGE_SOAK_ALONE";
    if std::env::var_os(ALONE).is_none() {
        // The other tests of this binary run on threads of the same process, and what they
        // allocate shows in its RSS: the soak runs again in a process of its own, which is the
        // one whose memory it measures.
        let output = tokio::task::block_in_place(|| {
            std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--exact",
                    "faults::soak_six_simulated_hours_with_restarts_and_failures",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(ALONE, "1")
                .output()
                .expect("run the soak alone")
        });
        let report = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && report.contains("1 passed"),
            "{report}"
        );
        return;
    }
    if let Ok(path) = std::env::var("SOAK_LOG") {
        let file = std::fs::File::create(path).unwrap();
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_env_filter("debug")
            .try_init();
    }
    let scaled = |simulated: Duration| simulated.div_f64(SPEED);

    let mut broker = Broker::start();
    // Start three hours before a midnight at least four hours back: the six hours always cross
    // it (day totals start again from 0), and at 720 times real speed the meter never overtakes
    // the wall clock, or the bridge would rightly skip its readings as stamped in the future.
    let midnight =
        (SimOptions::default().start - time::Duration::hours(4)).replace_time(time::Time::MIDNIGHT);
    let start = midnight - time::Duration::hours(3);
    let sim = Simulator::start(SimOptions {
        speed: SPEED,
        start,
        ..sim_options()
    })
    .await
    .expect("simulator");
    let raw = RawOptions {
        dsmr_reader_url: Some(sim.url().to_string()),
        dsmr_reader_api_key: Some(SIM_KEY.into()),
        mqtt_host: Some("127.0.0.1".into()),
        mqtt_port: Some(broker.port),
        base_topic: Some("soak".into()),
        ..RawOptions::default()
    };
    let mut config = Config::try_from(raw).expect("config");
    config.dsmr.poll_interval = scaled(Duration::from_secs(5));
    config.cache_ttl = scaled(Duration::from_secs(3600));
    let cadence = dsmr_bridge::source::Cadence::new(Duration::from_secs(5)).sped_up(SPEED);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let broker_config = dsmr_bridge::broker::resolve(&config, None);
    let client = dsmr_bridge::source::DsmrClient::new(&config.dsmr).expect("client");
    let bridge = tokio::spawn(dsmr_bridge::run_with(
        config,
        broker_config,
        client,
        cadence,
        dsmr_bridge::status::StatusReporter::unobserved(),
        shutdown.clone(),
    ));

    // A subscriber that keeps only the last value per topic, so it does not grow itself.
    let check = std::sync::Arc::new(std::sync::Mutex::new(OrderCheck::default()));
    let mut options = MqttOptions::new("soak-watcher", "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(5));
    let (watcher, mut eventloop) = AsyncClient::new(options, 100);
    let observer = check.clone();
    let again = watcher.clone();
    let watch = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = again.try_subscribe("soak/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    observer
                        .lock()
                        .unwrap()
                        .observe(&p.topic, &String::from_utf8_lossy(&p.payload));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });

    let simulated_hours = 6;
    let hour = scaled(Duration::from_secs(3600));
    let mut rss_after_first_hour = 0;
    for h in 0..simulated_hours {
        // DSMR-reader fails for ten simulated minutes in the middle of every hour.
        tokio::time::sleep(hour / 3).await;
        sim.set_fault(Some(if h % 2 == 0 {
            Fault::Status(502)
        } else {
            Fault::Garbage
        }));
        tokio::time::sleep(hour / 6).await;
        sim.set_fault(None);
        tokio::time::sleep(hour / 2).await;
        // The broker restarts every simulated hour (a Home Assistant update, say).
        tokio::task::block_in_place(|| broker.restart());
        if h == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss_after_first_hour = rss_kib();
        }
    }
    sim.pause_clock(true);
    assert_broker_holds_newest(broker.port, "soak", &sim).await;
    let rss_at_end = rss_kib();

    shutdown.cancel();
    let stats = bridge.await.expect("bridge task").expect("bridge result");
    watch.abort();
    let check = check.lock().unwrap();
    assert!(
        check.violations.is_empty(),
        "values went backwards: {:?}",
        check.violations
    );
    assert!(
        check.day_restarts > 0,
        "the soak crossed midnight, but no day total started again from 0"
    );
    assert!(
        check.messages > 1000,
        "the soak published too little to mean anything: {}",
        check.messages
    );
    assert!(
        stats.published > 1000 && stats.suppressed_by_cache > 0,
        "{stats:?}"
    );
    // Memory flat: this whole process (simulator, broker client, bridge) grows by less than
    // 8 MiB over five more simulated hours.
    assert!(
        rss_at_end < rss_after_first_hour + 8 * 1024,
        "RSS grew from {rss_after_first_hour} KiB to {rss_at_end} KiB"
    );
}

/// Accepts connections and never answers, like DSMR-reader's web server while the app behind it
/// hangs. Connections it accepted stay open (and their requests unanswered) after it stops
/// listening, until it is dropped.
struct Unanswering {
    accept: tokio::task::JoinHandle<()>,
    held: std::sync::Arc<std::sync::Mutex<Vec<tokio::net::TcpStream>>>,
}

impl Unanswering {
    async fn listen(addr: std::net::SocketAddr) -> Unanswering {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the simulator's port");
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = held.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                keep.lock().unwrap().push(stream);
            }
        });
        Unanswering { accept, held }
    }

    /// Frees the port; the requests in flight keep hanging. Returns how many connections it
    /// took.
    async fn stop_listening(&mut self) -> usize {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        self.held.lock().unwrap().len()
    }
}

/// DSMR-reader restarts on every update, and the bridge binary comes through both ways that
/// looks from outside: its entities turn unavailable, and once DSMR-reader answers again they
/// are available with new readings, with connections refused, and with connections accepted and
/// never answered, where the request in flight when DSMR-reader comes back hangs until its
/// timeout. One log line as each outage starts, one as it ends. How soon it is back (within
/// two poll intervals, whatever the outage's length) is shown on the paused clock by the
/// source's own tests (`src/source/mod.rs`), where a loaded machine cannot blur it.
#[tokio::test]
async fn dsmr_reader_outages_end_with_the_bridge_back_and_one_line_each() {
    let broker = Broker::start();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "back", &[]));
    let status = "back/dsmr-reader/status";
    let stamp = "back/reading/timestamp";
    let watcher = Watcher::connect(broker.port, &[status, stamp]).await;
    let availability_is = |payload: &'static str| {
        move |seen: &[crate::harness::Seen]| {
            seen.iter()
                .rev()
                .find(|s| s.topic == status)
                .is_some_and(|s| s.payload == payload)
        }
    };
    watcher.wait_for("online", availability_is("online")).await;

    for unanswered in [false, true] {
        let how = if unanswered { "unanswered" } else { "refused" };
        sim.stop_listening().await;
        let mut silent = if unanswered {
            Some(Unanswering::listen(sim.addr()).await)
        } else {
            None
        };
        watcher
            .wait_for(&format!("offline ({how})"), availability_is("offline"))
            .await;
        let stamps = watcher.on(stamp).len();

        if let Some(silent) = &mut silent {
            assert!(
                silent.stop_listening().await > 0,
                "the bridge never connected"
            );
        }
        sim.resume_listening().await.expect("listen again");
        watcher
            .wait_for(&format!("online and a new reading ({how})"), |seen| {
                availability_is("online")(seen)
                    && seen.iter().filter(|s| s.topic == stamp).count() > stamps
            })
            .await;
        drop(silent);
    }
    let log = bridge.log();
    for (line, count) in [
        ("DSMR-reader poll failed", 2),
        ("DSMR-reader unreachable", 2),
        ("DSMR-reader answers again", 2),
    ] {
        assert_eq!(log.matches(line).count(), count, "{line:?} in:\n{log}");
    }
    assert!(log.contains("cannot connect to DSMR-reader"), "{log}");
    assert!(log.contains("DSMR-reader did not answer in time"), "{log}");
}

/// The pipeline's request for meter statistics is served at once, before the next reading; a
/// second request within the minute adds no request (meter statistics follow their cadence).
/// On the paused clock: "at once" is no time passing, however busy the machine is.
#[tokio::test(start_paused = true)]
async fn meter_statistics_requested_by_the_pipeline_come_at_once() {
    use dsmr_bridge::source::{Cadence, DsmrClient, SourceEvent, SourceRequest};

    dsmr_bridge::tls::install_crypto_provider();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    let interval = Duration::from_secs(5);
    let config = dsmr_bridge::config::DsmrConfig {
        url: sim.url(),
        api_key: SIM_KEY.into(),
        ca_pem: None,
        poll_interval: interval,
    };
    let client = DsmrClient::new(&config).expect("client");
    let (events_tx, mut events) = tokio::sync::mpsc::channel(8);
    let (requests, requests_rx) = tokio::sync::mpsc::channel(4);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let source = tokio::spawn(dsmr_bridge::source::run(
        client,
        Cadence::new(interval),
        events_tx,
        requests_rx,
        shutdown.clone(),
    ));
    let mut next_poll = async || loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await {
            Ok(Some(SourceEvent::Poll(snapshot))) => return snapshot,
            Ok(Some(_)) => continue,
            other => panic!("no poll: {other:?}"),
        }
    };
    let stats = "/api/v2/datalogger/meter-statistics";
    let first = next_poll().await;
    assert!(first.meter_stats.is_some() && first.reading.is_some());
    assert_eq!(sim.requests(stats), 1);

    let asked = tokio::time::Instant::now();
    requests.send(SourceRequest::MeterStatistics).await.unwrap();
    let answer = next_poll().await;
    assert!(
        answer.meter_stats.is_some() && answer.reading.is_none(),
        "{answer:?}"
    );
    assert!(asked.elapsed() < interval / 2, "{:?}", asked.elapsed());
    assert_eq!(sim.requests(stats), 2);

    requests.send(SourceRequest::MeterStatistics).await.unwrap();
    // The next regular poll is the positive signal that the second request was taken.
    let regular = next_poll().await;
    assert!(
        regular.reading.is_some() && regular.meter_stats.is_none(),
        "{regular:?}"
    );
    assert_eq!(sim.requests(stats), 2);
    shutdown.cancel();
    source.await.unwrap();
}
