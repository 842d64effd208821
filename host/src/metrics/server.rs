//! A small HTTP/1 listener for [`Metrics`]: `/metrics` (Prometheus text), `/healthz` (200
//! while able to work, 503 otherwise) and `/` (the status page). It is an attack surface like
//! any listener, so what it spends is bounded: [`MAX_CONNECTIONS`] at once (more are closed
//! at once), [`MAX_REQUEST_HEAD`] bytes of request head, [`HEADER_TIMEOUT`] to send it
//! (slowloris), [`CONNECTION_LIFETIME`] per connection, GET and HEAD only, no request body
//! read. Built on hyper's HTTP/1 server, on its own thread and single-threaded runtime, so a
//! blocking CLI or any embedder can run one.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, oneshot};

use super::{CONTENT_TYPE, Metrics, page};

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 32;
/// The most bytes a request head (request line and headers) may take.
pub const MAX_REQUEST_HEAD: usize = 16 << 10;
/// The time a client has to send a request head once it starts one.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Running attempts shown on the status page.
pub const PAGE_RUNNING: usize = 50;

/// A running listener; dropping it (or [`stop`](Self::stop)) closes it.
///
/// ```
/// use osiiso_host::metrics::{Metrics, StatusServer};
/// let metrics = Metrics::new();
/// let server = StatusServer::bind("127.0.0.1:0".parse()?, &metrics)?;
/// println!("metrics on http://{}/metrics", server.local_addr());
/// server.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StatusServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StatusServer {
    /// Listens on `addr` (port 0: any free port) and serves `metrics` until dropped.
    pub fn bind(addr: SocketAddr, metrics: &Metrics) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("osiiso-http".into())
            .spawn(move || runtime.block_on(serve(listener, metrics, stopped)))?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(listener: TcpListener, metrics: Metrics, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "the HTTP listener cannot start");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // The throughput history is sampled every second while someone may look.
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = clock.tick() => metrics.sample(),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, say: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let response = respond(&metrics, &request);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .max_buf_size(MAX_REQUEST_HEAD)
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
                    drop(permit);
                });
            }
        }
    }
}

/// The response to one request.
fn respond<B>(metrics: &Metrics, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = match request.uri().path() {
        "/metrics" => with_type(
            Response::new(Full::new(Bytes::from(metrics.encode()))),
            CONTENT_TYPE,
        ),
        "/healthz" => {
            let status = metrics.status(0);
            if status.healthy {
                plain(StatusCode::OK, "ok\n")
            } else if status.draining {
                plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                plain(StatusCode::SERVICE_UNAVAILABLE, "no broker\n")
            }
        }
        "/" => {
            let mut response = with_type(
                Response::new(Full::new(Bytes::from(page::render(
                    &metrics.status(PAGE_RUNNING),
                )))),
                "text/html; charset=utf-8",
            );
            // Nothing but inline styles and the inline SVG: no script, no outside asset.
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                ),
            );
            response
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: try /, /metrics or /healthz\n",
        ),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = with_type(
        Response::new(Full::new(Bytes::from_static(text.as_bytes()))),
        "text/plain; charset=utf-8",
    );
    *response.status_mut() = status;
    response
}

fn with_type(
    mut response: Response<Full<Bytes>>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// One request on a fresh connection; the whole response as text.
    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }

    fn request(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    }

    #[test]
    fn serves_metrics_health_and_the_page_and_refuses_the_rest() {
        let metrics = Metrics::new();
        let server = StatusServer::bind("127.0.0.1:0".parse().unwrap(), &metrics).unwrap();
        let addr = server.local_addr();

        let response = get(addr, &request("/metrics"));
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(CONTENT_TYPE), "{response}");
        assert!(
            response.contains("osiiso_tasks_submitted_total 0"),
            "{response}"
        );

        let response = get(addr, &request("/healthz"));
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        metrics.set_draining(true);
        let response = get(addr, &request("/healthz"));
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.ends_with("draining\n"), "{response}");

        let response = get(addr, &request("/"));
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("content-security-policy: default-src 'none'"));
        assert!(response.contains("<svg"), "{response}");

        let response = get(addr, &request("/nothing"));
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        let response = get(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");

        // A request head over the bound is refused, not buffered.
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_HEAD * 2)
        );
        let response = get(addr, &huge);
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 431"),
            "{response}"
        );
        server.stop();
        assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    }

    #[test]
    fn connections_beyond_the_bound_are_closed_at_once() {
        let metrics = Metrics::new();
        let server = StatusServer::bind("127.0.0.1:0".parse().unwrap(), &metrics).unwrap();
        let addr = server.local_addr();
        // Idle connections that never send a byte hold every permit (until their header
        // timeout).
        let mut idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        // Wait until the server has taken all of them: a connection past the bound is
        // closed without a response.
        let mut refused = false;
        for _ in 0..200 {
            let mut extra = TcpStream::connect(addr).unwrap();
            extra
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let _ = extra.write_all(request("/healthz").as_bytes());
            let mut response = String::new();
            let _ = extra.read_to_string(&mut response);
            if response.is_empty() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a connection past {MAX_CONNECTIONS} was served");
        // Freeing one lets the next one in.
        idle.truncate(0);
        let mut served = false;
        for _ in 0..200 {
            if get(addr, &request("/healthz")).starts_with("HTTP/1.1 200") {
                served = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(served);
    }
}
