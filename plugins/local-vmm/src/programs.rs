//! Finding the host programs the plugin runs (QEMU, `qemu-img`, `genisoimage`, `ip`, `nft`,
//! `dnsmasq`).

use std::path::{Path, PathBuf};

/// `name` as a path to a file, if it names one, else the first file of that name on `PATH`.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
