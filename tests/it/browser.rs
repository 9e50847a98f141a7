//! The status page in a real browser: headless Chromium opens it through a stand-in for the
//! Supervisor's ingress proxy while the bridge runs against the simulator and Mosquitto.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::eventually::eventually;
use crate::harness::{Bridge, Broker, args, free_port, sim_options};

/// The prefix Home Assistant's frontend opens the app's panel under.
const INGRESS_PATH: &str = "/api/hassio_ingress/Xk3q9ZtW";

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

/// Like the Supervisor: takes the request under the ingress prefix, strips it, adds
/// `X-Ingress-Path` and forwards it to the app; anything else is not the app's.
async fn ingress_proxy(app: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let http = reqwest::Client::new();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let http = http.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let http = http.clone();
                    async move { Ok::<_, Infallible>(forward(&http, app, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

async fn forward(
    http: &reqwest::Client,
    app: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(path) = request.uri().path().strip_prefix(INGRESS_PATH) else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not this app")));
        *response.status_mut() = hyper::StatusCode::NOT_FOUND;
        return response;
    };
    let path = if path.is_empty() { "/" } else { path }.to_owned();
    let method = request.method().clone();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let answer = http
        .request(method, format!("http://{app}{path}"))
        .header("X-Ingress-Path", INGRESS_PATH)
        .header("X-Forwarded-For", "192.168.1.20")
        .body(body)
        .send()
        .await
        .unwrap();
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        response = response.header(name.as_str(), value.as_bytes());
    }
    response
        .body(Full::new(answer.bytes().await.unwrap()))
        .unwrap()
}

/// Headless Chromium, with a profile of its own, run to completion.
fn browse(chromium: &Path, profile: &Path, extra: &[&str], url: &str) -> String {
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of the element with this id in a DOM dump (its first text run).
fn text_of<'d>(dom: &'d str, id: &str) -> &'d str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let rest = &dom[start..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    &rest[..rest.find('<').unwrap()]
}

/// The `d` of the consumed-power line in the chart.
fn chart_line(dom: &str) -> &str {
    let at = dom
        .find("id=\"line-in\"")
        .expect("a power line in the chart");
    let path = &dom[..at];
    let d = &path[path.rfind(" d=\"").expect("d") + 4..];
    &d[..d.find('"').unwrap()]
}

async fn status(base: &str) -> Value {
    reqwest::get(format!("{base}api/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Through the ingress prefix the page renders the live values and they change while it is
/// open: two loads some polls apart differ in the power shown and the chart; a screenshot of
/// the page goes to `target/status-page.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_live_values_through_the_ingress_prefix() {
    let Some(chromium) = chromium() else {
        crate::optional::skip(
            "Chromium",
            "none at /usr/bin/chromium: apt-get install chromium, or set CHROMIUM",
        );
        return;
    };
    dsmr_bridge::tls::install_crypto_provider();
    let broker = Broker::start();
    let sim = dsmr_sim::Simulator::start(sim_options()).await.unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let bridge = Bridge::start(&args(
        &sim.url(),
        broker.port,
        "browser",
        &["--status-listen", &listen],
    ));
    bridge.wait_log("Status page listening").await;
    let direct = format!("http://{listen}/");
    let proxy = ingress_proxy(listen.parse().unwrap()).await;
    let page = format!("http://{proxy}{INGRESS_PATH}/");

    let first_poll = eventually("meter values on the page")
        .until(async || {
            let s = status(&direct).await;
            if s["meter"]["electricity_currently_delivered"].is_string()
                && s["entities"].as_u64() > Some(0)
            {
                Ok(s["dsmr_reader"]["last_poll"].as_u64().unwrap())
            } else {
                Err(s)
            }
        })
        .await;

    let profile = tempfile::tempdir().unwrap();
    let dump = ["--dump-dom", "--virtual-time-budget=3000"];
    let first = browse(&chromium, profile.path(), &dump, &page);
    let first_power = text_of(&first, "p-in").to_owned();
    assert!(
        first_power.ends_with(" W"),
        "power rendered: {first_power:?}"
    );
    assert!(
        text_of(&first, "live").starts_with("live · updated"),
        "{}",
        text_of(&first, "live")
    );
    assert!(text_of(&first, "broker-text").starts_with("connected to 127.0.0.1:"));
    assert!(text_of(&first, "dsmr-text").starts_with("reachable · version"));
    assert_ne!(text_of(&first, "t-published"), "–");

    // A few polls later (the bridge polls every second, the simulated meter's power moves).
    eventually("six more polls")
        .until(async || {
            let last_poll = status(&direct).await["dsmr_reader"]["last_poll"].clone();
            match last_poll.as_u64() {
                Some(n) if n >= first_poll + 6 => Ok(()),
                _ => Err(last_poll),
            }
        })
        .await;
    let second = browse(&chromium, profile.path(), &dump, &page);
    assert_ne!(
        (text_of(&first, "live"), chart_line(&first)),
        (text_of(&second, "live"), chart_line(&second)),
        "the live values change"
    );
    assert!(
        chart_line(&second).matches('L').count() > chart_line(&first).matches('L').count(),
        "the chart grows: {} vs {}",
        chart_line(&first),
        chart_line(&second)
    );

    // Light (docs/status-page.png is this one), dark, and a phone's width.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned();
    for (name, size, extra) in [
        ("status-page.png", "1000,1130", None),
        (
            "status-page-dark.png",
            "1000,1130",
            Some("--force-dark-mode"),
        ),
        ("status-page-phone.png", "390,1700", None),
    ] {
        let shot = target.join(name);
        let _ = std::fs::remove_file(&shot);
        let mut flags = vec![
            format!("--screenshot={}", shot.display()),
            format!("--window-size={size}"),
            "--virtual-time-budget=3000".to_owned(),
        ];
        flags.extend(extra.map(str::to_owned));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        browse(&chromium, profile.path(), &flags, &page);
        let png = std::fs::read(&shot).expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    }
    drop(bridge);
}

/// The chart costs the same whatever the values: a page fed the largest power the status can
/// hold (i32::MAX W, what 99,999,999.999 kW becomes) draws at most five grid lines, as for a
/// normal meter. It loads through the ingress-like proxy, whose answers carry the page's CSP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_has_a_fixed_number_of_nodes_whatever_the_values() {
    use dsmr_bridge::web;

    let Some(chromium) = chromium() else {
        crate::optional::skip(
            "Chromium",
            "none at /usr/bin/chromium: apt-get install chromium, or set CHROMIUM",
        );
        return;
    };
    dsmr_bridge::tls::install_crypto_provider();
    let listen = web::Listen {
        address: "127.0.0.1:0".parse().unwrap(),
        only: None,
    };
    let listener = web::bind(listen).await.unwrap();
    let app = listener.local_addr().unwrap();
    let (reporter, status) = dsmr_bridge::status::StatusReporter::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let page = web::Page {
        status,
        recent: web::RecentLog::new(),
        broker: "core-mosquitto:1883".into(),
        redactor: dsmr_bridge::secrets::Redactor::default(),
    };
    tokio::spawn(web::serve(listener, listen, page, stop.clone()));
    let now = std::time::SystemTime::now();
    for (ago, kw) in [(600, "0.400"), (300, "99999999.999"), (0, "0.512")] {
        reporter.meter(
            now - std::time::Duration::from_secs(ago),
            Some("v5.11.0"),
            vec![
                ("electricity_currently_delivered", kw.into()),
                ("electricity_currently_returned", "0.000".into()),
            ],
            true,
        );
    }
    let proxy = ingress_proxy(app).await;
    let csp = reqwest::get(format!("http://{proxy}{INGRESS_PATH}/"))
        .await
        .unwrap()
        .headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(
        &chromium,
        profile.path(),
        &["--dump-dom", "--virtual-time-budget=3000"],
        &format!("http://{proxy}{INGRESS_PATH}/"),
    );
    assert!(
        text_of(&dom, "live").starts_with("live · updated"),
        "the script ran"
    );
    let chart = &dom[dom.find("id=\"chart\"").unwrap()..];
    let chart = &chart[..chart.find("</svg>").unwrap()];
    let lines = chart.matches("<line").count();
    let nodes = chart.matches('<').count() - chart.matches("</").count();
    assert!((2..=5).contains(&lines), "{lines} grid lines");
    assert!(nodes <= 20, "{nodes} nodes in the chart");
    assert!(
        chart_line(&dom).matches('L').count() == 2,
        "{}",
        chart_line(&dom)
    );
    stop.cancel();
}
