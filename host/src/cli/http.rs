//! `--http ADDR`: the metrics, health and status page of a run or a node, through the
//! library's [`StatusServer`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context as _, anyhow};
use osiiso_host::Host;
use osiiso_host::metrics::{Metrics, StatusServer};

/// The metrics of a run or a node and the listener serving them (closed when dropped).
pub(crate) struct Watch {
    pub(crate) metrics: Metrics,
    _server: StatusServer,
}

impl Watch {
    /// Listens on `addr` (see [`parse_addr`]) and watches `host` too.
    pub(crate) fn start(addr: &str, host: &Host, quiet: bool) -> anyhow::Result<Self> {
        let addr = parse_addr(addr)?;
        let metrics = Metrics::new();
        metrics.watch_host(host);
        Self::serve(addr, metrics, quiet)
    }

    /// Serves `metrics` on `addr`.
    pub(crate) fn serve(addr: SocketAddr, metrics: Metrics, quiet: bool) -> anyhow::Result<Self> {
        let server = StatusServer::bind(addr, &metrics)
            .with_context(|| format!("--http: cannot listen on {addr}"))?;
        if !quiet {
            eprintln!(
                "osiiso-host: status page on http://{0}/ (metrics at http://{0}/metrics)",
                server.local_addr()
            );
        }
        Ok(Self {
            metrics,
            _server: server,
        })
    }
}

/// `PORT` and `:PORT` listen on loopback only; anything else must be a full address
/// (`0.0.0.0:9100`, `[::1]:9100`).
pub(crate) fn parse_addr(text: &str) -> anyhow::Result<SocketAddr> {
    let port = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| {
        anyhow!(
            "--http: expected PORT, :PORT or IP:PORT (127.0.0.1:9100, [::1]:9100), got '{text}'"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_loopback() {
        assert_eq!(
            parse_addr("9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(parse_addr(":0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            parse_addr("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert!(parse_addr("localhost:80").is_err());
        assert!(parse_addr("99999").is_err());
    }
}
