//! mTLS identity: the URI SAN `spiffe://<trust-domain>/tenant/<tenant>/svc/<name>` of a
//! client certificate that rustls has already verified against the client CA.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Identity carried by a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// Tenant the service acts for.
    pub tenant: String,
    /// Service name.
    pub service: String,
}

/// Extracts the identity from a verified leaf certificate (DER). `None` when the
/// certificate carries no URI SAN of `trust_domain` in the expected shape.
pub fn identity_from_certificate(der: &[u8], trust_domain: &str) -> Option<ServiceIdentity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => parse_spiffe_uri(uri, trust_domain),
        _ => None,
    })
}

/// Parses `spiffe://<trust_domain>/tenant/<tenant>/svc/<service>`.
pub fn parse_spiffe_uri(uri: &str, trust_domain: &str) -> Option<ServiceIdentity> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    if domain != trust_domain {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["tenant", tenant, "svc", service]
            if skyport_core::config::valid_name(tenant)
                && skyport_core::config::valid_name(service) =>
        {
            Some(ServiceIdentity {
                tenant: tenant.to_string(),
                service: service.to_string(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_uri_shapes() {
        assert_eq!(
            parse_spiffe_uri("spiffe://skyport/tenant/demo/svc/billing", "skyport"),
            Some(ServiceIdentity {
                tenant: "demo".into(),
                service: "billing".into()
            })
        );
        assert_eq!(
            parse_spiffe_uri("spiffe://other/tenant/demo/svc/x", "skyport"),
            None
        );
        assert_eq!(
            parse_spiffe_uri("spiffe://skyport/tenant/demo", "skyport"),
            None
        );
        assert_eq!(
            parse_spiffe_uri("spiffe://skyport/tenant/Demo/svc/x", "skyport"),
            None
        );
        assert_eq!(
            parse_spiffe_uri("spiffe://skyport/tenant/demo/svc/x/extra", "skyport"),
            None
        );
    }
}
