//! Outgoing HTTP for guests (`wasi:http/outgoing-handler`): denied unless the sandbox allows
//! the destination, and bounded by the attempt's deadline.
//!
//! A denied request fails in the guest with `error-code::http-request-denied`; nothing else
//! happens (no connection is made). An allowed one is sent by wasmtime-wasi-http's default
//! sender (hyper over a tokio `TcpStream`, rustls for `https`), with its connect, first-byte
//! and between-bytes timeouts clamped to what is left of the attempt, and abandoned as soon
//! as the attempt is cancelled or its deadline passes.
//!
//! In the sync linker (thread and process queues) the worker thread blocks while a request is
//! in flight; the epoch check cannot interrupt it then, which is why the request itself watches
//! the attempt's control.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::descriptors::Descriptors;
use crate::attempt::AttemptControl;

/// How often an in-flight request checks whether its attempt should stop.
const STOP_POLL: Duration = Duration::from_millis(10);

/// One `HOST[:PORT]` entry of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpGrant {
    /// Lower-case host name or IP literal (IPv6 without brackets).
    host: String,
    /// `None` allows every port of the host.
    port: Option<u16>,
}

impl HttpGrant {
    /// Parses `HOST[:PORT]` (an IPv6 literal as `[::1]` or `[::1]:8080`).
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        let invalid =
            |why: &str| format!("invalid HTTP grant '{spec}' (expected HOST[:PORT]): {why}");
        let spec_trimmed = spec.trim();
        if spec_trimmed.contains("://") || spec_trimmed.contains('/') {
            return Err(invalid("give a host, not a URL"));
        }
        let (host, port) = if let Some(rest) = spec_trimmed.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '['"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(invalid("unexpected text after ']'")),
                },
            }
        } else {
            match spec_trimmed.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => return Err(invalid("write an IPv6 address as [ADDR]:PORT")),
                None => (spec_trimmed, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("empty host"));
        }
        let port = match port {
            Some(port) => Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
            ),
            None => None,
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether every destination `other` allows, this one allows too.
    #[cfg(feature = "nats")]
    pub(crate) fn covers(&self, other: &HttpGrant) -> bool {
        self.host == other.host && self.port.is_none_or(|p| other.port == Some(p))
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.host.eq_ignore_ascii_case(host) && self.port.is_none_or(|p| p == port)
    }
}

/// The `wasi:http` hooks of one attempt: the allow-list, the attempt's control and the
/// store's descriptor budget (a connection counts from its request to the end of its
/// response).
pub(crate) struct HttpPolicy {
    grants: Arc<[HttpGrant]>,
    control: Arc<AttemptControl>,
    descriptors: Descriptors,
}

impl HttpPolicy {
    pub(crate) fn new(
        grants: Arc<[HttpGrant]>,
        control: Arc<AttemptControl>,
        descriptors: Descriptors,
    ) -> Self {
        Self {
            grants,
            control,
            descriptors,
        }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri();
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or_default()
            .to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme() == Some(&Scheme::HTTPS) {
                443
            } else {
                80
            });
        if !self.grants.iter().any(|g| g.allows(&host, port)) {
            let shown = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            // The task's own error names the host; a log line per request would drown a
            // fan-out in repeats.
            tracing::debug!(
                target: "osiiso::http",
                destination = %shown,
                "outgoing HTTP request denied (not in the allow-list)"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        // The connection lives in the request's future, then in its I/O future (which ends,
        // or is dropped, with the response): both carry the witness the budget watches.
        let Ok(reserved) = self.descriptors.reserve(1) else {
            return Box::new(async { Err(Error::ConnectionLimitReached) });
        };
        let connection = Arc::new(());
        reserved.hold(Arc::downgrade(&connection) as _);
        let control = self.control.clone();
        let options = clamp_options(options, control.deadline());
        Box::new(async move {
            let send = wasmtime_wasi_http::default_send_request(request, Some(options));
            let stop = async {
                while !control.should_stop() {
                    tokio::time::sleep(STOP_POLL).await;
                }
            };
            tokio::select! {
                sent = send => {
                    let (response, io) = sent?;
                    let response = response.map(BodyExt::boxed_unsync);
                    let io = async move {
                        let _connection = connection;
                        io.await
                    };
                    Ok((response, Box::new(io) as IoFuture))
                }
                () = stop => Err(Error::ConnectionTimeout),
            }
        })
    }
}

/// Clamps every timeout of the request to what is left before `deadline`.
fn clamp_options(options: Option<RequestOptions>, deadline: Option<Instant>) -> RequestOptions {
    let mut options = options.unwrap_or_default();
    if let Some(deadline) = deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        for timeout in [
            &mut options.connect_timeout,
            &mut options.first_byte_timeout,
            &mut options.between_bytes_timeout,
        ] {
            *timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::HttpGrant;

    #[test]
    fn parses_grants() {
        let g = HttpGrant::parse("Example.com").unwrap();
        assert!(g.allows("example.com", 80) && g.allows("EXAMPLE.COM", 8080));
        let g = HttpGrant::parse("127.0.0.1:8080").unwrap();
        assert!(g.allows("127.0.0.1", 8080) && !g.allows("127.0.0.1", 8081));
        let g = HttpGrant::parse("[::1]:9000").unwrap();
        assert!(g.allows("::1", 9000) && !g.allows("::1", 80));
        assert!(HttpGrant::parse("[::1]").unwrap().allows("::1", 1));
        for bad in [
            "",
            ":80",
            "host:0",
            "host:x",
            "http://host",
            "::1",
            "[::1",
            "h/p",
        ] {
            assert!(HttpGrant::parse(bad).is_err(), "{bad}");
        }
    }
}
