//! The status page as a user meets it: the bridge binary with its page on a loopback port,
//! against the simulated DSMR-reader and a real Mosquitto, asked over HTTP.

use std::time::Duration;

use serde_json::Value;

use crate::eventually::eventually;
use crate::harness::{Bridge, Broker, SIM_KEY, args, free_port, sim_options};

const MQTT_PASSWORD: &str = "SECRET-mqtt-password-5d1c";
const SUPERVISOR_TOKEN: &str = "SECRET-svtok-Hq27-71aa";

fn client() -> reqwest::Client {
    dsmr_bridge::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// Asks `url` until `check` holds for its JSON: the positive signal that the bridge got there.
pub(crate) async fn status_until(base: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let http = client();
    eventually(what)
        .every(Duration::from_millis(100))
        .until(
            async || match http.get(format!("{base}api/status")).send().await {
                Ok(response) => match response.json::<Value>().await {
                    Ok(json) if check(&json) => Ok(json),
                    Ok(json) => Err(json.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            },
        )
        .await
}

/// Outside Home Assistant, `status_listen` serves the page to anyone: it shows the live meter,
/// the broker, the traffic and a failed poll in the words of the log, and no response, of any
/// route, holds the API key, the MQTT password or a Supervisor token.
#[tokio::test]
async fn the_page_serves_live_status_and_no_secret() {
    let broker = Broker::start();
    let sim = dsmr_sim::Simulator::start(sim_options()).await.unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/");
    let listen = format!("127.0.0.1:{port}");
    let bridge = Bridge::start(&args(
        &sim.url(),
        broker.port,
        "page",
        &[
            "--status-listen",
            &listen,
            "--mqtt-username",
            "bridge",
            "--mqtt-password",
            MQTT_PASSWORD,
        ],
    ));
    bridge.wait_log("Status page listening").await;

    let first = status_until(&base, "the meter and the broker", |s| {
        s["broker"]["connected"] == true
            && s["meter"]["electricity_currently_delivered"].is_string()
            && s["traffic"]["published"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(
        first["broker"]["address"],
        format!("127.0.0.1:{}", broker.port)
    );
    assert_eq!(first["dsmr_reader"]["reachable"], true);
    assert!(first["power"].as_array().is_some_and(|p| !p.is_empty()));

    // A failed poll shows as the last error and among the recent warnings.
    sim.set_fault(Some(dsmr_sim::Fault::Status(500)));
    let failed = status_until(&base, "the failed poll", |s| {
        s["dsmr_reader"]["last_error"]["text"].is_string()
            && !s["recent"].as_array().unwrap().is_empty()
    })
    .await;
    sim.set_fault(None);
    let error = failed["dsmr_reader"]["last_error"]["text"]
        .as_str()
        .unwrap();
    assert!(error.contains("500"), "{error}");
    let warning = failed["recent"][0]["text"].as_str().unwrap();
    assert!(warning.starts_with("DSMR-reader poll failed"), "{warning}");
    assert!(bridge.log().contains(warning), "the words of the log");
    status_until(&base, "DSMR-reader back", |s| {
        s["dsmr_reader"]["last_poll"].as_u64() > failed["dsmr_reader"]["last_error"]["at"].as_u64()
    })
    .await;

    let http = client();
    for (method, path, code) in [
        (reqwest::Method::GET, "", 200),
        (reqwest::Method::GET, "api/status", 200),
        (reqwest::Method::GET, "nothing", 404),
        (reqwest::Method::POST, "api/status", 405),
    ] {
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), code, "{method} /{path}");
        let body = response.text().await.unwrap();
        for secret in [SIM_KEY, MQTT_PASSWORD, SUPERVISOR_TOKEN] {
            assert!(
                !body.contains(secret),
                "{method} /{path} shows a secret: {body}"
            );
        }
    }
}

/// Inside Home Assistant the page answers only the Supervisor's ingress proxy (172.30.32.2):
/// a client on this machine gets 403 on every path.
#[tokio::test]
async fn inside_home_assistant_other_clients_get_403() {
    let broker = Broker::start();
    let sim = dsmr_sim::Simulator::start(sim_options()).await.unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/");
    let listen = format!("127.0.0.1:{port}");
    // `mqtt_host` is set, so the bridge does not ask the Supervisor for the broker.
    let bridge = Bridge::start_with_env(
        &args(
            &sim.url(),
            broker.port,
            "ingress",
            &["--status-listen", &listen],
        ),
        &[("SUPERVISOR_TOKEN", SUPERVISOR_TOKEN.to_owned())],
    );
    bridge
        .wait_log("Status page for Home Assistant's sidebar (ingress) listening")
        .await;
    bridge.wait_log("published").await;
    let http = client();
    for path in ["", "api/status", "nothing"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 403, "/{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("meter"), "{body}");
    }
    assert!(
        bridge.log().contains("answers=172.30.32.2"),
        "{}",
        bridge.log()
    );
}

/// An address that is not one exits 2 at startup and names the option.
#[test]
fn an_invalid_status_listen_is_refused_at_startup() {
    let output = crate::harness::bridge_command()
        .args([
            "--dsmr-reader-url",
            "http://127.0.0.1:1/",
            "--dsmr-reader-api-key",
            SIM_KEY,
            "--status-listen",
            "localhost:8099",
        ])
        .env_remove("SUPERVISOR_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("status_listen: "), "{stderr}");
}

/// A DSMR-reader (or a proxy in front of it) whose 403 echoes the configured secrets, in the
/// forms an error text carries them: the API key in lower case, the MQTT password URL-encoded
/// and in base64 inside `user:password`, a piece of the Home Assistant token. None of them
/// reaches the log, at trace level, nor the page; the page says which secret was cut.
#[tokio::test]
async fn no_secret_in_any_form_reaches_the_log_or_the_page() {
    use crate::harness::{http_stand_in, json_reply, url_of};

    const API_KEY: &str = "Q7fT2kLm9XwR4pZs";
    const PASSWORD: &str = "mqtt pw/9Zq+Lk3$";
    const TOKEN: &str =
        "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJmMDRkN2U5YzAxIn0.Hc8Wq3TzLp0Vb7Nm2Xk5Rj9Ys4Df6Ga1";
    let encoded = PASSWORD
        .replace(' ', "%20")
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('$', "%24");
    let basic = {
        let user_password = format!("bridge:{PASSWORD}");
        // base64, standard alphabet, padded.
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in user_password.as_bytes().chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                out.push(if i <= chunk.len() {
                    ABC[(n >> (18 - 6 * i) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        out
    };
    // Within the 120 characters of a detail the bridge keeps.
    let detail = format!(
        "session {} token {} {encoded} ({basic})",
        &TOKEN[20..40],
        API_KEY.to_lowercase(),
    );
    let dsmr = http_stand_in(json_reply(
        403,
        serde_json::json!({ "detail": detail }).to_string(),
    ))
    .await;

    let broker = Broker::start();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/");
    let listen = format!("127.0.0.1:{port}");
    let mut arguments = args(
        &url_of(&dsmr),
        broker.port,
        "secrets",
        &[
            "--status-listen",
            &listen,
            "--mqtt-username",
            "bridge",
            "--mqtt-password",
            PASSWORD,
            "--history",
            "true",
            "--homeassistant-url",
            "http://127.0.0.1:9/",
            "--homeassistant-token",
            TOKEN,
        ],
    );
    let key = arguments.iter().position(|a| a == SIM_KEY).unwrap();
    arguments[key] = API_KEY.to_owned();
    let level = arguments.iter().position(|a| a == "--log-level").unwrap() + 1;
    arguments[level] = "trace".to_owned();
    let bridge = Bridge::start(&arguments);

    let status = status_until(&base, "the refused poll on the page", |s| {
        s["dsmr_reader"]["last_error"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("refused access"))
    })
    .await;
    bridge.wait_log("refused access").await;
    let shown = status.to_string();
    assert!(shown.contains("[api key]"), "{shown}");
    assert!(shown.contains("[mqtt password]"), "{shown}");
    assert!(shown.contains("[home assistant token]"), "{shown}");
    let log = bridge.log();
    for (name, text) in [("the page", shown), ("the log", log)] {
        let text = text.to_lowercase();
        // `basic` without the characters that encode `bridge:` and the padding.
        let basic = &basic[10..basic.len() - 3];
        for secret in [API_KEY, PASSWORD, encoded.as_str(), basic, TOKEN] {
            for piece in secret.as_bytes().windows(8) {
                let piece = String::from_utf8_lossy(piece).to_lowercase();
                assert!(
                    !text.contains(&piece),
                    "{name} holds {piece:?} of {secret:?}"
                );
            }
        }
    }
}

/// One definition of reachable: only the newest reading decides. A side endpoint that fails
/// is listed as failing while DSMR-reader stays reachable; when the reading fails and meter
/// statistics still answer, DSMR-reader is unreachable and its last successful poll stays
/// the last one whose reading answered.
#[tokio::test]
async fn only_the_reading_decides_whether_dsmr_reader_is_reachable() {
    let broker = Broker::start();
    let sim = dsmr_sim::Simulator::start(sim_options()).await.unwrap();
    let failure = r#"{"detail": "Internal Server Error"}"#;
    sim.override_endpoint(
        "/api/v2/consumption/today",
        500,
        "application/json",
        failure.into(),
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/");
    let listen = format!("127.0.0.1:{port}");
    let _bridge = Bridge::start(&args(
        &sim.url(),
        broker.port,
        "reachable",
        &["--status-listen", &listen],
    ));
    let side = status_until(&base, "today listed as failing", |s| {
        s["dsmr_reader"]["failing"][0]["endpoint"] == "consumption/today"
    })
    .await;
    assert_eq!(side["dsmr_reader"]["reachable"], true, "{side}");
    let text = side["dsmr_reader"]["failing"][0]["text"].as_str().unwrap();
    assert!(text.contains("500"), "{text}");
    status_until(&base, "a successful poll after it", |s| {
        s["dsmr_reader"]["last_poll"].as_u64() > side["now"].as_u64()
    })
    .await;

    let reading = "/api/v2/datalogger/dsmrreading";
    let failed_from = dsmr_bridge::status::unix(std::time::SystemTime::now());
    sim.override_endpoint(reading, 500, "application/json", failure.into());
    status_until(&base, "DSMR-reader unreachable", |s| {
        s["dsmr_reader"]["reachable"] == false
    })
    .await;
    // Meter statistics go on answering, asked again after each failed reading.
    let statistics = "/api/v2/datalogger/meter-statistics";
    let asked = sim.requests(statistics);
    let readings = sim.requests(reading);
    eventually("two more failed polls with meter statistics answered")
        .until(async || {
            let (now_asked, now_readings) = (sim.requests(statistics), sim.requests(reading));
            if now_asked >= asked + 2 && now_readings >= readings + 2 {
                Ok(())
            } else {
                Err(format!(
                    "{now_asked} meter statistics, {now_readings} readings"
                ))
            }
        })
        .await;
    let down = status_until(&base, "the page after them", |_| true).await;
    assert_eq!(down["dsmr_reader"]["reachable"], false, "{down}");
    assert!(
        down["dsmr_reader"]["last_poll"].as_u64() <= Some(failed_from),
        "the last successful poll is before the reading failed: {down}"
    );
}
