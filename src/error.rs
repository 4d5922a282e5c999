//! Errors shared by the library's entry points. Each module keeps its own `thiserror` enum; this one
//! gathers what the process-level commands can fail with.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot serialize the CRDs to YAML: {0}")]
    CrdYaml(#[from] serde_saphyr::ser_error::Error),
    #[error("cannot set up logging: {0}")]
    Telemetry(String),
    #[error("cannot connect to Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Leader(#[from] crate::leader::LeaderError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server on {addr} failed: {source}")]
    Serve {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
