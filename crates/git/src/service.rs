//! Which smart-HTTP endpoint a request is for, and the access it needs.

use slipway_domain::Access;

/// The smart HTTP endpoints Slipway serves; everything else (the "dumb"
/// protocol's raw object paths) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `GET info/refs?service=git-upload-pack`: ref advertisement for fetch/clone.
    UploadPackRefs,
    /// `GET info/refs?service=git-receive-pack`: ref advertisement for push.
    ReceivePackRefs,
    /// `POST git-upload-pack`: fetch/clone negotiation and pack.
    UploadPack,
    /// `POST git-receive-pack`: the push itself.
    ReceivePack,
}

impl Service {
    /// Recognises the endpoint from the path after `<repo>.git/`, the method and
    /// the query string.
    pub fn detect(rest: &str, method: &str, query: &str) -> Option<Self> {
        let service_param = query.split('&').find_map(|kv| kv.strip_prefix("service="));
        match (method, rest) {
            ("GET", "info/refs") => match service_param {
                Some("git-upload-pack") => Some(Service::UploadPackRefs),
                Some("git-receive-pack") => Some(Service::ReceivePackRefs),
                _ => None,
            },
            ("POST", "git-upload-pack") => Some(Service::UploadPack),
            ("POST", "git-receive-pack") => Some(Service::ReceivePack),
            _ => None,
        }
    }

    /// The repository access this endpoint needs.
    pub fn required_access(self) -> Access {
        match self {
            Service::UploadPackRefs | Service::UploadPack => Access::Read,
            Service::ReceivePackRefs | Service::ReceivePack => Access::Write,
        }
    }

    /// True for the request that actually updates refs.
    pub fn is_push(self) -> bool {
        self == Service::ReceivePack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_endpoints() {
        assert_eq!(
            Service::detect("info/refs", "GET", "service=git-upload-pack"),
            Some(Service::UploadPackRefs)
        );
        assert_eq!(
            Service::detect("info/refs", "GET", "service=git-receive-pack"),
            Some(Service::ReceivePackRefs)
        );
        assert_eq!(
            Service::detect("git-receive-pack", "POST", ""),
            Some(Service::ReceivePack)
        );
        assert_eq!(Service::detect("info/refs", "GET", ""), None);
        assert_eq!(Service::detect("objects/info/packs", "GET", ""), None);
        assert_eq!(Service::detect("git-upload-pack", "GET", ""), None);
        assert_eq!(Service::ReceivePackRefs.required_access(), Access::Write);
        assert_eq!(Service::UploadPack.required_access(), Access::Read);
    }
}
