//! Errors of the proxy's set-up (requests never fail this way: they get an
//! HTTP status and a JSON body).

/// What can go wrong configuring or starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Certificates or keys could not be loaded or generated.
    #[error("tls: {0}")]
    Tls(String),
}
