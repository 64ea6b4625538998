//! SSH key material: new key pairs (RSA 2048, Ed25519), OpenSSH public key lines checked
//! and parsed, and OpenSSH fingerprints (`SHA256:` and the unpadded base64 SHA-256 of the
//! public key blob, as `ssh-keygen -l` prints).

use base64::Engine;
use sha2::{Digest, Sha256};
use skyport_core::error::GatewayError;
use x509_parser::prelude::FromDer;

use super::KeyType;

/// `SHA256:` + unpadded base64 of the SHA-256 of an SSH public key blob.
pub(super) fn fingerprint(blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(blob))
    )
}

/// Key type name and wire blob of an OpenSSH public key line; 400 for anything else.
pub(super) fn parse_public_key(line: &str) -> Result<(String, Vec<u8>), GatewayError> {
    let bad = || {
        GatewayError::invalid(
            "the public key must be an OpenSSH public key line (ssh-rsa, ssh-ed25519 or ecdsa-sha2-nistp256/384/521)",
        )
    };
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(bad());
    };
    let key_type = match kind {
        "ssh-rsa" => "rsa",
        "ssh-ed25519" => "ed25519",
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => "ecdsa",
        _ => return Err(bad()),
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    // The blob starts with its own type name; a mismatch means a corrupted or forged line.
    let named = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .ok_or_else(bad)?;
    if named != kind.as_bytes() {
        return Err(bad());
    }
    Ok((key_type.to_string(), blob))
}

fn ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn ssh_mpint(out: &mut Vec<u8>, big_endian: &[u8]) {
    let trimmed: &[u8] = {
        let start = big_endian
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(big_endian.len());
        &big_endian[start..]
    };
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        let mut padded = vec![0u8];
        padded.extend_from_slice(trimmed);
        ssh_string(out, &padded);
    } else {
        ssh_string(out, trimmed);
    }
}

/// A new key pair: (OpenSSH public key line, PKCS#8 PEM private key).
pub(super) fn generate(key_type: KeyType) -> Result<(String, String), GatewayError> {
    let alg = match key_type {
        KeyType::Rsa => &rcgen::PKCS_RSA_SHA256,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
    };
    let pair = rcgen::KeyPair::generate_for(alg).map_err(GatewayError::internal)?;
    let mut blob = Vec::new();
    let kind = match key_type {
        KeyType::Rsa => {
            let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
            let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki)
                .map_err(GatewayError::internal)?;
            let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = info.parsed() else {
                return Err(GatewayError::internal("generated RSA key did not parse"));
            };
            ssh_string(&mut blob, b"ssh-rsa");
            ssh_mpint(&mut blob, rsa.exponent);
            ssh_mpint(&mut blob, rsa.modulus);
            "ssh-rsa"
        }
        KeyType::Ed25519 => {
            ssh_string(&mut blob, b"ssh-ed25519");
            ssh_string(&mut blob, pair.public_key_raw());
            "ssh-ed25519"
        }
    };
    let line = format!(
        "{kind} {}",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    Ok((line, pair.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_keys_are_valid_openssh_lines_with_their_fingerprint() {
        for (kind, prefix) in [
            (KeyType::Ed25519, "ssh-ed25519 "),
            (KeyType::Rsa, "ssh-rsa "),
        ] {
            let (line, private) = generate(kind).unwrap();
            assert!(line.starts_with(prefix), "{line}");
            assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
            let (_, blob) = parse_public_key(&line).unwrap();
            assert!(fingerprint(&blob).starts_with("SHA256:"));
        }
    }

    #[test]
    fn public_keys_must_be_openssh_lines_whose_blob_names_their_type() {
        // ssh-keygen -t ed25519 public key (a fixed test vector).
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvbRm2wv8GQcUuA0LUm7kmgUFplH0y8Ghy7bhcr6qRQ alice@laptop";
        assert_eq!(parse_public_key(line).unwrap().0, "ed25519");
        assert!(parse_public_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGvbRm2w").is_err());
        assert!(parse_public_key("hello").is_err());
    }
}
