//! The NoCloud seed a VM boots with: what cloud-init (or the `skyport-tiny` guest) reads at
//! first boot. An ISO 9660 image labelled `cidata` holding `meta-data` (instance id,
//! hostname, the SSH public keys to authorise) and, when given, `user-data` exactly as the
//! caller sent it. Attached read-only as the VM's second disk; made once, at create.

use std::path::{Path, PathBuf};

use base64::Engine;

/// What goes into a seed.
pub(crate) struct Seed<'a> {
    /// cloud-init's instance id: user data runs once per id.
    pub(crate) instance_id: &'a str,
    /// The guest's hostname.
    pub(crate) hostname: &'a str,
    /// OpenSSH public keys.
    pub(crate) ssh_public_keys: &'a [String],
    /// User data, base64 as the contract carries it.
    pub(crate) user_data: Option<&'a str>,
}

/// The `meta-data` file: YAML that cloud-init's NoCloud source reads.
pub(crate) fn meta_data(seed: &Seed<'_>) -> Result<String, String> {
    let mut text = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_safe(seed.instance_id)?,
        yaml_safe(seed.hostname)?
    );
    if !seed.ssh_public_keys.is_empty() {
        text.push_str("public-keys:\n");
        for key in seed.ssh_public_keys {
            text.push_str(&format!("  - {}\n", authorized_key(key)?));
        }
    }
    Ok(text)
}

/// A key as one plain YAML scalar: its type and base64 body, and its comment only when
/// that is plain too (a comment with YAML syntax in it is dropped, never quoted wrongly).
fn authorized_key(key: &str) -> Result<String, String> {
    let mut words = key.split_whitespace();
    let (Some(kind), Some(body)) = (words.next(), words.next()) else {
        return Err("an SSH public key must be '<type> <base64> [comment]'".into());
    };
    let plain = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=@._-".contains(&b))
    };
    if !plain(kind) || !plain(body) {
        return Err(format!("'{kind} ...' is not an OpenSSH public key"));
    }
    let comment: Vec<&str> = words.filter(|w| plain(w)).collect();
    Ok(if comment.is_empty() {
        format!("{kind} {body}")
    } else {
        format!("{kind} {body} {}", comment.join(" "))
    })
}

fn yaml_safe(value: &str) -> Result<&str, String> {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(value)
    } else {
        Err(format!("'{value}' cannot be an instance id or hostname"))
    }
}

/// Writes the seed's files under `dir/seed/` and makes `dir/seed.iso` with `genisoimage`;
/// returns the image's path.
pub(crate) fn write(dir: &Path, seed: &Seed<'_>, genisoimage: &Path) -> Result<PathBuf, String> {
    let files = dir.join("seed");
    std::fs::create_dir_all(&files).map_err(|e| format!("{}: {e}", files.display()))?;
    std::fs::write(files.join("meta-data"), meta_data(seed)?)
        .map_err(|e| format!("writing meta-data: {e}"))?;
    if let Some(user_data) = seed.user_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(user_data)
            .map_err(|e| format!("user data is not base64: {e}"))?;
        std::fs::write(files.join("user-data"), bytes)
            .map_err(|e| format!("writing user-data: {e}"))?;
    }
    let iso = dir.join("seed.iso");
    let out = std::process::Command::new(genisoimage)
        .args([
            "-quiet",
            "-input-charset",
            "utf-8",
            "-V",
            "cidata",
            "-J",
            "-r",
            "-o",
        ])
        .arg(&iso)
        .arg(&files)
        .output()
        .map_err(|e| format!("{}: {e}", genisoimage.display()))?;
    if !out.status.success() {
        return Err(format!(
            "genisoimage failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    pad(&iso)?;
    Ok(iso)
}

/// Every seed's size (padded with zeros, which ISO 9660 ignores): a guest restored from a
/// snapshot sees the size its template's seed had, so every seed must have it. A seed
/// with the largest user data and many keys is well under it.
pub(crate) const SEED_BYTES: u64 = 1 << 20;

fn pad(iso: &Path) -> Result<(), String> {
    let file = std::fs::File::options()
        .write(true)
        .open(iso)
        .map_err(|e| format!("{}: {e}", iso.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < SEED_BYTES {
        file.set_len(SEED_BYTES)
            .map_err(|e| format!("padding {}: {e}", iso.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_names_the_instance_and_its_keys_as_nocloud_reads_them() {
        let keys = [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA+x/y= alice@laptop".to_string(),
            "ssh-rsa AAAAB3Nza: {evil}".to_string(),
        ];
        let seed = Seed {
            instance_id: "i-0123456789abcdef0",
            hostname: "i-0123456789abcdef0",
            ssh_public_keys: &keys[..1],
            user_data: None,
        };
        assert_eq!(
            meta_data(&seed).unwrap(),
            "instance-id: i-0123456789abcdef0\nlocal-hostname: i-0123456789abcdef0\n\
             public-keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA+x/y= alice@laptop\n"
        );
        // YAML syntax never reaches the file: a key that is not plain is refused.
        let bad = Seed {
            ssh_public_keys: &keys[1..],
            ..seed
        };
        assert!(meta_data(&bad).is_err());
        assert_eq!(
            authorized_key("ssh-ed25519 AAAA x: {y} bob").unwrap(),
            "ssh-ed25519 AAAA bob"
        );
    }

    #[test]
    fn every_seed_is_padded_to_one_size_and_a_larger_one_is_left_whole() {
        let dir = std::env::temp_dir().join(format!("seed-pad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.iso");
        std::fs::write(&small, b"CD001").unwrap();
        pad(&small).unwrap();
        let bytes = std::fs::read(&small).unwrap();
        assert_eq!(bytes.len() as u64, SEED_BYTES);
        assert!(bytes.starts_with(b"CD001") && bytes[5..].iter().all(|b| *b == 0));
        let large = dir.join("large.iso");
        std::fs::write(&large, vec![1u8; SEED_BYTES as usize + 1]).unwrap();
        pad(&large).unwrap();
        assert_eq!(std::fs::metadata(&large).unwrap().len(), SEED_BYTES + 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
