//! The bridge's main job, end to end.

use dsmr_sim::{SimOptions, Simulator};
use serde_json::Value;

use crate::harness::{
    Bridge, Broker, SIM_KEY, Watcher, args, bridge_command, fixture, fixture_sim, polls, retained,
    sim_options,
};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const ELECTRICITY: &str = "homeassistant/device/dsmrbridge_12345678901234567890123456789000/config";
const GAS: &str = "homeassistant/device/dsmrbridge_12345678901234567890123456789001/config";

/// The fixture meter appears as three devices with exact topics, units and classes, and its
/// values are retained under DSMR-reader's own topic names.
#[tokio::test]
async fn fixture_meter_is_retained_with_discovery() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "dsmr-bridge", &[]));
    let watcher = Watcher::connect(broker.port, &["homeassistant/#", "dsmr-bridge/#"]).await;
    let expect = [
        ("dsmr-bridge/status", "online"),
        ("dsmr-bridge/dsmr-reader/status", "online"),
        ("dsmr-bridge/reading/electricity_delivered_1", "37562.774"),
        ("dsmr-bridge/reading/electricity_delivered_2", "22537.665"),
        ("dsmr-bridge/reading/electricity_returned_1", "7512.555"),
        ("dsmr-bridge/reading/electricity_returned_2", "30050.219"),
        (
            "dsmr-bridge/reading/electricity_currently_delivered",
            "0.404",
        ),
        ("dsmr-bridge/reading/phase_voltage_l1", "233.6"),
        ("dsmr-bridge/reading/timestamp", "2026-11-26T14:02:14+01:00"),
        ("dsmr-bridge/consumption/gas/delivered", "11268.833"),
        ("dsmr-bridge/reading/extra_device_delivered", "11268.833"),
        ("dsmr-bridge/meter-stats/electricity_tariff", "1"),
        ("dsmr-bridge/meter-stats/dsmr_version", "50"),
        ("dsmr-bridge/day-consumption/electricity1_cost", "1.21"),
        ("dsmr-bridge/day-consumption/electricity_merged", "8.084"),
        (
            "dsmr-bridge/consumption/quarter-hour-peak-electricity/average_delivered",
            "0.577",
        ),
        ("dsmr-bridge/dsmr-reader/version", "5.11.0"),
    ];
    let reader = "homeassistant/device/dsmrbridge_dsmr-bridge_reader/config";
    // The registers come last: held back until the start's scan of what the broker retains
    // is over and a second reading agrees.
    watcher
        .wait_for("discovery and every state", |seen| {
            [ELECTRICITY, GAS, reader]
                .iter()
                .chain(expect.iter().map(|(topic, _)| topic))
                .all(|t| seen.iter().any(|s| s.topic == *t))
        })
        .await;

    let held = retained(broker.port, "#").await;
    for (topic, payload) in expect {
        assert_eq!(
            held.get(topic).map(String::as_str),
            Some(payload),
            "retained {topic}"
        );
    }

    let electricity = json(&held[ELECTRICITY]);
    assert_eq!(electricity["device"]["name"], "Electricity meter");
    assert_eq!(
        electricity["device"]["identifiers"][0],
        "dsmrbridge_12345678901234567890123456789000"
    );
    assert_eq!(electricity["origin"]["name"], "dsmr-bridge");
    assert_eq!(
        electricity["availability"],
        serde_json::json!([{"topic": "dsmr-bridge/status"}, {"topic": "dsmr-bridge/dsmr-reader/status"}])
    );
    assert_eq!(electricity["availability_mode"], "all");
    for register in [
        "electricity_delivered_1",
        "electricity_delivered_2",
        "electricity_returned_1",
        "electricity_returned_2",
    ] {
        let c = &electricity["components"][register];
        assert_eq!(c["platform"], "sensor");
        assert_eq!(c["unit_of_measurement"], "kWh");
        assert_eq!(c["device_class"], "energy");
        assert_eq!(c["state_class"], "total_increasing");
        assert_eq!(c["state_topic"], format!("dsmr-bridge/reading/{register}"));
        assert_eq!(c["default_entity_id"], format!("sensor.dsmr_{register}"));
    }
    let power = &electricity["components"]["electricity_currently_delivered"];
    assert_eq!(
        (
            power["unit_of_measurement"].as_str(),
            power["device_class"].as_str(),
            power["state_class"].as_str()
        ),
        (Some("kW"), Some("power"), Some("measurement"))
    );
    assert_eq!(
        electricity["components"]["phase_voltage_l3"]["enabled_by_default"],
        false
    );
    assert_eq!(
        electricity["components"]["electricity_tariff"]["device_class"],
        "enum"
    );

    let gas = json(&held[GAS]);
    assert_eq!(gas["device"]["name"], "Gas meter");
    let register = &gas["components"]["gas_delivered"];
    assert_eq!(register["unit_of_measurement"], "m³");
    assert_eq!(register["device_class"], "gas");
    assert_eq!(register["state_class"], "total_increasing");
    assert_eq!(
        register["state_topic"],
        "dsmr-bridge/consumption/gas/delivered"
    );

    let reader = json(&held[reader]);
    assert_eq!(reader["device"]["sw_version"], "5.11.0");
    assert_eq!(
        reader["components"]["reachable"]["platform"],
        "binary_sensor"
    );

    assert!(bridge.log().contains("Connected to the broker"));
    assert_eq!(bridge.healthcheck(), (0, "healthy\n".to_owned()));
}

