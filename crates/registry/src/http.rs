//! The OCI distribution API over a [`Registry`]: everything Docker Engine
//! needs to pull and push. Repository names contain slashes, so one
//! wildcard route takes every `/v2/...` path and [`Endpoint::parse`] splits it.

use crate::error::{RegistryError, Result};
use crate::names::{validate_name, Digest};
use crate::Registry;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http_body_util::BodyExt;
use std::collections::HashMap;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";
const API_VERSION: &str = "docker-distribution-api-version";

/// What a `/v2/...` path addresses; the API's authorisation layer uses it
/// too, to know which repository a request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: the version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<repo>/tags/list`.
    Tags {
        /// Repository name.
        repo: String,
    },
    /// `/v2/<repo>/manifests/<reference>`.
    Manifest {
        /// Repository name.
        repo: String,
        /// Tag or digest.
        reference: String,
    },
    /// `/v2/<repo>/blobs/<digest>`.
    Blob {
        /// Repository name.
        repo: String,
        /// The digest as written in the URL.
        digest: String,
    },
    /// `/v2/<repo>/blobs/uploads/`: start an upload.
    Uploads {
        /// Repository name.
        repo: String,
    },
    /// `/v2/<repo>/blobs/uploads/<id>`: an upload session.
    Upload {
        /// Repository name.
        repo: String,
        /// Session id.
        id: String,
    },
}

impl Endpoint {
    /// Classifies a request path (with its `/v2` prefix); `None` for paths
    /// the API does not define. Names are not validated here.
    pub fn parse(path: &str) -> Option<Endpoint> {
        let tail = path.strip_prefix("/v2")?;
        if tail.is_empty() || tail == "/" {
            return Some(Endpoint::Base);
        }
        let tail = tail.strip_prefix('/')?;
        let owned = |s: &str| s.to_owned();
        if tail == "_catalog" {
            return Some(Endpoint::Catalog);
        }
        if let Some(repo) = tail.strip_suffix("/tags/list") {
            return Some(Endpoint::Tags { repo: owned(repo) });
        }
        if let Some((repo, reference)) = tail.rsplit_once("/manifests/") {
            return Some(Endpoint::Manifest {
                repo: owned(repo),
                reference: owned(reference),
            });
        }
        if let Some(repo) = tail
            .strip_suffix("/blobs/uploads/")
            .or_else(|| tail.strip_suffix("/blobs/uploads"))
        {
            return Some(Endpoint::Uploads { repo: owned(repo) });
        }
        if let Some((repo, id)) = tail.rsplit_once("/blobs/uploads/") {
            return Some(Endpoint::Upload {
                repo: owned(repo),
                id: owned(id),
            });
        }
        if let Some((repo, digest)) = tail.rsplit_once("/blobs/") {
            return Some(Endpoint::Blob {
                repo: owned(repo),
                digest: owned(digest),
            });
        }
        None
    }

    /// The repository the request touches, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags { repo }
            | Endpoint::Manifest { repo, .. }
            | Endpoint::Blob { repo, .. }
            | Endpoint::Uploads { repo }
            | Endpoint::Upload { repo, .. } => Some(repo),
        }
    }
}

/// The distribution API for `registry`, to serve at the root of a server
/// (it answers `/v2/...` only). It does no authorisation: the embedding
/// server wraps it (see Slipway's API crate).
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .layer(axum::middleware::map_response(|mut res: Response| async {
            res.headers_mut().insert(
                HeaderName::from_static(API_VERSION),
                HeaderValue::from_static("registry/2.0"),
            );
            res
        }))
        .with_state(registry)
}

