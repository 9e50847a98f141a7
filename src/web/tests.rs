//! The page's routes over real HTTP: a listener on a free loopback port, requests by reqwest.

use super::*;
use crate::dedup::Stats;
use crate::status::StatusReporter;
use crate::status::unix;
use serde_json::{Value, json};

struct Served {
    base: String,
    reporter: StatusReporter,
    recent: RecentLog,
    stop: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve_on_loopback(only: Option<IpAddr>) -> Served {
    crate::tls::install_crypto_provider();
    let listen = Listen {
        address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        only,
    };
    let listener = bind(listen).await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let (reporter, status) = StatusReporter::new();
    let recent = RecentLog::new();
    let stop = CancellationToken::new();
    let page = Page {
        status,
        recent: recent.clone(),
        broker: "core-mosquitto:1883".into(),
        redactor: Redactor::default(),
    };
    tokio::spawn(serve(listener, listen, page, stop.clone()));
    Served {
        base,
        reporter,
        recent,
        stop,
    }
}

fn content_type(response: &reqwest::Response) -> &str {
    response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
}

/// Every route: the page, its JSON, 404 for anything else, 405 for anything but GET/HEAD.
#[tokio::test]
async fn routes_answer_with_their_status_and_type() {
    let served = serve_on_loopback(None).await;
    let http = reqwest::Client::new();

    let page = http.get(&served.base).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(content_type(&page), "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(page.text().await.unwrap().starts_with("<!doctype html>"));

    let json = http
        .get(format!("{}api/status", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    assert_eq!(content_type(&json), "application/json");
    let json: Value = json.json().await.unwrap();
    assert_eq!(json["broker"]["address"], "core-mosquitto:1883");
    assert_eq!(json["history"], Value::Null);

    for path in [
        "index.html",
        "api",
        "api/status/",
        "../etc/passwd",
        "favicon.ico",
    ] {
        let other = http
            .get(format!("{}{path}", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "{path}");
        assert_eq!(content_type(&other), "text/plain; charset=utf-8");
    }

    for method in [Method::POST, Method::PUT, Method::DELETE] {
        for path in ["", "api/status"] {
            let refused = http
                .request(method.clone(), format!("{}{path}", served.base))
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), 405, "{method} /{path}");
            assert_eq!(refused.headers()["allow"], "GET, HEAD");
        }
    }
    let head = http.head(&served.base).send().await.unwrap();
    assert_eq!(head.status(), 200);
}

/// The JSON carries what the pipeline reported: connections, the meter, the chart, traffic and
/// the recent warnings.
#[tokio::test]
async fn the_json_follows_the_status() {
    let served = serve_on_loopback(None).await;
    let now = SystemTime::now();
    served.reporter.set_connected(true);
    served.reporter.set_reachable(true);
    served.reporter.polled(now);
    served.reporter.meter(
        now,
        Some("v5.11.0"),
        vec![
            ("electricity_currently_delivered", "0.512".into()),
            ("electricity_currently_returned", "0.000".into()),
            ("gas_delivered", "1234.567".into()),
        ],
        true,
    );
    served
        .reporter
        .failed(now, "DSMR-reader did not answer in time".into());
    served.reporter.traffic(
        Stats {
            published: 10,
            suppressed_by_cache: 90,
            ..Stats::default()
        },
        42,
    );
    served.reporter.history(
        true,
        "importing: 8,760 of 17,520 hours, up to 2025-12-02".into(),
    );
    let subscriber = tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        served.recent.layer(Redactor::default()),
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(error = "timed out", "DSMR-reader poll failed");
    });

    let json: Value = reqwest::get(format!("{}api/status", served.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["broker"]["connected"], true);
    assert_eq!(json["broker"]["since"], unix(now));
    assert_eq!(json["dsmr_reader"]["reachable"], true);
    assert_eq!(json["dsmr_reader"]["version"], "v5.11.0");
    assert_eq!(json["dsmr_reader"]["last_poll"], unix(now));
    assert_eq!(
        json["dsmr_reader"]["last_error"]["text"],
        "DSMR-reader did not answer in time"
    );
    assert_eq!(json["meter"]["gas_delivered"], "1234.567");
    assert_eq!(json["power"], json!([[unix(now), 512, 0]]));
    assert_eq!(json["traffic"]["published"], 10);
    assert_eq!(json["traffic"]["suppressed_by_cache"], 90);
    assert_eq!(json["entities"], 42);
    assert_eq!(
        json["history"],
        json!({ "ok": true, "text": "importing: 8,760 of 17,520 hours, up to 2025-12-02" })
    );
    assert_eq!(json["recent"][0]["level"], "WARN");
    assert_eq!(
        json["recent"][0]["text"],
        "DSMR-reader poll failed error=\"timed out\""
    );
}

/// Inside Home Assistant only the ingress proxy is answered: a loopback client gets 403 on
/// every path, the page included.
#[tokio::test]
async fn other_clients_get_403_when_only_the_ingress_proxy_is_answered() {
    let served = serve_on_loopback(Some(INGRESS_PROXY)).await;
    for path in ["", "api/status", "nothing"] {
        let response = reqwest::get(format!("{}{path}", served.base))
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "/{path}");
        assert!(!response.text().await.unwrap().contains("<html"));
    }
}

#[test]
fn the_listen_address_follows_home_assistant() {
    let local: SocketAddr = "127.0.0.1:8099".parse().unwrap();
    assert_eq!(
        Listen::choose(false, None),
        None,
        "off outside Home Assistant"
    );
    assert_eq!(
        Listen::choose(false, Some(local)),
        Some(Listen {
            address: local,
            only: None
        })
    );
    let inside = Listen::choose(true, None).unwrap();
    assert_eq!(inside.address, "0.0.0.0:8099".parse().unwrap());
    assert!(inside.allows(INGRESS_PROXY));
    assert!(inside.allows("::ffff:172.30.32.2".parse().unwrap()));
    assert!(!inside.allows("172.30.32.1".parse().unwrap()));
    assert!(!inside.allows(Ipv4Addr::LOCALHOST.into()));
    // The option moves the address inside Home Assistant, never opens the page to others.
    assert_eq!(
        Listen::choose(true, Some(local)).unwrap().only,
        Some(INGRESS_PROXY)
    );
}

/// Under ingress the browser sees the page at `/api/hassio_ingress/<token>/` and the
/// Supervisor forwards `/` with `X-Ingress-Path`: the page must reach its JSON through the
/// same prefix, so it may only use relative URLs, and it loads nothing from elsewhere.
#[tokio::test]
async fn the_page_works_under_the_ingress_prefix_and_loads_nothing_from_elsewhere() {
    let served = serve_on_loopback(None).await;
    let prefix = "/api/hassio_ingress/Zm9vYmFyYmF6";
    let response = reqwest::Client::new()
        .get(&served.base)
        .header("X-Ingress-Path", prefix)
        .header("X-Forwarded-For", "192.168.1.20")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    for tag in ["script", "style"] {
        let hash = sha256_of(inline(PAGE, tag));
        assert!(csp.contains(&format!("-src '{hash}'")), "{tag}: {csp}");
        assert_eq!(PAGE.matches(&format!("<{tag}")).count(), 1, "one <{tag}>");
    }
    assert!(!PAGE.contains(" style=\""), "no inline style attribute");
    let html = response.text().await.unwrap();
    assert!(html.len() < 20 * 1024, "the page is {} bytes", html.len());

    // The one URL the page fetches, resolved as the browser does under the prefix.
    let fetches: Vec<&str> = html
        .match_indices("fetch(\"")
        .map(|(i, m)| html[i + m.len()..].split('"').next().unwrap())
        .collect();
    assert_eq!(fetches, ["api/status"]);
    let page_url = url::Url::parse(&format!("http://homeassistant.local:8123{prefix}/")).unwrap();
    assert_eq!(
        page_url.join(fetches[0]).unwrap().path(),
        format!("{prefix}/api/status")
    );
    for needle in ["src=", "href=", "@import", "url(", "//cdn", "https:"] {
        assert!(!html.contains(needle), "the page holds {needle:?}");
    }
    // The only absolute URL is SVG's namespace name, which is never loaded.
    for (i, _) in html.match_indices("http://") {
        assert!(
            html[i..].starts_with("http://www.w3.org/2000/svg"),
            "{}",
            &html[i..i + 40]
        );
    }
    // Light and dark, and a phone's width.
    assert!(html.contains("prefers-color-scheme:dark"));
    assert!(html.contains("name=\"viewport\""));
}

/// A peer that opens a connection and sends half a request line, then nothing.
async fn slow_headers(from: IpAddr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut stream = connect_from(from, to).await?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await?;
    Ok(stream)
}

/// A peer that asks once with keep-alive, reads the start of its answer and stays idle.
async fn idle_keep_alive(from: IpAddr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_from(from, to).await?;
    stream
        .write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut answer = [0; 64];
    // Whatever comes (a 403, or nothing when the server closes): the connection stays open.
    let _ = stream.read(&mut answer).await;
    Ok(stream)
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Inside Home Assistant, 100 slow-header connections and 40 idle keep-alives from an address
/// that gets 403, and more arriving all along, do not keep the page from its proxy: every one
/// of the proxy's requests, each on a new connection, is answered. On loopback, 127.0.0.2
/// stands in for the proxy and 127.0.0.1 for everyone else.
#[tokio::test]
async fn the_proxy_is_answered_during_a_flood_of_refused_peers() {
    let proxy: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
    let stranger: IpAddr = Ipv4Addr::LOCALHOST.into();
    let served = serve_on_loopback(Some(proxy)).await;
    let address: SocketAddr = served.base["http://".len()..served.base.len() - 1]
        .parse()
        .unwrap();

    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(slow_headers(stranger, address).await.unwrap());
    }
    for _ in 0..40 {
        // A refused or reset connection is fine; the attacker's loss.
        if let Ok(stream) = idle_keep_alive(stranger, address).await {
            flood.push(stream);
        }
    }
    let more = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..300 {
            if let Ok(stream) = slow_headers(stranger, address).await {
                held.push(stream);
            }
            tokio::task::yield_now().await;
        }
        std::future::pending::<()>().await;
    });

    let http = reqwest::Client::builder()
        .local_address(proxy)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for n in 0..20 {
        let response = http
            .get(format!("{}api/status", served.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n} of the proxy: {e}"));
        assert_eq!(response.status(), 200, "request {n} of the proxy");
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["broker"]["address"], "core-mosquitto:1883");
    }
    more.abort();
    drop(flood);
}

