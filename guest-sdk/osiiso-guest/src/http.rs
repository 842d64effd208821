//! Outgoing HTTP through `wasi:http`: a small blocking client.
//!
//! The host denies every destination unless it was granted (`--allow-http HOST[:PORT]`);
//! a denied request fails with [`HttpError::Denied`], which `?` turns into a permanent
//! [`TaskError`] naming the host and the flag that grants it.
//!
//! ```ignore
//! use osiiso_guest::{http, task, TaskError};
//!
//! #[task]
//! fn price(symbol: String) -> Result<serde_json::Value, TaskError> {
//!     let response = http::get(&format!("http://127.0.0.1:8080/price/{symbol}"))?;
//!     Ok(response.error_for_status()?.json()?)
//! }
//! ```

use std::fmt;
use std::time::Duration;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::streams::StreamError;

use crate::TaskError;

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in order (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response itself if its status is 2xx, else [`HttpError::Status`].
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(HttpError::Status {
                status: self.status,
                body: String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect(),
            })
        }
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Body(format!("not JSON: {e}")))
    }
}

/// Why a request failed.
///
/// It deliberately does not implement [`std::error::Error`]: its own conversion into
/// [`TaskError`] (rather than the blanket one, which makes every error retryable) keeps a denied
/// request permanent. Use its `Display` to wrap it elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host does not allow requests to this `host:port`.
    Denied {
        /// `host:port` of the request.
        host: String,
    },
    /// The URL could not be used.
    InvalidUrl(String),
    /// The request failed (connection, protocol, timeout...).
    Request {
        /// `host:port` of the request.
        host: String,
        /// What went wrong.
        message: String,
    },
    /// The status was not 2xx (from [`Response::error_for_status`]).
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The body could not be read or decoded.
    Body(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied { host } => write!(
                f,
                "HTTP request to {host} denied by the host (grant it with --allow-http {host})"
            ),
            Self::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            Self::Request { host, message } => {
                write!(f, "HTTP request to {host} failed: {message}")
            }
            Self::Status { status, body } if body.is_empty() => {
                write!(f, "HTTP status {status}")
            }
            Self::Status { status, body } => write!(f, "HTTP status {status}: {body}"),
            Self::Body(m) => write!(f, "HTTP response body: {m}"),
        }
    }
}

impl From<HttpError> for TaskError {
    /// A denied request or an unusable URL is permanent (retrying cannot help); everything
    /// else, 4xx included, is a retryable failure except the statuses that will not change.
    fn from(error: HttpError) -> Self {
        match &error {
            HttpError::Denied { .. } | HttpError::InvalidUrl(_) => TaskError::permanent(error),
            HttpError::Status { status, .. }
                if (400..500).contains(status) && !matches!(status, 408 | 425 | 429) =>
            {
                TaskError::permanent(error)
            }
            _ => TaskError::failed(error),
        }
    }
}