/// While the broker is away the queue keeps only the newest value per topic; after the restart
/// each topic is delivered once, with the newest value.
#[tokio::test]
async fn broker_outage_delivers_only_the_newest_value_per_topic() {
    let mut broker = Broker::start();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "outage", &[]));
    bridge.wait_log("published").await;
    let topic = "outage/reading/electricity_delivered_1";
    let watcher = Watcher::connect(broker.port, &[topic]).await;
    watcher
        .wait_for("a first value", |seen| !seen.is_empty())
        .await;

    broker.stop();
    bridge.wait_log("Lost the broker connection").await;
    // Several polls with moving values happen meanwhile, the last ones with the meter
    // standing still; the second poll after it stopped shows the first is through.
    for value in ["37563.001", "37563.002"] {
        sim.set_register_override("electricity_delivered_1", Some(value.into()));
        polls(&sim, 1).await;
    }
    sim.set_register_override("electricity_delivered_1", Some("37563.003".into()));
    sim.pause_clock(true);
    polls(&sim, 2).await;

    broker.restart();
    let after = Watcher::connect(broker.port, &["outage/#"]).await;
    after
        .wait_for("the newest value after the restart", |seen| {
            seen.iter()
                .any(|s| s.topic == topic && s.payload == "37563.003")
        })
        .await;
    // One topic's messages are delivered in order, one in flight at a time: an older queued
    // value would have arrived before the newest. Every retained topic seen once more marks
    // the end of the republish.
    let held = retained(broker.port, "outage/#").await;
    after
        .wait_for("every retained topic again", |seen| {
            held.keys().all(|t| seen.iter().any(|s| &s.topic == t))
        })
        .await;
    let values: Vec<String> = after.on(topic).into_iter().map(|s| s.payload).collect();
    assert_eq!(
        values,
        vec!["37563.003".to_owned()],
        "older queued values must not be delivered"
    );
    // At most one message per topic reached the broker after the reconnect.
    let mut per_topic = std::collections::BTreeMap::<String, usize>::new();
    for s in after.all() {
        *per_topic.entry(s.topic).or_default() += 1;
    }
    assert!(per_topic.values().all(|&n| n == 1), "{per_topic:?}");
    assert_eq!(
        retained(broker.port, "outage/status")
            .await
            .get("outage/status")
            .map(String::as_str),
        Some("online")
    );
}

