//! Git hosting.
//!
//! Repositories are bare git directories under `<data>/repos/<owner>/<name>.git`.
//! They are served over the smart HTTP protocol by git's own `http-backend`
//! (the same program Gitea, cgit setups and nginx+fcgiwrap use), run as a CGI
//! child per request with its input and output streamed, never buffered whole.
//! Authorisation happens before this crate is called; this crate only decides
//! which access a request needs ([`Service::required_access`]) and reports the
//! ref updates of an accepted push through a server-wide `post-receive` hook.
//! [`browse`] reads repositories for the API: branches, history, trees, files.

pub mod browse;
mod busy;
mod cgi;
mod head;
mod host;
mod journal;
mod service;

pub use cgi::{GitRequest, GitResponse, PushCompletion};
pub use head::SetHeadError;
pub use host::{GitError, GitHost};
pub use journal::InterruptedPush;
pub use service::Service;
