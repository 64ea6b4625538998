//! Authentication: who is calling, from a JWT bearer token or a verified mTLS client
//! certificate, then the tenant context (is the tenant known, is the department its own).
//!
//! Order: a request with an `Authorization` header is judged by its token alone (a bad
//! token is 401 even with a client certificate); without one, a verified client
//! certificate's identity is used; otherwise 401.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod access_keys;
pub mod claims;
pub mod jwks;
pub mod jwt;
pub mod mtls;
pub mod sigv2;
pub mod sigv4;
pub mod token_cache;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
pub use mtls::ServiceIdentity;
use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;
pub use skyport_core::tenancy::{IdentitySource, Principal, TenantContext, TenantDirectory};

/// A SigV4 request whose head is checked ([`Authenticator::sigv4_head`]), waiting for its
/// body.
pub struct SigV4Head {
    verification: sigv4::PendingVerification,
    /// When it was signed, and for how long a presigned request holds.
    signed_at: std::time::SystemTime,
    expires: Option<u64>,
    key: Arc<access_keys::ActiveKey>,
    access_key_id: String,
    region: String,
}

impl std::fmt::Debug for SigV4Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Head")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Authenticates requests.
pub struct Authenticator {
    jwt: Arc<jwt::JwtVerifier>,
    admin_services: Vec<String>,
    access_keys: Arc<access_keys::AccessKeys>,
    max_skew: Duration,
    clock: SharedClock,
}

