//! `skyport certs init`.

use std::path::Path;

use crate::tls::dev_certs;

/// Creates development material in `out`.
pub(super) fn init(out: &Path) -> anyhow::Result<i32> {
    let material = dev_certs::ensure(out, "skyport")?;
    if material.created.is_empty() {
        println!(
            "{}: all development certificates and keys already exist",
            out.display()
        );
    } else {
        println!("{}: created {}", out.display(), material.created.join(", "));
    }
    Ok(0)
}