/// A register that reads 0 or drops is never published; the broker keeps the last good value.
#[tokio::test]
async fn zero_or_lower_register_is_not_published() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let topic = "guard/reading/electricity_delivered_1";
    let watcher = Watcher::connect(broker.port, &[topic]).await;
    let bridge = Bridge::start(&args(
        &sim.url(),
        broker.port,
        "guard",
        &["--cache-ttl", "0"],
    ));
    watcher
        .wait_for("the first value", |seen| !seen.is_empty())
        .await;

    let reading = fixture("v2_datalogger_dsmrreading_latest.json");
    for (bad, at, refused) in [
        ("0.000", "14:02:19", "Not published: meter register reads 0"),
        (
            "37000.000",
            "14:02:24",
            "Not published: meter register is lower",
        ),
    ] {
        let body = reading
            .replace("\"37562.774\"", &format!("\"{bad}\""))
            .replace(
                "2026-11-26T14:02:14+01:00",
                &format!("2026-11-26T{at}+01:00"),
            );
        sim.override_endpoint(
            "/api/v2/datalogger/dsmrreading",
            200,
            "application/json",
            body,
        );
        bridge.wait_log(refused).await;
    }
    assert!(
        watcher.all().iter().all(|s| s.payload == "37562.774"),
        "{:?}",
        watcher.all()
    );
    assert_eq!(
        retained(broker.port, topic)
            .await
            .get(topic)
            .map(String::as_str),
        Some("37562.774")
    );
    // Other values of the same readings still flow.
    let power = retained(broker.port, "guard/reading/electricity_currently_delivered").await;
    assert_eq!(power.len(), 1);
}

/// A single-phase meter without gas gets no L2/L3 entities and no Gas meter device.
#[tokio::test]
async fn single_phase_meter_without_gas_gets_no_l2_l3_or_gas() {
    let broker = Broker::start();
    let sim = Simulator::start(SimOptions {
        phases: 1,
        gas: false,
        ..sim_options()
    })
    .await
    .expect("simulator");
    let _bridge = Bridge::start(&args(&sim.url(), broker.port, "single", &[]));
    let watcher = Watcher::connect(broker.port, &["homeassistant/device/#", "single/#"]).await;
    watcher
        .wait_for("the electricity device", |seen| {
            seen.iter()
                .any(|s| s.topic.ends_with("/config") && s.payload.contains("Electricity meter"))
        })
        .await;
    // A gas or L2/L3 value would come with the same poll as these, before the day totals of
    // the first poll's slower endpoints are through.
    watcher
        .wait_for("the first poll's values", |seen| {
            [
                "single/reading/electricity_delivered_1",
                "single/day-consumption/electricity_merged",
                "single/status",
            ]
            .iter()
            .all(|t| seen.iter().any(|s| s.topic == *t))
                && seen.iter().any(|s| s.topic.ends_with("_reader/config"))
        })
        .await;
    let held = retained(broker.port, "#").await;
    let configs: Vec<&String> = held
        .keys()
        .filter(|t| t.starts_with("homeassistant/device/"))
        .collect();
    assert_eq!(
        configs.len(),
        2,
        "electricity and DSMR-reader only: {configs:?}"
    );
    for (topic, payload) in &held {
        assert!(
            !topic.ends_with("_l2") && !topic.ends_with("_l3"),
            "{topic}"
        );
        assert!(
            !topic.contains("/gas") && !topic.contains("extra_device"),
            "{topic}"
        );
        if topic.starts_with("homeassistant/") {
            let config = json(payload);
            assert_ne!(config["device"]["name"], "Gas meter");
            for key in config["components"].as_object().unwrap().keys() {
                assert!(!key.ends_with("_l2") && !key.ends_with("_l3"), "{key}");
            }
        }
    }
}

