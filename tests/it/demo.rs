//! `dsmr-bridge demo` as a newcomer runs it: only the options it applies, where the page and
//! the broker are at every log level, one short line per published message at `info`, none at
//! `warn`, and no error lines from its embedded broker.

use crate::harness::{Bridge, Seen, Watcher, bridge_command, free_port};

/// What the demo's broker must hold before the log is judged: the bridge's status, the meter
/// registers and a discovery config.
const EXPECTED: [&str; 4] = [
    "dsmr-bridge/status",
    "dsmr-bridge/reading/electricity_delivered_1",
    "dsmr-bridge/reading/electricity_currently_delivered",
    "dsmr-bridge/consumption/gas/delivered",
];

fn holds_all(seen: &[Seen], retained_only: bool) -> bool {
    let discovery = seen
        .iter()
        .any(|s| s.topic.starts_with("homeassistant/device/") && (s.retained || !retained_only));
    discovery
        && EXPECTED.iter().all(|t| {
            seen.iter()
                .any(|s| s.topic == *t && (s.retained || !retained_only))
        })
}

/// Starts the demo on a free port and waits until its broker holds the retained states: the
/// first subscriber may see them live, a second one then gets them as retained messages.
async fn demo_until_retained(extra: &[&str]) -> Bridge {
    let port = free_port();
    let mut args = vec![
        "demo".to_owned(),
        "--mqtt-port".to_owned(),
        port.to_string(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let demo = Bridge::start(&args);
    let filters = ["dsmr-bridge/#", "homeassistant/#"];
    let live = Watcher::connect(port, &filters).await;
    live.wait_for("the demo's first messages", |seen| holds_all(seen, false))
        .await;
    let late = Watcher::connect(port, &filters).await;
    late.wait_for("retained states", |seen| holds_all(seen, true))
        .await;
    demo
}

/// Options listed by `--help`, as `--name`.
fn listed_options(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("-h, ").unwrap_or(line);
            line.starts_with("--")
                .then(|| line.split([' ', '=', '<']).next().unwrap_or("").to_owned())
        })
        .collect()
}

#[test]
fn demo_help_lists_only_the_options_it_applies() {
    let output = bridge_command()
        .args(["demo", "--help"])
        .output()
        .expect("run demo --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        listed_options(&help),
        [
            "--mqtt-host",
            "--mqtt-port",
            "--mqtt-username",
            "--mqtt-password",
            "--base-topic",
            "--discovery-prefix",
            "--log-level",
            "--status-listen",
            "--meter",
            "--help",
        ],
        "{help}"
    );

    // The bridge's own options are still there without the demo.
    let output = bridge_command().arg("--help").output().expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--dsmr-reader-url",
        "--config",
        "--poll-interval",
        "--log-level",
    ] {
        assert!(listed_options(&help).iter().any(|o| o == option), "{help}");
    }
}

#[test]
fn demo_rejects_options_it_would_ignore() {
    let output = bridge_command()
        .args(["demo", "--dsmr-reader-url", "http://dsmr.local/"])
        .output()
        .expect("run demo");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--dsmr-reader-url"), "{stderr}");

    let output = bridge_command()
        .args(["demo", "--log-level", "loud"])
        .output()
        .expect("run demo");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("log_level:"), "{stderr}");
}

/// `--meter dutch-water` and `--meter belgian` show what those meters' telegrams add: a water
/// meter device, the capacity tariff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_meter_dutch_water_shows_the_water_meter() {
    demo_meter_publishes("dutch-water", "dsmr-bridge/telegram/mbus1/water").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_meter_belgian_shows_the_capacity_tariff() {
    demo_meter_publishes("belgian", "dsmr-bridge/telegram/capacity_tariff_basis").await;
}

async fn demo_meter_publishes(meter: &str, topic: &str) {
    let mut demo = demo_until_retained(&["--meter", meter]).await;
    demo.wait_log(&format!("published topic={topic}")).await;
    demo.signal("INT");
    assert_eq!(demo.wait_exit(), Some(0), "{}", demo.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_published_messages_and_no_broker_errors() {
    let mut demo = demo_until_retained(&[]).await;
    let log = demo.log();
    let page = log
        .split("Status page listening url=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no status page address in {log}"));
    dsmr_bridge::tls::install_crypto_provider();
    let status: serde_json::Value = reqwest::get(format!("{page}api/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["broker"]["connected"], true, "{status}");
    demo.signal("INT");
    assert_eq!(demo.wait_exit(), Some(0));
    let log = demo.log();
    assert!(
        log.contains("INFO published topic=dsmr-bridge/reading/electricity_delivered_1"),
        "{log}"
    );
    // What a newcomer reads: no DEBUG line, a discovery config as its start and its size.
    assert!(!log.contains("DEBUG"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("published topic=homeassistant/device/") && l.ends_with(" bytes)")),
        "{log}"
    );
    let longest = log.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest <= 240, "a line of {longest} characters in {log}");
    assert_banner(&log, page);
    // Through the readiness probe, two subscribers leaving and the shutdown.
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_at_log_level_warn_prints_no_info() {
    let mut demo = demo_until_retained(&["--log-level", "warn"]).await;
    demo.signal("INT");
    assert_eq!(demo.wait_exit(), Some(0));
    let log = demo.log();
    let page = banner_page(&log);
    assert_banner(&log, &page);
    assert!(!log.contains("INFO"), "{log}");
    assert!(!log.contains("published"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// The status page's address in the banner.
fn banner_page(log: &str) -> String {
    log.lines()
        .find_map(|l| l.trim_start().strip_prefix("Status page"))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no status page in the banner: {log}"))
}

/// The banner says once where the page and the broker are, and how to watch the messages.
fn assert_banner(log: &str, page: &str) {
    assert_eq!(banner_page(log), page, "{log}");
    assert_eq!(log.matches("dsmr-bridge demo: ").count(), 1, "{log}");
    let broker = log
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("MQTT broker"))
        .unwrap_or_else(|| panic!("no broker in the banner: {log}"));
    assert!(broker.trim().starts_with("127.0.0.1:"), "{broker}");
    assert!(log.contains("mosquitto_sub -h 127.0.0.1 -p "), "{log}");
}

#[test]
fn demo_reports_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let output = bridge_command()
        .args(["demo", "--mqtt-port", &port.to_string()])
        .env_remove("RUST_LOG")
        .output()
        .expect("run demo");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("--mqtt-port {port}")), "{stderr}");
}
