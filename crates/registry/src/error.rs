//! The registry's errors, answered in the OCI distribution error shape
//! `{"errors":[{"code","message"}]}` that docker clients read.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong in the registry; each variant maps to one
/// OCI error code and HTTP status, so clients see what they expect.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The blob is not in this repository.
    #[error("blob unknown: {0}")]
    BlobUnknown(String),
    /// The upload is malformed or does not continue where it stopped.
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// No such upload session (or it expired).
    #[error("blob upload unknown: {0}")]
    BlobUploadUnknown(String),
    /// A digest is malformed or does not match the content.
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    /// A manifest references a blob this repository does not hold.
    #[error("manifest references an unknown blob: {0}")]
    ManifestBlobUnknown(String),
    /// A manifest is malformed or of an unsupported type.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// No such manifest or tag.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// The repository name breaks the OCI naming rules.
    #[error("name invalid: {0}")]
    NameInvalid(String),
    /// No such repository.
    #[error("name unknown: {0}")]
    NameUnknown(String),
    /// A content length or range does not add up.
    #[error("size invalid: {0}")]
    SizeInvalid(String),
    /// A body is over the configured bound.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A requested byte range cannot be served.
    #[error("range not satisfiable: {0}")]
    RangeInvalid(String),
    /// The tag breaks the OCI tag rules.
    #[error("tag invalid: {0}")]
    TagInvalid(String),
    /// The operation is not supported by this registry.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// No (valid) credentials were presented.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Valid credentials without the rights for this operation.
    #[error("denied: {0}")]
    Denied(String),
    /// The owner's storage quota would be exceeded (413, code `DENIED`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The local Docker Engine failed (imports).
    #[error("docker: {0}")]
    Docker(String),
    /// Disk trouble; details go to the log, not the client.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand used across the crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// The OCI error code clients match on.
    pub fn code(&self) -> &'static str {
        use RegistryError::*;
        match self {
            BlobUnknown(_) => "BLOB_UNKNOWN",
            BlobUploadInvalid(_) => "BLOB_UPLOAD_INVALID",
            BlobUploadUnknown(_) => "BLOB_UPLOAD_UNKNOWN",
            DigestInvalid(_) => "DIGEST_INVALID",
            ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            ManifestInvalid(_) => "MANIFEST_INVALID",
            ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            NameInvalid(_) => "NAME_INVALID",
            NameUnknown(_) => "NAME_UNKNOWN",
            SizeInvalid(_) | TooLarge(_) | RangeInvalid(_) => "SIZE_INVALID",
            TagInvalid(_) => "TAG_INVALID",
            Unsupported(_) => "UNSUPPORTED",
            Unauthorized(_) => "UNAUTHORIZED",
            Denied(_) | QuotaExceeded(_) => "DENIED",
            Docker(_) | Io(_) => "UNKNOWN",
        }
    }

    /// The HTTP status the distribution spec gives this error.
    pub fn status(&self) -> StatusCode {
        use RegistryError::*;
        match self {
            BlobUnknown(_) | BlobUploadUnknown(_) | ManifestUnknown(_) | NameUnknown(_) => {
                StatusCode::NOT_FOUND
            }
            BlobUploadInvalid(_)
            | DigestInvalid(_)
            | ManifestBlobUnknown(_)
            | ManifestInvalid(_)
            | NameInvalid(_)
            | SizeInvalid(_)
            | TagInvalid(_) => StatusCode::BAD_REQUEST,
            TooLarge(_) | QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RangeInvalid(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Denied(_) => StatusCode::FORBIDDEN,
            Docker(_) | Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to the client (internal details stay in the log).
    fn public_message(&self) -> String {
        match self {
            RegistryError::Io(_) | RegistryError::Docker(_) => {
                tracing::error!(error = %self, "registry internal error");
                "internal registry error; the server log has the details".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// An OCI error response with `status`, `code` and `message`; also used by
/// the API's authorisation layer so its refusals look the same.
pub fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] });
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        oci_error(self.status(), self.code(), &self.public_message())
    }
}