/// Home Assistant's birth message makes the bridge send discovery and state again.
#[tokio::test]
async fn birth_message_triggers_a_republish() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "birth", &[]));
    let watcher = Watcher::connect(
        broker.port,
        &[
            "homeassistant/device/#",
            "birth/reading/electricity_delivered_1",
        ],
    )
    .await;
    watcher
        .wait_for("discovery and state", |seen| {
            seen.iter().any(|s| s.topic == ELECTRICITY)
                && seen
                    .iter()
                    .any(|s| s.topic == "birth/reading/electricity_delivered_1")
        })
        .await;
    watcher.clear();
    watcher
        .client
        .publish(
            "homeassistant/status",
            rumqttc::QoS::AtLeastOnce,
            false,
            "online",
        )
        .await
        .unwrap();
    watcher
        .wait_for("configs and state again", |seen| {
            seen.iter().any(|s| s.topic == ELECTRICITY)
                && seen
                    .iter()
                    .any(|s| s.topic == "birth/reading/electricity_delivered_1")
        })
        .await;
    assert!(bridge.log().contains("Home Assistant came online"));
}

/// Invalid options stop the bridge before it does anything, naming the option.
#[test]
fn bad_options_exit_non_zero_naming_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--dsmr-reader-url",
                "dsmr.local",
                "--dsmr-reader-api-key",
                "k",
            ],
            "dsmr_reader_url: no scheme; did you mean http://dsmr.local/ ?",
        ),
        (&["--dsmr-reader-api-key", "k"], "dsmr_reader_url: missing"),
        (
            &["--dsmr-reader-url", "http://dsmr.local/"],
            "dsmr_reader_api_key: missing",
        ),
        (
            &[
                "--dsmr-reader-url",
                "http://x/",
                "--dsmr-reader-api-key",
                "k",
                "--poll-interval",
                "0",
            ],
            "poll_interval: 0 is out of range",
        ),
        (
            &[
                "--dsmr-reader-url",
                "http://x/",
                "--dsmr-reader-api-key",
                "k",
                "--mqtt-qos",
                "5",
            ],
            "mqtt_qos: 5 is out of range",
        ),
        (
            &[
                "--dsmr-reader-url",
                "http://x/",
                "--dsmr-reader-api-key",
                "k",
                "--base-topic",
                "a/+/b",
            ],
            "base_topic:",
        ),
        (
            &[
                "--dsmr-reader-url",
                "http://x/",
                "--dsmr-reader-api-key",
                "k",
                "--log-level",
                "chatty",
            ],
            "log_level:",
        ),
    ];
    for (flags, expected) in cases {
        let output = bridge_command()
            .args(*flags)
            .env_remove("DSMR_READER_API_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(
            stderr.lines().any(|l| l.starts_with(expected)),
            "{flags:?}: {stderr}"
        );
    }
    // A typed flag with a wrong value: clap names the flag.
    let output = bridge_command()
        .args(["--mqtt-port", "abc"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--mqtt-port"));
}

/// SIGTERM leaves `offline` retained on the status topic and exits 0.
#[tokio::test]
async fn sigterm_leaves_offline_retained() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let mut bridge = Bridge::start(&args(&sim.url(), broker.port, "term", &[]));
    let watcher = Watcher::connect(broker.port, &["term/status"]).await;
    watcher
        .wait_for("online", |seen| seen.iter().any(|s| s.payload == "online"))
        .await;
    bridge.signal("TERM");
    assert_eq!(bridge.wait_exit(), Some(0), "{}", bridge.log());
    assert_eq!(
        retained(broker.port, "term/status")
            .await
            .get("term/status")
            .map(String::as_str),
        Some("offline")
    );
    assert!(
        bridge.log().contains("published offline"),
        "{}",
        bridge.log()
    );
}

