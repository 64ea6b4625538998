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
    hex::encode(hmac(
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
    mut mac: HmacSha256,
) -> Result<(), SigV4Error> {
    let mut claimed = [0u8; 32];
    hex::decode_to_slice(signed.signature.as_bytes(), &mut claimed)
        .map_err(|_| SigV4Error::Mismatch("the signature is not a 64-digit hex string".into()))?;
    let canonical = canonical_request(parts, signed)?;
    write_string_to_sign(signed, &canonical, |part| mac.update(part));
    // `verify_slice` compares in constant time.
    if mac.verify_slice(&claimed).is_ok() {
        return Ok(());
    }
    // The canonical request holds no secret; it is what a client author needs to find
    // where their signer differs.
    tracing::debug!(access_key_id = %signed.access_key_id, canonical_request = %canonical, "SigV4 signature mismatch");
    Err(SigV4Error::Mismatch(
        "the request signature we calculated does not match the signature you provided; check your secret access key and signing method".into(),
    ))
}