impl Authenticator {
    /// An authenticator over `jwt` and `access_keys`; `admin_services` get the `admin`
    /// role over mTLS; SigV4 dates may be `max_skew` away from `clock`.
    pub fn new(
        jwt: Arc<jwt::JwtVerifier>,
        admin_services: Vec<String>,
        access_keys: Arc<access_keys::AccessKeys>,
        max_skew: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            jwt,
            admin_services,
            access_keys,
            max_skew,
            clock,
        }
    }

    /// Access key `id` while it is active, or the `AuthFailure` both signature versions
    /// answer (unknown key, or the keys cannot be read now).
    async fn active_key(&self, id: &str) -> Result<Arc<access_keys::ActiveKey>, sigv4::SigV4Error> {
        self.access_keys
            .active(id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.public, cause = ?e.cause, "access key lookup failed");
                sigv4::SigV4Error::AuthFailure("access keys cannot be checked now".into())
            })?
            .ok_or_else(unknown_key)
    }

    /// Authenticates a SigV4-signed EC2 request whose body is in hand (`parts.body`),
    /// `signed` being its signature material ([`sigv4::parse_if_signed`]): its time is
    /// within the window, its access key exists and is active, and its signature matches,
    /// all in one pass. Returns the principal and the credential scope's region. The key's
    /// tenant and department are the principal's; SigV4 callers hold no roles. (For a
    /// body still on its way: [`Authenticator::sigv4_head`], then
    /// [`Authenticator::sigv4_body`].)
    pub async fn authenticate_sigv4(
        &self,
        parts: &sigv4::RequestParts<'_>,
        signed: sigv4::SignedRequest<'_>,
    ) -> Result<(Principal, String), sigv4::SigV4Error> {
        let signed_at = sigv4::signed_at(&signed)?;
        sigv4::check_time_at(signed_at, signed.expires, self.clock.wall(), self.max_skew)?;
        let key = self.active_key(&signed.access_key_id).await?;
        sigv4::verify_with_mac(parts, &signed, key.signing_mac(&signed))?;
        Ok((
            sigv4_principal(&key, signed.access_key_id.into_owned()),
            signed.region.into_owned(),
        ))
    }

    /// What can be checked of a SigV4 request before its body is read, checked once: its
    /// signing material is well formed, its time is within the window, its access key
    /// exists and is active, and all its signature covers but the body is hashed. A request
    /// that fails here is refused without reading its body; one that passes is finished
    /// by [`Authenticator::sigv4_body`].
    pub async fn sigv4_head(
        &self,
        parts: &sigv4::RequestParts<'_>,
    ) -> Result<SigV4Head, sigv4::SigV4Error> {
        let signed = sigv4::parse(parts)?;
        let signed_at = sigv4::signed_at(&signed)?;
        sigv4::check_time_at(signed_at, signed.expires, self.clock.wall(), self.max_skew)?;
        let key = self.active_key(&signed.access_key_id).await?;
        let verification =
            sigv4::PendingVerification::new(parts, &signed, key.signing_mac(&signed))?;
        Ok(SigV4Head {
            verification,
            signed_at,
            expires: signed.expires,
            key,
            access_key_id: signed.access_key_id.into_owned(),
            region: signed.region.into_owned(),
        })
    }

    /// Finishes what [`Authenticator::sigv4_head`] began with the request's body
    /// (`parts.body`); returns the principal and the credential scope's region.
    pub fn sigv4_body(
        &self,
        head: SigV4Head,
        parts: &sigv4::RequestParts<'_>,
    ) -> Result<(Principal, String), sigv4::SigV4Error> {
        // Judged again: the body may have taken its time (a presigned URL may expire).
        sigv4::check_time_at(
            head.signed_at,
            head.expires,
            self.clock.wall(),
            self.max_skew,
        )?;
        if head.key.is_revoked() {
            // Revoked while its body was on its way: refused as an unknown key is.
            return Err(unknown_key());
        }
        if let Err(refused) = head.verification.finish(parts.body) {
            if let (sigv4::SigV4Error::Mismatch(_), Ok(signed)) = (&refused, sigv4::parse(parts)) {
                sigv4::explain_mismatch(parts, &signed);
            }
            return Err(refused);
        }
        Ok((sigv4_principal(&head.key, head.access_key_id), head.region))
    }

    /// Authenticates a SigV2-signed EC2 request: `params` are its decoded query and form
    /// parameters, `host` its `Host` (or authority) as sent. The key's tenant and
    /// department are the principal's. SigV2 carries no region: the caller chooses one.
    pub async fn authenticate_sigv2(
        &self,
        method: &str,
        host: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<(Principal, sigv2::SignatureMethod), sigv4::SigV4Error> {
        let signed = sigv2::parse(params)?;
        let key = self.active_key(&signed.access_key_id).await?;
        let string_to_sign = sigv2::string_to_sign(method, host, path, params);
        sigv2::verify(&key.secret, &signed, &string_to_sign)?;
        sigv2::check_time(&signed, self.clock.wall(), self.max_skew)?;
        Ok((
            Principal {
                tenant: key.tenant.clone(),
                department: key.department.clone(),
                roles: Vec::new(),
                subject: signed.access_key_id,
                source: IdentitySource::Sigv2,
            },
            signed.method,
        ))
    }

    /// The JWT verifier (for reloads and metrics).
    pub fn jwt(&self) -> &Arc<jwt::JwtVerifier> {
        &self.jwt
    }

    /// Authenticates from the headers and the connection's verified client identity.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&ServiceIdentity>,
    ) -> Result<Principal, GatewayError> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| GatewayError::unauthenticated("malformed Authorization header"))?;
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| {
                    GatewayError::unauthenticated("Authorization must be a Bearer token")
                })?
                .trim();
            let claims = self.jwt.verify(token).await?;
            if claims.skyport_use.is_some() {
                return Err(GatewayError::unauthenticated(
                    "this token is a console sign-in link, not an API token",
                ));
            }
            return Ok(Principal {
                tenant: claims.tenant.clone(),
                department: claims.dept.clone(),
                roles: claims.roles.clone(),
                subject: claims.sub.clone(),
                source: IdentitySource::Jwt,
            });
        }
        if let Some(identity) = peer {
            let roles = if self.admin_services.contains(&identity.service) {
                vec!["admin".to_string()]
            } else {
                Vec::new()
            };
            return Ok(Principal {
                tenant: identity.tenant.clone(),
                department: None,
                roles,
                subject: identity.service.clone(),
                source: IdentitySource::Mtls,
            });
        }
        Err(GatewayError::unauthenticated(
            "authentication required: send a Bearer token or a client certificate",
        ))
    }
}

/// EC2's refusal of an access key it does not know, or no longer knows (revoked): both
/// signature versions answer it, in the same words.
fn unknown_key() -> sigv4::SigV4Error {
    sigv4::SigV4Error::AuthFailure(
        "the access key id you provided does not exist in our records".into(),
    )
}

/// The principal of a request signed (SigV4) with `key`, whose id is `access_key_id`: the
/// key's tenant and department; SigV4 callers hold no roles.
fn sigv4_principal(key: &access_keys::ActiveKey, access_key_id: String) -> Principal {
    Principal {
        tenant: key.tenant.clone(),
        department: key.department.clone(),
        roles: Vec::new(),
        subject: access_key_id,
        source: IdentitySource::Sigv4,
    }
}