/// Entities and devices the bridge no longer produces are removed from Home Assistant, also
/// when they were created by an earlier run (retained configs are reconciled at startup).
#[tokio::test]
async fn leftovers_of_an_earlier_run_are_removed_at_startup() {
    let broker = Broker::start_with(true);
    let three_phase = Simulator::start(sim_options()).await.expect("simulator");
    let mut first = Bridge::start(&args(&three_phase.url(), broker.port, "reconcile", &[]));
    let watcher = Watcher::connect(broker.port, &["homeassistant/device/#"]).await;
    watcher
        .wait_for("the gas device", |seen| seen.iter().any(|s| s.topic == GAS))
        .await;
    first.signal("TERM");
    assert_eq!(first.wait_exit(), Some(0));

    // The same home after the gas meter was removed and with a single-phase connection.
    let single_phase = Simulator::start(SimOptions {
        phases: 1,
        gas: false,
        ..sim_options()
    })
    .await
    .expect("simulator");
    let _second = Bridge::start(&args(&single_phase.url(), broker.port, "reconcile", &[]));
    watcher
        .wait_for("the gas device removed", |seen| {
            seen.iter().any(|s| s.topic == GAS && s.payload.is_empty())
        })
        .await;
    watcher
        .wait_for("the electricity config without L2/L3", |seen| {
            seen.iter().any(|s| {
                s.topic == ELECTRICITY
                    && s.payload
                        .contains(r#""phase_voltage_l2":{"platform":"sensor"}"#)
            })
        })
        .await;
    let held = retained(broker.port, "homeassistant/#").await;
    assert!(
        !held.contains_key(GAS),
        "the gas config must be gone: {held:?}"
    );
    let electricity = json(&held[ELECTRICITY]);
    assert_eq!(
        electricity["components"]["phase_voltage_l2"],
        serde_json::json!({"platform": "sensor"})
    );
    assert_eq!(
        electricity["components"]["phase_voltage_l1"]["unit_of_measurement"],
        "V"
    );
}

/// A Supervisor stand-in whose `/services/mqtt` answers `status` with `body`.
async fn supervisor(status: u16, body: String) -> Simulator {
    let supervisor = Simulator::start(sim_options())
        .await
        .expect("supervisor stand-in");
    supervisor.override_endpoint("/services/mqtt", status, "application/json", body);
    supervisor
}

/// Starts the bridge as the Supervisor does: `options` written to an options.json (kept in
/// `dir`), `SUPERVISOR_TOKEN` set, the services API at `supervisor`.
fn start_supervised(
    dir: &tempfile::TempDir,
    options: Value,
    supervisor: &Simulator,
    token: &str,
) -> Bridge {
    let path = dir.path().join("options.json");
    std::fs::write(&path, options.to_string()).unwrap();
    Bridge::start_with_env(
        &["--options".to_owned(), path.display().to_string()],
        &[
            ("SUPERVISOR_TOKEN", token.to_owned()),
            ("DSMR_BRIDGE_SUPERVISOR_URL", supervisor.url().to_string()),
        ],
    )
}

/// A Supervisor token that can never be sent is a failed start, not a clean stop: the bridge
/// exits non-zero (so the Supervisor reports it), says why, and does not show the token.
#[tokio::test]
async fn an_unusable_supervisor_token_fails_the_start() {
    let sim = fixture_sim().await;
    let supervisor = supervisor(200, "{}".to_owned()).await;
    let data = tempfile::tempdir().unwrap();
    let options = serde_json::json!({
        "dsmr_reader_url": sim.url().to_string(),
        "dsmr_reader_api_key": SIM_KEY,
    });
    let mut bridge = start_supervised(&data, options, &supervisor, "secret-part\nrest");
    assert_eq!(bridge.wait_exit(), Some(1));
    let log = bridge.log();
    assert!(
        log.contains("SUPERVISOR_TOKEN is not a valid HTTP header value"),
        "{log}"
    );
    assert!(!log.contains("secret-part"), "{log}");
    assert!(
        supervisor.request_log().is_empty(),
        "nothing sent to the Supervisor"
    );
}

/// Started as the Supervisor starts the app: options from `/data/options.json` (here a
/// temporary file), `SUPERVISOR_TOKEN` set, no broker options. The broker comes from the
/// services API, which answers "Service not enabled" while the broker app starts.
#[tokio::test]
async fn broker_from_the_supervisor_services_api() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let supervisor = supervisor(
        400,
        r#"{"result": "error", "message": "Service not enabled", "data": {}}"#.to_owned(),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let options = serde_json::json!({
        "dsmr_reader_url": sim.url().to_string(),
        "dsmr_reader_api_key": SIM_KEY,
        "poll_interval": 1,
        "mqtt_qos": 1,
        "base_topic": "supervised",
        "discovery": true,
        "discovery_prefix": "homeassistant",
        "cache_ttl": 3600,
        "log_level": "debug"
    });
    let bridge = start_supervised(&data, options, &supervisor, "svtok-Hq27-secret");
    bridge
        .wait_log("install and start the Mosquitto broker app")
        .await;
    supervisor.override_endpoint(
        "/services/mqtt",
        200,
        "application/json",
        format!(
            r#"{{"result": "ok", "data": {{"host": "127.0.0.1", "port": {}, "ssl": false, "protocol": "3.1.1", "username": "addons", "password": "pw-from-supervisor", "addon": "core_mosquitto"}}}}"#,
            broker.port
        ),
    );
    let watcher = Watcher::connect(broker.port, &["supervised/status"]).await;
    watcher
        .wait_for("online via the Supervisor's broker", |seen| {
            seen.iter().any(|s| s.payload == "online")
        })
        .await;
    assert!(
        bridge
            .log()
            .contains("Using the broker app found through the Supervisor")
    );
    // log_level from options.json decides what the Log tab shows: debug lines appear.
    bridge.wait_log("DEBUG").await;
    assert!(!bridge.log().contains("svtok-Hq27-secret"));
    assert!(!bridge.log().contains("pw-from-supervisor"));
    // The "not enabled" answer was logged once, not once per retry.
    assert_eq!(
        bridge.log().matches("Service not enabled").count()
            + bridge
                .log()
                .matches("no MQTT broker app is running")
                .count(),
        1
    );
}

