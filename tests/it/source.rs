//! Source tests: how the bridge asks DSMR-reader across clock changes, around endpoints that
//! fail on their own, and when DSMR-reader hangs at shutdown. Real parts throughout: the
//! bridge binary, the simulated DSMR-reader over HTTP, and Mosquitto.

use std::time::Duration;

use dsmr_sim::{SimOptions, Simulator, TimeZone};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{OffsetDateTime, UtcOffset};

use crate::eventually::{PATIENCE, eventually};
use crate::harness::{Bridge, Broker, Watcher, args, retained, sim_options};

/// The reading timestamp the broker retains for `base`, if any.
async fn retained_timestamp(port: u16, base: &str) -> Option<OffsetDateTime> {
    let topic = format!("{base}/reading/timestamp");
    let held = retained(port, &topic).await;
    held.get(&topic)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

/// Runs a bridge against a DSMR-reader in `zone` whose meter clock passes a clock change at
/// `change` (UTC), sped up 60 times (the bridge's 1 s polls a simulated minute apart: two
/// before the change, five after), and waits until the broker retains a reading from five
/// minutes after the change: polling went on across it.
async fn polls_across(zone: TimeZone, change: OffsetDateTime, base: &str) {
    let broker = Broker::start();
    let sim = Simulator::start(SimOptions {
        start: change - time::Duration::minutes(2),
        speed: 60.0,
        zone: Some(zone),
        ..sim_options()
    })
    .await
    .expect("simulator");
    let bridge = Bridge::start(&args(&sim.url(), broker.port, base, &[]));
    let after = change + time::Duration::minutes(5);
    eventually(format!("a reading from {after} or later on the broker"))
        .until(async || match retained_timestamp(broker.port, base).await {
            Some(held) if held >= after => Ok(()),
            held => Err(format!(
                "the broker's newest reading is {held:?}; the requests were:\n{}",
                sim.request_log().join("\n")
            )),
        })
        .await;
    let log = bridge.log();
    assert!(
        !log.contains("DSMR-reader poll failed"),
        "every poll answered across the change:\n{log}"
    );
}

/// The autumn change in Europe/Amsterdam: 02:00–03:00 local happens twice, and a naive
/// filter time in it is refused by DSMR-reader.
#[tokio::test]
async fn polling_goes_on_across_the_autumn_clock_change() {
    polls_across(
        TimeZone::europe_amsterdam(),
        datetime!(2026-10-25 01:00:00 UTC),
        "dst-autumn",
    )
    .await;
}

/// The spring change in Europe/Amsterdam: 02:00–03:00 local does not exist.
#[tokio::test]
async fn polling_goes_on_across_the_spring_clock_change() {
    polls_across(
        TimeZone::europe_amsterdam(),
        datetime!(2026-03-29 01:00:00 UTC),
        "dst-spring",
    )
    .await;
}

/// A DSMR-reader set to another zone (Europe/London: 01:00–02:00 local repeats).
#[tokio::test]
async fn polling_goes_on_across_a_clock_change_in_another_zone() {
    polls_across(
        TimeZone::eu("Europe/London", UtcOffset::UTC),
        datetime!(2026-10-25 01:00:00 UTC),
        "dst-london",
    )
    .await;
}

/// Django's plain 404 page, as DSMR-reader 4.x answers for the quarter-hour peak it does not
/// have.
const NOT_FOUND_PAGE: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n";

/// A side endpoint that fails affects only its own entities: with the quarter-hour peak
/// absent (404, DSMR-reader 4.x) and today's totals failing (500), DSMR-reader stays
/// available, the reading arrives at every poll, the peak is never announced, and each
/// failure is logged once.
#[tokio::test]
async fn a_failing_side_endpoint_stops_only_its_own_entities() {
    let broker = Broker::start();
    let sim = Simulator::start(sim_options()).await.expect("simulator");
    sim.override_endpoint(
        "/api/v2/consumption/quarter-hour-peak-electricity",
        404,
        "text/html",
        NOT_FOUND_PAGE.to_owned(),
    );
    sim.override_endpoint(
        "/api/v2/consumption/today",
        500,
        "text/html",
        "<h1>Server Error (500)</h1>".to_owned(),
    );
    let base = "side";
    let status = format!("{base}/dsmr-reader/status");
    let stamp = format!("{base}/reading/timestamp");
    let watcher = Watcher::connect(broker.port, &[&status, &stamp]).await;
    let bridge = Bridge::start(&args(&sim.url(), broker.port, base, &[]));

    // Ten readings in a row, one per poll (1 s): the reading keeps its cadence.
    watcher
        .wait_for("ten readings", |seen| {
            seen.iter().filter(|s| s.topic == stamp).count() >= 10
        })
        .await;
    let stamps: Vec<OffsetDateTime> = watcher
        .on(&stamp)
        .iter()
        .filter_map(|s| OffsetDateTime::parse(&s.payload, &Rfc3339).ok())
        .collect();
    let widest = stamps
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("readings");
    assert!(
        widest <= time::Duration::seconds(3),
        "readings {widest} apart at a 1 s poll interval: {stamps:?}"
    );
    let availability: Vec<String> = watcher.on(&status).into_iter().map(|s| s.payload).collect();
    assert!(
        availability.iter().all(|p| p == "online") && !availability.is_empty(),
        "DSMR-reader's availability went {availability:?}"
    );

    let configs = retained(broker.port, "homeassistant/device/+/config").await;
    let all: String = configs.values().cloned().collect();
    assert!(!configs.is_empty());
    assert!(
        !all.contains("quarter_hour_peak"),
        "the absent peak is not announced: {all}"
    );
    let log = bridge.log();
    assert!(!log.contains("DSMR-reader poll failed"), "{log}");
    assert_eq!(
        log.matches("DSMR-reader does not have this endpoint")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("endpoint=consumption/quarter-hour-peak-electricity"),
        "{log}"
    );
    assert_eq!(
        log.matches("DSMR-reader endpoint failed").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("endpoint=consumption/today") && log.contains("DSMR-reader answered HTTP 500"),
        "{log}"
    );
}

/// SIGTERM while DSMR-reader has a request hanging (it accepts and never answers; the request
/// would wait its full 10 s timeout at this poll interval): the bridge does not wait for it.
/// It publishes offline, logs that it stopped and exits 0, well within the 5 s given here.
#[tokio::test]
async fn sigterm_does_not_wait_for_a_hung_dsmr_reader() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(8);
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = accepted_tx.try_send(());
        }
    });
    let broker = Broker::start();
    let base = "hung";
    let status = format!("{base}/status");
    let watcher = Watcher::connect(broker.port, &[&status]).await;
    let mut flags = args(&url, broker.port, base, &[]);
    let interval = flags.iter().position(|a| a == "--poll-interval").unwrap() + 1;
    flags[interval] = "10".to_owned();
    let mut bridge = Bridge::start(&flags);
    bridge.wait_log("Connected to the broker").await;
    tokio::time::timeout(PATIENCE, accepted.recv())
        .await
        .expect("the bridge connects to DSMR-reader");
    watcher
        .wait_for("online", |seen| seen.iter().any(|s| s.payload == "online"))
        .await;

    let asked = std::time::Instant::now();
    bridge.signal("TERM");
    let code = bridge.wait_exit();
    let took = asked.elapsed();
    let log = bridge.log();
    assert_eq!(code, Some(0), "exit cleanly:\n{log}");
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    assert!(log.contains("Stopping; published offline"), "{log}");
    watcher
        .wait_for("offline", |seen| {
            seen.last().is_some_and(|s| s.payload == "offline")
        })
        .await;
    hold.abort();
}

