//! The status page, an edge of the pipeline: a small HTTP/1 server for Home Assistant's
//! sidebar (ingress) or a local address. `GET ./` is one HTML page with its CSS and JS inline,
//! `GET ./api/status` the JSON it polls. Read-only, no secrets: it shows the pipeline's
//! `Status`, the recent warnings and the broker's address, nothing from the configuration, and
//! its text passes the log's `Redactor`.

pub(crate) mod json;
pub(crate) mod recent;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::secrets::Redactor;
use crate::status::Status;
use json::StatusJson;
pub use recent::RecentLog;

/// The Supervisor's ingress proxy: inside Home Assistant the only client the page answers.
pub(crate) const INGRESS_PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 30, 32, 2));
/// `ingress_port` in config.yaml.
pub const INGRESS_PORT: u16 = 8099;

const PAGE: &str = include_str!("page.html");
/// A few browser tabs and the ingress proxy's pool; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// A client that does not send its request headers in time is dropped; hyper counts an idle
/// kept-alive connection's wait for its next request too, so idle ones free their slot. The
/// page asks every 1.5 s, so an open tab keeps its connection.
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Peers the page does not answer get their 403 from a pool of their own, so that however
/// many of them come, they never hold a slot of `MAX_CONNECTIONS`; beyond it they are closed
/// at accept.
const MAX_REFUSALS: usize = 8;
/// How long a refused peer may take to read its 403.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
const FORBIDDEN: &str = "403 forbidden: only Home Assistant's ingress proxy is answered\n";

/// Where the page listens and whom it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub address: SocketAddr,
    /// `Some`: only this peer gets answers, everyone else 403 (inside Home Assistant).
    pub only: Option<IpAddr>,
}

impl Listen {
    /// Inside Home Assistant on the ingress port for the ingress proxy only (`status_listen`
    /// moves the address, never opens it to others); outside only where `status_listen` says.
    pub(crate) fn choose(inside_ha: bool, status_listen: Option<SocketAddr>) -> Option<Listen> {
        if inside_ha {
            Some(Listen {
                address: status_listen
                    .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, INGRESS_PORT))),
                only: Some(INGRESS_PROXY),
            })
        } else {
            status_listen.map(|address| Listen {
                address,
                only: None,
            })
        }
    }

    fn allows(&self, peer: IpAddr) -> bool {
        self.only.is_none_or(|only| only == peer.to_canonical())
    }
}

/// What the page shows besides the pipeline's status.
pub struct Page {
    pub status: watch::Receiver<Status>,
    pub recent: RecentLog,
    /// `host:port` of the broker.
    pub broker: String,
    /// Cuts secrets out of the text shown (errors, versions, the history's line).
    pub redactor: Redactor,
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, listen: Listen, page: Page, shutdown: CancellationToken) {
    let page = Arc::new(page);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pass, and try again shortly.
                    debug!(error = %error, "status page: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Refused before its request is read: a flood of peers that would get 403 (slow
        // headers, idle keep-alives) cannot lock the ingress proxy out.
        if !listen.allows(peer.ip()) {
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse(stream)).await;
                    drop(permit);
                });
            }
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let page = page.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&request, &page);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                result = connection => {
                    if let Err(error) = result {
                        debug!(error = %error, "status page: connection ended");
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Binds the page's address; a failure names the option.
pub async fn bind(listen: Listen) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen.address)
        .await
        .map_err(|e| anyhow::anyhow!("status_listen: cannot listen on {}: {e}", listen.address))?;
    let address = listener.local_addr()?;
    match listen.only {
        Some(only) => {
            info!(address = %address, answers = %only, "Status page for Home Assistant's sidebar (ingress) listening")
        }
        None => info!(url = %format_args!("http://{address}/"), "Status page listening"),
    }
    Ok(listener)
}

/// Reads the request's head (a client that gets its answer before it has sent its request
/// takes it for garbage), answers 403 and closes.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{FORBIDDEN}",
        FORBIDDEN.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

fn respond(request: &Request<Incoming>, page: &Page) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed: this page is read-only\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/" => with_type(PAGE.into(), "text/html; charset=utf-8"),
        "/api/status" => {
            let status = page.status.borrow();
            let json = StatusJson::new(
                &status,
                &page.broker,
                page.recent.entries(),
                &page.redactor,
                SystemTime::now(),
            );
            let body = serde_json::to_vec(&json).expect("the status serializes");
            with_type(body.into(), "application/json")
        }
        _ => plain(StatusCode::NOT_FOUND, "404 not found\n"),
    }
}

fn with_type(body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Live data: never from a cache, here or in the ingress proxy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, csp().clone());
    response
}

/// Nothing from elsewhere, and nothing inline but the page's own script and style, by hash:
/// under ingress the page lives in Home Assistant's origin, so a value that slipped into the
/// DOM as markup still could not run. Only Home Assistant's frontend (the same origin) may
/// frame it.
fn csp() -> &'static HeaderValue {
    static CSP: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
        let policy = format!(
            "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
            sha256_of(inline(PAGE, "style")),
            sha256_of(inline(PAGE, "script")),
        );
        HeaderValue::from_str(&policy).expect("a CSP is ASCII")
    });
    &CSP
}

/// The text of the page's one `<tag>` element, as the browser hashes it.
fn inline<'p>(page: &'p str, tag: &str) -> &'p str {
    let open = format!("<{tag}>");
    let start = page.find(&open).expect("the page has the element") + open.len();
    let end = start + page[start..].find(&format!("</{tag}>")).expect("closed");
    &page[start..end]
}

fn sha256_of(text: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = with_type(
        Bytes::from_static(text.as_bytes()),
        "text/plain; charset=utf-8",
    );
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests;