/// When DSMR-reader stops answering its entities turn unavailable (one log line for the
/// outage), and everything comes back by itself.
#[tokio::test]
async fn dsmr_reader_outage_makes_entities_unavailable_and_recovers() {
    let broker = Broker::start();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    let bridge = Bridge::start(&args(&sim.url(), broker.port, "avail", &[]));
    let watcher = Watcher::connect(broker.port, &["avail/dsmr-reader/status"]).await;
    watcher
        .wait_for("online", |seen| {
            seen.last().is_some_and(|s| s.payload == "online")
        })
        .await;
    sim.stop_listening().await;
    watcher
        .wait_for("offline", |seen| {
            seen.last().is_some_and(|s| s.payload == "offline")
        })
        .await;
    assert_eq!(
        bridge.log().matches("DSMR-reader poll failed").count(),
        1,
        "one line per outage"
    );
    sim.resume_listening().await.expect("listen again");
    watcher
        .wait_for("online again", |seen| {
            seen.last().is_some_and(|s| s.payload == "online")
        })
        .await;
    bridge.wait_log("DSMR-reader answers again").await;
}

/// Inside Home Assistant, broker options set by the user win over the Supervisor's broker:
/// the services API is not even asked.
#[tokio::test]
async fn explicit_broker_options_win_over_the_supervisor() {
    let broker = Broker::start();
    let sim = fixture_sim().await;
    let supervisor = supervisor(
        200,
        r#"{"result": "ok", "data": {"host": "127.0.0.1", "port": 9, "ssl": false, "username": "addons", "password": "x"}}"#.to_owned(),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let options = serde_json::json!({
        "dsmr_reader_url": sim.url().to_string(),
        "dsmr_reader_api_key": SIM_KEY,
        "mqtt_host": "127.0.0.1",
        "mqtt_port": broker.port,
        "base_topic": "explicit",
    });
    let _bridge = start_supervised(&data, options, &supervisor, "token");
    let watcher = Watcher::connect(broker.port, &["explicit/status"]).await;
    watcher
        .wait_for("online on the configured broker", |seen| {
            seen.iter().any(|s| s.payload == "online")
        })
        .await;
    assert_eq!(supervisor.requests("/services/mqtt"), 0);
}