async fn dispatch(State(registry): State<Registry>, request: Request) -> Response {
    match handle(&registry, request).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

type Params = HashMap<String, String>;

fn params(uri: &Uri) -> Params {
    Query::<Params>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

async fn handle(registry: &Registry, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let q = params(&parts.uri);
    let endpoint = Endpoint::parse(parts.uri.path())
        .ok_or_else(|| RegistryError::NameUnknown("no such registry endpoint".into()))?;
    if let Some(repo) = endpoint.repository() {
        validate_name(repo)?;
    }
    let unsupported = || {
        Err(RegistryError::Unsupported(format!(
            "{method} is not supported on this endpoint"
        )))
    };
    let mut body = Some(body);
    let mut take_body = || body.take().unwrap_or_default();
    let mut stream = || take_body().into_data_stream();
    match (&endpoint, &method) {
        (Endpoint::Base, &Method::GET | &Method::HEAD) => Ok(json_response(StatusCode::OK, "{}")),
        (Endpoint::Catalog, &Method::GET) => {
            Ok(catalog_response(registry.repositories().await?, &q))
        }
        (Endpoint::Tags { repo }, &Method::GET) => {
            let tags = registry.tags(repo).await?;
            let (page, link) = paginate(tags, &q, &format!("/v2/{repo}/tags/list"));
            let body = serde_json::json!({ "name": repo, "tags": page }).to_string();
            Ok(with_link(json_response(StatusCode::OK, &body), link))
        }
        (Endpoint::Manifest { repo, reference }, &Method::GET | &Method::HEAD) => {
            let m = registry.get_manifest(repo, reference).await?;
            let mut res = Response::builder()
                .header(header::CONTENT_TYPE, &m.media_type)
                .header(DIGEST_HEADER, m.digest.to_string())
                .header(header::ETAG, format!("\"{}\"", m.digest))
                .header(header::CONTENT_LENGTH, m.body.len());
            if method == Method::HEAD {
                res = res.status(StatusCode::OK);
                return Ok(res.body(Body::empty()).expect("valid response"));
            }
            Ok(res.body(Body::from(m.body)).expect("valid response"))
        }
        (Endpoint::Manifest { repo, reference }, &Method::PUT) => {
            let max = registry.limits().max_manifest_bytes;
            let bytes = http_body_util::Limited::new(take_body(), max)
                .collect()
                .await
                .map_err(|_| RegistryError::TooLarge(format!("manifest is over {max} bytes")))?
                .to_bytes();
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let digest = registry
                .put_manifest(repo, reference, &bytes, content_type)
                .await?;
            Ok(created(format!("/v2/{repo}/manifests/{digest}"), &digest))
        }
        (Endpoint::Manifest { repo, reference }, &Method::DELETE) => {
            registry.delete_manifest(repo, reference).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::Blob { repo, digest }, &Method::GET | &Method::HEAD) => {
            let digest = Digest::parse(digest)?;
            serve_blob(registry, repo, &digest, &method, &parts.headers).await
        }
        (Endpoint::Uploads { repo }, &Method::POST) => {
            if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
                let d = Digest::parse(mount)?;
                if registry.mount_blob(repo, from, &d).await? {
                    return Ok(created(format!("/v2/{repo}/blobs/{d}"), &d));
                }
            }
            if let Some(d) = q.get("digest") {
                let d = Digest::parse(d)?;
                registry.put_blob_stream(repo, &d, stream()).await?;
                return Ok(created(format!("/v2/{repo}/blobs/{d}"), &d));
            }
            let id = registry.start_upload(repo).await?;
            Ok(upload_progress(repo, &id, 0))
        }
        (Endpoint::Upload { repo, id }, &Method::GET) => {
            let size = registry.upload_size(repo, id).await?;
            let mut res = upload_progress(repo, id, size);
            *res.status_mut() = StatusCode::NO_CONTENT;
            Ok(res)
        }
        (Endpoint::Upload { repo, id }, &Method::PATCH) => {
            let start = match parts.headers.get(header::CONTENT_RANGE) {
                Some(v) => Some(parse_content_range(v)?),
                None => None,
            };
            let size = registry.append_upload(repo, id, start, stream()).await?;
            Ok(upload_progress(repo, id, size))
        }
        (Endpoint::Upload { repo, id }, &Method::PUT) => {
            let d = q.get("digest").ok_or_else(|| {
                RegistryError::DigestInvalid("completing an upload needs ?digest=".into())
            })?;
            let d = Digest::parse(d)?;
            registry.finish_upload(repo, id, &d, stream()).await?;
            Ok(created(format!("/v2/{repo}/blobs/{d}"), &d))
        }
        (Endpoint::Upload { repo, id }, &Method::DELETE) => {
            registry.cancel_upload(repo, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => unsupported(),
    }
}

fn json_response(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_owned(),
    )
        .into_response()
}

fn created(location: String, digest: &Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, location)
        .header(DIGEST_HEADER, digest.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

fn upload_progress(repo: &str, id: &str, size: u64) -> Response {
    let end = size.saturating_sub(1);
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/uploads/{id}"))
        .header(header::RANGE, format!("0-{end}"))
        .header(UPLOAD_UUID, id)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

/// `Content-Range: <start>-<end>` of a chunk; returns the start.
fn parse_content_range(v: &HeaderValue) -> Result<u64> {
    let bad = || RegistryError::RangeInvalid("Content-Range must be <start>-<end>".into());
    let s = v.to_str().map_err(|_| bad())?;
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let (start, end) = s.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end
        .split('/')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(start)
}

/// A single `bytes=a-b` / `bytes=a-` / `bytes=-n` range within `size`.
fn parse_range(v: &HeaderValue, size: u64) -> Option<(u64, u64)> {
    let spec = v.to_str().ok()?.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.checked_sub(n.min(size))?, size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (start <= end && end < size).then_some((start, end))
}

async fn serve_blob(
    registry: &Registry,
    repo: &str,
    digest: &Digest,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response> {
    let (mut file, size) = registry.open_blob(repo, digest).await?;
    let range = match headers.get(header::RANGE) {
        Some(v) => Some(
            parse_range(v, size)
                .ok_or_else(|| RegistryError::RangeInvalid(format!("the blob has {size} bytes")))?,
        ),
        None => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut res = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(DIGEST_HEADER, digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, len);
    if range.is_some() {
        res = res.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    if *method == Method::HEAD {
        return Ok(res.body(Body::empty()).expect("valid response"));
    }
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let reader = file.take(len);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
    Ok(res.body(Body::from_stream(stream)).expect("valid response"))
}

/// Applies the spec's `n` / `last` pagination; returns the page and the
/// `Link` to the next one, if any.
fn paginate(
    all: Vec<String>,
    q: &HashMap<String, String>,
    path: &str,
) -> (Vec<String>, Option<String>) {
    let last = q.get("last");
    let mut rest: Vec<String> = all
        .into_iter()
        .filter(|x| last.is_none_or(|l| x.as_str() > l.as_str()))
        .collect();
    let Some(n) = q.get("n").and_then(|n| n.parse::<usize>().ok()) else {
        return (rest, None);
    };
    let more = rest.len() > n;
    rest.truncate(n);
    let link = match rest.last() {
        Some(l) if more => Some(format!("<{path}?last={l}&n={n}>; rel=\"next\"")),
        _ => None,
    };
    (rest, link)
}

fn with_link(mut res: Response, link: Option<String>) -> Response {
    if let Some(v) = link.and_then(|l| HeaderValue::try_from(l).ok()) {
        res.headers_mut().insert(header::LINK, v);
    }
    res
}

/// The `GET /v2/_catalog` answer for `repositories` (already filtered to
/// what the caller may see), honouring `n` and `last` from the query.
pub fn catalog_response(repositories: Vec<String>, query: &HashMap<String, String>) -> Response {
    let (page, link) = paginate(repositories, query, "/v2/_catalog");
    let body = serde_json::json!({ "repositories": page }).to_string();
    with_link(json_response(StatusCode::OK, &body), link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(Endpoint::parse("/v2/"), Some(Endpoint::Base));
        assert_eq!(Endpoint::parse("/v2/_catalog"), Some(Endpoint::Catalog));
        assert_eq!(
            Endpoint::parse("/v2/a/b/manifests/v1"),
            Some(Endpoint::Manifest {
                repo: "a/b".into(),
                reference: "v1".into()
            })
        );
        assert_eq!(
            Endpoint::parse("/v2/a/b/blobs/uploads/"),
            Some(Endpoint::Uploads { repo: "a/b".into() })
        );
        assert_eq!(
            Endpoint::parse("/v2/a/blobs/uploads/xyz"),
            Some(Endpoint::Upload {
                repo: "a".into(),
                id: "xyz".into()
            })
        );
        assert_eq!(
            Endpoint::parse("/v2/a/tags/list"),
            Some(Endpoint::Tags { repo: "a".into() })
        );
        assert_eq!(Endpoint::parse("/v3/a"), None);
        assert_eq!(Endpoint::parse("/v2/a/b"), None);
    }

    #[test]
    fn ranges() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(parse_range(&v("bytes=0-9"), 100), Some((0, 9)));
        assert_eq!(parse_range(&v("bytes=90-"), 100), Some((90, 99)));
        assert_eq!(parse_range(&v("bytes=-10"), 100), Some((90, 99)));
        assert_eq!(parse_range(&v("bytes=100-"), 100), None);
        assert_eq!(parse_range(&v("bytes=5-1"), 100), None);
        assert_eq!(parse_content_range(&v("0-99")).unwrap(), 0);
        assert!(parse_content_range(&v("x")).is_err());
    }
}
