//! An instance's state directory, given to the user its process runs as, with every
//! directory on the way searchable by that user.

use std::path::Path;

/// Creates an instance's state directory and gives it to `user`, who runs its process.
///
/// The gateway's own directories on the way (`root`, the private state directory, and
/// below it) are opened to others for search only (`o+x`: a path through, no listing);
/// a directory above `root` that `user` cannot pass is refused by name.
pub(super) fn own_state_dir(dir: &Path, root: &Path, user: &str) -> Result<(), String> {
    let (uid, gid) = crate::isolation::supervisor::lookup_user(user)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot make its state directory {}: {e}", dir.display()))?;
    rustix::fs::chown(
        dir,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|e| format!("cannot give {} to user {user}: {e}", dir.display()))?;
    for ancestor in dir.ancestors().skip(1) {
        if ancestor.starts_with(root) {
            searchable_by_others(ancestor).map_err(|e| {
                format!("cannot let user {user} through {}: {e}", ancestor.display())
            })?;
            continue;
        }
        searchable_by(ancestor, uid, gid).map_err(|mode| {
            format!(
                "user {user} cannot reach its state directory: {} (mode {mode:o}) is not \
                 searchable by it; allow it (chmod o+x) or run the plugin without `user`",
                ancestor.display()
            )
        })?;
    }
    Ok(())
}

/// Adds search permission for others to directory `dir` (nothing else), when it lacks it.
pub(super) fn searchable_by_others(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o001 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))?;
    }
    Ok(())
}

/// Whether `uid`/`gid` may pass through directory `dir`; its mode when not.
pub(super) fn searchable_by(dir: &Path, uid: u32, gid: u32) -> Result<(), u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(()); // what cannot be inspected is left to the kernel to refuse
    };
    let mode = meta.mode() & 0o7777;
    let bit = if meta.uid() == uid {
        0o100
    } else if meta.gid() == gid {
        0o010
    } else {
        0o001
    };
    if uid == 0 || mode & bit != 0 {
        Ok(())
    } else {
        Err(mode)
    }
}