/// The page's JSON contract: every field `page.html` reads, at its place, with its JSON type.
#[tokio::test]
async fn the_json_contract_is_what_the_page_reads() {
    let served = serve_on_loopback(None).await;
    let now = SystemTime::now();
    served.reporter.set_connected(true);
    served.reporter.set_reachable(true);
    served.reporter.polled(now);
    served.reporter.meter(
        now,
        Some("v5.11.0"),
        vec![("electricity_currently_delivered", "0.512".into())],
        true,
    );
    served
        .reporter
        .failed(now, "DSMR-reader answered HTTP 500".into());
    served.reporter.side_failing(
        "consumption/today",
        Some("DSMR-reader answered HTTP 502".into()),
    );
    served.reporter.history(false, "stopped".into());
    let subscriber = tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        served.recent.layer(Redactor::default()),
    );
    tracing::subscriber::with_default(subscriber, || tracing::warn!("DSMR-reader poll failed"));
    let json: Value = reqwest::get(format!("{}api/status", served.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    fn shape(value: &Value) -> Value {
        match value {
            Value::Object(fields) => {
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
            Value::String(_) => json!("string"),
            Value::Number(_) => json!("number"),
            Value::Bool(_) => json!("bool"),
            Value::Null => json!("null"),
        }
    }
    assert_eq!(
        shape(&json),
        json!({
            "bridge": "string",
            "now": "number",
            "dsmr_reader": {
                "reachable": "bool",
                "version": "string",
                "last_poll": "number",
                "last_error": { "at": "number", "text": "string" },
                "failing": [{ "endpoint": "string", "text": "string" }],
            },
            "broker": { "connected": "bool", "address": "string", "since": "number" },
            "history": { "ok": "bool", "text": "string" },
            "meter": { "electricity_currently_delivered": "string" },
            "power": [["number", "number", "number"]],
            "traffic": {
                "offered": "number",
                "published": "number",
                "suppressed_by_cache": "number",
                "discarded_in_queue": "number",
                "replaced_in_queue": "number",
                "dropped": "number",
            },
            "entities": "number",
            "recent": [{ "at": "number", "level": "string", "text": "string" }],
        })
    );
}

/// The catalog's entries shown on the page are the ones the page reads (the phases by their
/// common prefix, which the page completes with l1, l2, l3).
#[test]
fn the_page_reads_every_value_the_catalog_puts_on_it() {
    let shown: Vec<&str> = crate::map::catalog::Key::all()
        .map(|k| k.sensor())
        .filter(|s| s.on_page)
        .map(|s| s.key)
        .collect();
    assert_eq!(shown.len(), 17, "{shown:?}");
    for key in shown {
        let read = match key.strip_suffix(&key[key.len() - 3..]) {
            Some(prefix) if key.starts_with("phase_") => PAGE.contains(&format!("\"{prefix}_\"")),
            _ => PAGE.contains(&format!("\"{key}\"")) || PAGE.contains(&format!("m.{key})")),
        };
        assert!(read, "the page does not read {key}");
    }
}

/// A client that does not finish its request headers loses its connection after
/// `HEADER_TIMEOUT` (3 s, on the paused clock), so a slow one holds a slot briefly.
#[tokio::test(start_paused = true)]
async fn slow_headers_are_dropped_after_a_short_deadline() {
    use tokio::io::AsyncReadExt;
    let served = serve_on_loopback(None).await;
    let address: SocketAddr = served.base["http://".len()..served.base.len() - 1]
        .parse()
        .unwrap();
    let mut stream = slow_headers(Ipv4Addr::LOCALHOST.into(), address)
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let mut buffer = [0; 64];
    let read = stream.read(&mut buffer).await;
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited <= Duration::from_millis(3100),
        "{waited:?}"
    );
}
