//! The signing key, the signature, and its constant-time verification.

use super::*;

/// The signing key of `secret` for this request's scope (date and region): the same for
/// every request of that key, day and region, which is why callers may cache it.
pub fn signing_key(secret: &str, signed: &SignedRequest) -> Vec<u8> {
    let k_date = hmac(
        format!("AWS4{secret}").as_bytes(),
        signed.scope_date.as_bytes(),
    );
    let k_region = hmac(&k_date, signed.region.as_bytes());
    let k_service = hmac(&k_region, SERVICE.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The hex signature of `string_to_sign` with `secret` (used by clients and tests).
pub fn sign(secret: &str, signed: &SignedRequest, string_to_sign: &str) -> String {
    const_hex::encode(hmac(
        &signing_key(secret, signed),
        string_to_sign.as_bytes(),
    ))
}

/// An HMAC keyed with the signing key of `secret` for this request's scope: what a caller
/// keeps per date and region (keying it costs two SHA-256 blocks a request otherwise).
pub fn signing_mac(secret: &str, signed: &SignedRequest) -> HmacSha256 {
    HmacSha256::new_from_slice(&signing_key(secret, signed)).expect("HMAC takes keys of any length")
}

/// Recomputes the signature with `secret` and compares it in constant time.
pub fn verify(
    parts: &RequestParts<'_>,
    signed: &SignedRequest,
    secret: &str,
) -> Result<(), SigV4Error> {
    verify_with_mac(parts, signed, signing_mac(secret, signed))
}

/// [`verify`] with the scope's [`signing_mac`] already made.
pub fn verify_with_mac(
    parts: &RequestParts<'_>,
    signed: &SignedRequest,
    mac: HmacSha256,
) -> Result<(), SigV4Error> {
    let verified = PendingVerification::new(parts, signed, mac)?.finish(parts.body);
    if let Err(SigV4Error::Mismatch(_)) = &verified {
        explain_mismatch(parts, signed);
    }
    verified
}

/// What a canonical request's head usually takes (its buffer's first size).
const SIGNED_TEXT_BYTES: usize = 512;
/// The most a thread keeps of a longer one's buffer.
const MAX_KEPT_TEXT: usize = 8 * 1024;

thread_local! {
    /// The signed text being written, on this thread: the canonical request's head, then
    /// the string to sign's.
    static SIGNED_TEXT: std::cell::RefCell<String> =
        std::cell::RefCell::new(String::with_capacity(SIGNED_TEXT_BYTES));
}

/// A verification split where the body starts: [`PendingVerification::new`] hashes all
/// the signature covers but the body, from the request's head (before its body is read);
/// [`PendingVerification::finish`] hashes the body and compares. The canonical request is
/// hashed once its head is written; the head is not kept.
#[derive(Clone)]
pub struct PendingVerification {
    /// The canonical request's hash, fed up to its last line (the payload's).
    canonical: Sha256,
    /// What the request declares of its payload.
    payload: canonical::Payload,
    /// Keyed with the signing key, fed the string to sign up to its last line.
    mac: HmacSha256,
    /// The signature the request carries.
    claimed: [u8; 32],
}

impl PendingVerification {
    /// The head's share of verifying `signed` (`parts.body` is not read), with `mac`, the
    /// scope's [`signing_mac`].
    pub fn new(
        parts: &RequestParts<'_>,
        signed: &SignedRequest,
        mut mac: HmacSha256,
    ) -> Result<Self, SigV4Error> {
        let mut claimed = [0u8; 32];
        const_hex::decode_to_slice(signed.signature.as_bytes(), &mut claimed).map_err(|_| {
            SigV4Error::Mismatch("the signature is not a 64-digit hex string".into())
        })?;
        // Written out, then hashed at once: cheaper than feeding a hash piece by piece;
        // into this thread's buffer, which each verification on it reuses.
        let mut canonical = Sha256::new();
        let payload = SIGNED_TEXT.with_borrow_mut(|text| {
            text.clear();
            let payload =
                canonical::write_canonical_head(parts, signed, |piece| text.push_str(piece));
            canonical.update(text.as_bytes());
            text.clear();
            canonical::write_string_to_sign_head(signed, |piece| text.push_str(piece));
            mac.update(text.as_bytes());
            if text.capacity() > MAX_KEPT_TEXT {
                *text = String::with_capacity(SIGNED_TEXT_BYTES);
            }
            payload
        })?;
        Ok(Self {
            canonical,
            payload,
            mac,
            claimed,
        })
    }

    /// Hashes `body` into the canonical request and compares the signature it yields with
    /// the request's, in constant time.
    pub fn finish(mut self, body: &[u8]) -> Result<(), SigV4Error> {
        let mut hex_buffer = [0u8; 64];
        self.canonical
            .update(self.payload.line(body, &mut hex_buffer)?.as_bytes());
        const_hex::encode_to_slice(self.canonical.finalize(), &mut hex_buffer)
            .expect("64 bytes hold a SHA-256 in hex");
        self.mac.update(&hex_buffer);
        // Compared in constant time by aws-lc: about 50 instructions, where `verify_slice`
        // (`subtle`, a byte at a time behind an optimisation barrier) took about 400.
        let computed = self.mac.finalize().into_bytes();
        aws_lc_rs::constant_time::verify_slices_are_equal(&computed, &self.claimed).map_err(|_| {
            SigV4Error::Mismatch(
                "the request signature we calculated does not match the signature you provided; check your secret access key and signing method".into(),
            )
        })
    }
}

/// Logs the canonical request of a request whose signature did not match, at debug level:
/// it holds no secret, and it is what a client author needs to find where their signer
/// differs.
pub fn explain_mismatch(parts: &RequestParts<'_>, signed: &SignedRequest) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        if let Ok(canonical) = canonical_request(parts, signed) {
            tracing::debug!(access_key_id = %signed.access_key_id, canonical_request = %canonical, "SigV4 signature mismatch");
        }
    }
}
