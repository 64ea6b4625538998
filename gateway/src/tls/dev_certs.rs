//! Development certificates and keys, created with rcgen on first start (or by
//! `skyport certs init`): a CA, a server certificate for localhost, an mTLS client
//! certificate for tenant `demo`, and an ES256 JWT signing key.
//!
//! Idempotent: existing files are kept; a missing file is created from the existing CA.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// File names inside the development certificate directory.
pub mod files {
    /// CA certificate.
    pub const CA: &str = "ca.pem";
    /// CA private key.
    pub const CA_KEY: &str = "ca-key.pem";
    /// Server certificate (localhost, 127.0.0.1).
    pub const SERVER: &str = "server.pem";
    /// Server private key.
    pub const SERVER_KEY: &str = "server-key.pem";
    /// mTLS client certificate of tenant `demo`.
    pub const CLIENT_DEMO: &str = "client-demo.pem";
    /// Its private key.
    pub const CLIENT_DEMO_KEY: &str = "client-demo-key.pem";
    /// ES256 JWT signing key (PKCS#8).
    pub const JWT_SIGNING_KEY: &str = "jwt-signing-key.pem";
    /// Matching public key (SPKI).
    pub const JWT_PUBLIC: &str = "jwt-public.pem";
}

/// `kid` of the development JWT key.
pub const DEV_JWT_KID: &str = "skyport-dev";

/// What [`ensure`] did.
#[derive(Debug, Default)]
pub struct DevMaterial {
    /// The directory.
    pub dir: PathBuf,
    /// Files created now (empty when everything existed).
    pub created: Vec<&'static str>,
}

/// Creates whatever development material is missing in `dir`.
pub fn ensure(dir: &Path, trust_domain: &str) -> anyhow::Result<DevMaterial> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let mut created = Vec::new();

    let ca_paths = (dir.join(files::CA), dir.join(files::CA_KEY));
    let issuer = if ca_paths.0.exists() && ca_paths.1.exists() {
        let key = KeyPair::from_pem(&fs::read_to_string(&ca_paths.1)?)?;
        Issuer::from_ca_cert_pem(&fs::read_to_string(&ca_paths.0)?, key)?
    } else {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = dn("Skyport development CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        write_file(&ca_paths.0, cert.pem().as_bytes(), 0o644)?;
        write_file(&ca_paths.1, key.serialize_pem().as_bytes(), 0o600)?;
        created.extend([files::CA, files::CA_KEY]);
        Issuer::new(params, key)
    };

    if !dir.join(files::SERVER).exists() || !dir.join(files::SERVER_KEY).exists() {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        params.distinguished_name = dn("localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        write_file(&dir.join(files::SERVER), cert.pem().as_bytes(), 0o644)?;
        write_file(
            &dir.join(files::SERVER_KEY),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        created.extend([files::SERVER, files::SERVER_KEY]);
    }

    if !dir.join(files::CLIENT_DEMO).exists() || !dir.join(files::CLIENT_DEMO_KEY).exists() {
        let (cert, key) = client_certificate(&issuer, trust_domain, "demo", "demo-cli")?;
        write_file(&dir.join(files::CLIENT_DEMO), cert.as_bytes(), 0o644)?;
        write_file(&dir.join(files::CLIENT_DEMO_KEY), key.as_bytes(), 0o600)?;
        created.extend([files::CLIENT_DEMO, files::CLIENT_DEMO_KEY]);
    }

    if !dir.join(files::JWT_SIGNING_KEY).exists() || !dir.join(files::JWT_PUBLIC).exists() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        write_file(
            &dir.join(files::JWT_SIGNING_KEY),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_file(
            &dir.join(files::JWT_PUBLIC),
            key.public_key_pem().as_bytes(),
            0o644,
        )?;
        created.extend([files::JWT_SIGNING_KEY, files::JWT_PUBLIC]);
    }

    Ok(DevMaterial {
        dir: dir.to_path_buf(),
        created,
    })
}

/// Issues a client certificate with the URI SAN
/// `spiffe://<trust_domain>/tenant/<tenant>/svc/<service>`; returns (cert PEM, key PEM).
pub fn client_certificate(
    issuer: &Issuer<'_, KeyPair>,
    trust_domain: &str,
    tenant: &str,
    service: &str,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let uri = format!("spiffe://{trust_domain}/tenant/{tenant}/svc/{service}");
    params
        .subject_alt_names
        .push(SanType::URI(uri.as_str().try_into()?));
    params.distinguished_name = dn(service);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Skyport development");
    dn
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_everything_once() {
        let dir = std::env::temp_dir().join(format!("skyport-devcerts-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = ensure(&dir, "skyport").unwrap();
        assert_eq!(first.created.len(), 8);
        let ca_before = fs::read(dir.join(files::CA)).unwrap();
        fs::remove_file(dir.join(files::SERVER)).unwrap();
        let second = ensure(&dir, "skyport").unwrap();
        assert_eq!(second.created, vec![files::SERVER, files::SERVER_KEY]);
        assert_eq!(fs::read(dir.join(files::CA)).unwrap(), ca_before);
        let mode = fs::metadata(dir.join(files::JWT_SIGNING_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
