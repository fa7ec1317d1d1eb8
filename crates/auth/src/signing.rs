//! Signed webhook bodies, shared by every part that calls out (CI pipeline
//! webhooks, alert notifications), so receivers verify them all one way.
//!
//! `X-Slipway-Signature-256: sha256=<hex>` is the HMAC-SHA256 of the exact
//! body under the webhook's secret (the scheme GitHub uses), and
//! `X-Slipway-Event` names what happened.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Slipway-Signature-256";
/// Header naming the event (`pipeline`, `alert`, `ping`).
pub const EVENT_HEADER: &str = "X-Slipway-Event";
/// Header carrying the delivery id, the same on every retry of one delivery.
pub const DELIVERY_HEADER: &str = "X-Slipway-Delivery";

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` under `secret`, compared in
/// constant time (for receivers written in Rust, and tests).
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // HMAC-SHA256("Jefe", "what do ya want for nothing?")
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let sig = signature("k", b"body");
        assert!(verify("k", b"body", &sig));
        assert!(!verify("k", b"body2", &sig));
        assert!(!verify("other", b"body", &sig));
        assert!(!verify("k", b"body", "sha1=00"));
        assert!(!verify("k", b"body", "sha256=zz"));
    }
}