/// A request being built: `Request::get(url).header("accept", "application/json").send()`.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request with this method (`GET`, `POST`...).
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and the `content-type` header.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| HttpError::Body(format!("cannot encode the JSON body: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Bounds the connection, the first byte and each pause between bytes (the host also
    /// bounds everything by the attempt's deadline).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = Url::parse(&self.url)?;
        let host = url.host_port();
        let fail = |message: String| HttpError::Request {
            host: host.clone(),
            message,
        };

        let headers = Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| fail(format!("header '{name}': {e:?}")))?;
        }
        let request = OutgoingRequest::new(headers);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let invalid = |what: &str| HttpError::InvalidUrl(format!("{what} in '{}'", self.url));
        request
            .set_method(&method)
            .map_err(|()| fail(format!("invalid method '{}'", self.method)))?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|()| invalid("invalid scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| invalid("invalid authority"))?;
        request
            .set_path_with_query(Some(&url.path_and_query))
            .map_err(|()| invalid("invalid path"))?;

        let outgoing_body = request
            .body()
            .map_err(|()| fail("cannot open the request body".into()))?;

        let options = self.timeout.map(|t| {
            let options = RequestOptions::new();
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
            options
        });
        let future = outgoing_handler::handle(request, options).map_err(|e| error(&host, e))?;

        // Write the body after `handle`, so it can stream; a failure here is reported only if
        // the response itself does not explain it (a denied request, a refused connection).
        let mut body_error = None;
        if let Some(body) = &self.body {
            match outgoing_body.write() {
                Ok(stream) => {
                    for chunk in body.chunks(4096) {
                        if let Err(e) = stream.blocking_write_and_flush(chunk) {
                            body_error = Some(fail(format!(
                                "writing the request body: {}",
                                stream_error(e)
                            )));
                            break;
                        }
                    }
                }
                Err(()) => body_error = Some(fail("cannot write the request body".into())),
            }
        }
        if let Err(e) = OutgoingBody::finish(outgoing_body, None) {
            body_error.get_or_insert_with(|| error(&host, e));
        }

        let response = loop {
            match future.get() {
                Some(Ok(Ok(response))) => break response,
                Some(Ok(Err(e))) => return Err(error(&host, e)),
                Some(Err(())) => return Err(fail("the response was already taken".into())),
                None => future.subscribe().block(),
            }
        };
        if let Some(e) = body_error {
            return Err(e);
        }
        drop(future);

        let status = response.status();
        let fields = response.headers();
        let headers = fields
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        drop(fields);

        let incoming = response
            .consume()
            .map_err(|()| fail("cannot read the response body".into()))?;
        let stream = incoming
            .stream()
            .map_err(|()| fail("cannot read the response body".into()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => {
                    return Err(HttpError::Body(format!(
                        "reading from {host}: {}",
                        stream_error(e)
                    )));
                }
            }
        }
        drop(stream);
        let _trailers = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// `GET url`, reading the whole response.
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send()
}

/// `POST url` with a JSON body, reading the whole response.
pub fn post_json<T: serde::Serialize + ?Sized>(url: &str, body: &T) -> Result<Response, HttpError> {
    Request::post(url).json(body)?.send()
}

fn error(host: &str, code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied {
            host: host.to_string(),
        },
        other => HttpError::Request {
            host: host.to_string(),
            message: describe(&other),
        },
    }
}

fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout => "connection timed out".into(),
        ErrorCode::ConnectionReadTimeout => "timed out waiting for the response".into(),
        ErrorCode::ConnectionTerminated => "connection closed".into(),
        ErrorCode::DnsError(_) => "DNS lookup failed".into(),
        ErrorCode::DnsTimeout => "DNS lookup timed out".into(),
        ErrorCode::TlsCertificateError => "invalid TLS certificate".into(),
        ErrorCode::InternalError(Some(m)) => m.clone(),
        other => format!("{other:?}"),
    }
}

fn stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "stream closed".into(),
        StreamError::LastOperationFailed(e) => match wasi::http::types::http_error_code(&e) {
            Some(code) => describe(&code),
            None => e.to_debug_string(),
        },
    }
}

/// The parts of an `http://` or `https://` URL a request needs.
struct Url {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
    default_port: u16,
}

impl Url {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let invalid = |why: &str| HttpError::InvalidUrl(format!("{why}: '{url}'"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected http://HOST/... or https://HOST/..."))?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, 80),
            "https" => (Scheme::Https, 443),
            _ => return Err(invalid("only http and https are supported")),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = match tail.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{tail}"),
            _ => tail.to_string(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            path_and_query,
            default_port,
        })
    }

    /// `host:port`, with the scheme's port when the URL has none.
    fn host_port(&self) -> String {
        let has_port = match self.authority.rfind(']') {
            Some(close) => self.authority[close..].contains(':'),
            None => self.authority.contains(':'),
        };
        if has_port {
            self.authority.clone()
        } else {
            format!("{}:{}", self.authority, self.default_port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Url;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:8080/x?y=1#frag").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path_and_query, "/x?y=1");
        assert_eq!(u.host_port(), "127.0.0.1:8080");
        let u = Url::parse("https://example.com").unwrap();
        assert_eq!(u.path_and_query, "/");
        assert_eq!(u.host_port(), "example.com:443");
        assert_eq!(Url::parse("http://[::1]/").unwrap().host_port(), "[::1]:80");
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("nope").is_err());
    }
}
