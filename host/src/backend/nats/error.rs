//! Errors of the NATS backend's own operations (connecting, setting up the layout); what goes
//! wrong with one attempt is that attempt's [`TaskFailure`](crate::TaskFailure).

/// Why the NATS backend, a node or a node listing could not do its work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The broker could not be reached.
    #[error("cannot connect to the NATS server at {url}: {message}")]
    Connect {
        /// The URL as given.
        url: String,
        /// What the client said.
        message: String,
    },
    /// The broker refused or did not answer a request.
    #[error("NATS: cannot {action}: {message}")]
    Broker {
        /// What was being done.
        action: &'static str,
        /// What the broker or client said.
        message: String,
    },
    /// A node's setting is invalid ([`NodeConfig::validate`](super::NodeConfig::validate)).
    #[error(transparent)]
    InvalidOption(#[from] crate::queue::InvalidOption),
    /// The list of NATS servers cannot be used: it is empty, or its servers carry
    /// different credentials.
    #[error("{0}")]
    Servers(String),
    /// The broker refused a request for want of a permission: the account lacks what the
    /// broker layout needs (docs/distributed.md).
    #[error(
        "{action}: the NATS server refused a request ({message}); see the broker layout in docs/distributed.md"
    )]
    Refused {
        /// What was being done.
        action: String,
        /// What the broker said.
        message: String,
    },
    /// A node's host (engine, compile step, cache) could not be built.
    #[error("cannot build the engine: {0}")]
    Host(#[from] crate::HostError),
    /// A node's grants cannot be used: a granted directory or destination is unusable.
    #[error("{0}")]
    Grants(String),
}

impl NatsError {
    pub(crate) fn broker(action: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Broker {
            action,
            message: error.to_string(),
        }
    }
}