/// User info in `dsmr_reader_url` and an API key that DSMR-reader (or a proxy in front of it)
/// echoes in a 403 body never reach the log, at trace level for every crate; Debug output of
/// the client hides the URL's password too.
#[tokio::test]
async fn url_credentials_and_an_echoed_key_are_never_logged() {
    const URL_PASSWORD: &str = "URLSECRETpw4711";
    const KEY: &str = "ECHOEDkey0123456789";
    let broker = Broker::start();
    let sim = Simulator::start(SimOptions {
        api_key: KEY.to_owned(),
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    sim.override_endpoint(
        "/api/v2/application/version",
        403,
        "application/json",
        format!(r#"{{"detail": "Invalid token {KEY} for this view"}}"#),
    );
    let mut url = sim.url();
    url.set_username("bridgeuser").unwrap();
    url.set_password(Some(URL_PASSWORD)).unwrap();
    let mut flags = args(&url, broker.port, "creds", &[]);
    let key_at = flags
        .iter()
        .position(|a| a == crate::harness::SIM_KEY)
        .unwrap();
    flags[key_at] = KEY.to_owned();
    let level = flags.iter().position(|a| a == "--log-level").unwrap() + 1;
    flags[level] = "trace".to_owned();
    let mut bridge = Bridge::start_with_env(&flags, &[("RUST_LOG", "trace".into())]);
    bridge.wait_log("Starting dsmr-bridge").await;
    bridge.wait_log("refused access (403").await;
    bridge
        .wait_log("published topic=creds/reading/timestamp")
        .await;
    bridge.signal("TERM");
    bridge.wait_exit();
    let log = bridge.log();
    assert!(log.contains(" TRACE "), "trace output to search:\n{log}");
    for secret in [URL_PASSWORD, KEY] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }

    let config = dsmr_bridge::config::DsmrConfig {
        url,
        api_key: KEY.into(),
        ca_pem: None,
        poll_interval: Duration::from_secs(1),
    };
    let client = dsmr_bridge::source::DsmrClient::new(&config).expect("client");
    let shown = format!("{client:?} {client:#?} {config:?} {config:#?}");
    assert!(!shown.contains(URL_PASSWORD), "{shown}");
}

/// Answers the reading with 503 and `Retry-After` the first time, then with the fixture, and
/// records when each reading request arrived.
struct BusyOnce {
    retry_after: &'static str,
    arrived: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl wiremock::Respond for BusyOnce {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let mut arrived = self.arrived.lock().unwrap();
        arrived.push(std::time::Instant::now());
        if arrived.len() == 1 {
            wiremock::ResponseTemplate::new(503).insert_header("Retry-After", self.retry_after)
        } else {
            crate::harness::json_reply(
                200,
                crate::harness::fixture("v2_datalogger_dsmrreading_latest.json"),
            )
        }
    }
}

/// A 503 with `Retry-After: 3` on the reading: the next request waits those 3 s instead of
/// the 1 s poll interval (told by the requests' arrival times: the lower bound cannot flake).
#[tokio::test]
async fn retry_after_on_503_is_honoured() {
    use dsmr_bridge::source::{Cadence, DsmrClient, SourceEvent};
    use wiremock::matchers::{any, path};

    dsmr_bridge::tls::install_crypto_provider();
    let server = wiremock::MockServer::start().await;
    let arrived = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    wiremock::Mock::given(path("/api/v2/datalogger/dsmrreading"))
        .respond_with(BusyOnce {
            retry_after: "3",
            arrived: arrived.clone(),
        })
        .mount(&server)
        .await;
    for (endpoint, file) in [
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
        wiremock::Mock::given(path(endpoint))
            .respond_with(crate::harness::json_reply(
                200,
                crate::harness::fixture(file),
            ))
            .mount(&server)
            .await;
    }
    wiremock::Mock::given(any())
        .respond_with(wiremock::ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let interval = Duration::from_secs(1);
    let client = DsmrClient::new(&dsmr_bridge::config::DsmrConfig {
        url: crate::harness::url_of(&server),
        api_key: "key".into(),
        ca_pem: None,
        poll_interval: interval,
    })
    .expect("client");
    let (events_tx, mut events) = tokio::sync::mpsc::channel(8);
    let (_requests, requests_rx) = tokio::sync::mpsc::channel(1);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let source = tokio::spawn(dsmr_bridge::source::run(
        client,
        Cadence::new(interval),
        events_tx,
        requests_rx,
        shutdown.clone(),
    ));
    // The positive signal: a poll with a reading arrives after the 503.
    loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await {
            Ok(Some(SourceEvent::Poll(snapshot))) if snapshot.reading.is_some() => break,
            Ok(Some(_)) => {}
            other => panic!("no reading: {other:?}"),
        }
    }
    shutdown.cancel();
    source.await.unwrap();
    let arrived = arrived.lock().unwrap().clone();
    assert!(arrived.len() >= 2, "{arrived:?}");
    let waited = arrived[1] - arrived[0];
    assert!(
        waited >= Duration::from_secs(3),
        "asked again after {waited:?}, not after the 3 s DSMR-reader asked for"
    );
}

/// A self-signed certificate made the common way (`openssl req -x509` marks it CA:TRUE) and
/// given as `dsmr_reader_ca_file` is the certificate DSMR-reader's proxy serves: the bridge
/// trusts exactly it and reads values over https.
#[tokio::test]
async fn a_self_signed_ca_certificate_given_as_the_ca_file_is_trusted() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa};

    let dir = tempfile::tempdir().expect("temp dir");
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "dsmr.local");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(2);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let files = crate::harness::CertFiles {
        cert: dir.path().join("dsmr.pem"),
        key: dir.path().join("dsmr.key"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();

    let sim = crate::harness::fixture_sim().await;
    let proxy = crate::harness::TlsProxy::start(&files, sim.addr()).await;
    let broker = Broker::start();
    let register = "selfsigned/reading/electricity_delivered_1";
    let watcher = Watcher::connect(broker.port, &[register]).await;
    let ca_file = files.cert.to_str().unwrap().to_owned();
    let bridge = Bridge::start(&args(
        &proxy.url(),
        broker.port,
        "selfsigned",
        &["--dsmr-reader-ca-file", &ca_file],
    ));
    watcher
        .wait_for("a value read over https", |seen| {
            seen.iter().any(|s| s.payload == "37562.774")
        })
        .await;
    assert!(
        !bridge.log().contains("DSMR-reader poll failed"),
        "{}",
        bridge.log()
    );
}

/// The retry waits with jitter (the broker's reconnects, the Supervisor) differ between
/// processes: backon seeds its jitter from the OS only with its `std` feature, and used one
/// fixed seed without it, so every bridge waited 1480, 3896, 6115 ms alike. Two backoffs built
/// the same way draw different jitter here.
#[test]
fn retry_jitter_is_seeded_per_backoff() {
    use backon::{BackoffBuilder, ExponentialBuilder};

    let draws = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build()
            .take(8)
            .collect::<Vec<Duration>>()
    };
    assert_ne!(draws(), draws(), "the same jitter twice");
}
