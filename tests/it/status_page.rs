//! The status page as a user meets it: the bridge binary with its page on a loopback port,
//! against the simulated DSMR-reader and a real Mosquitto, asked over HTTP.

use std::time::Duration;

use serde_json::Value;

use crate::eventually::eventually;
use crate::harness::{Bridge, Broker, SIM_KEY, args, free_port, sim_options};

const MQTT_PASSWORD: &str = "SECRET-mqtt-password-5d1c";
const SUPERVISOR_TOKEN: &str = "SECRET-supervisor-token-71aa";

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
