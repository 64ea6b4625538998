//! The plain `#[repr(C)]` manifest every plugin exports under [`MANIFEST_SYMBOL`].
//!
//! The host reads it before any abi_stable code runs, so that a plugin built for another
//! API major, another target or with `panic = "abort"` is refused with one clear line
//! instead of a thousand-line layout dump. Its layout is versioned by
//! [`MANIFEST_LAYOUT_VERSION`] and only ever grows at the end.

/// Name of the exported manifest symbol (NUL-terminated for `dlsym`).
pub const MANIFEST_SYMBOL: &[u8] = b"SKYPORT_PLUGIN_MANIFEST\0";
/// Magic bytes at the start of every manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"SKYPLUG\0";
/// Layout version of [`PluginManifest`]. Version 1 is the layout below.
pub const MANIFEST_LAYOUT_VERSION: u32 = 1;

/// What a plugin is for.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Serves resources (instances, images) from a cloud or this host.
    Provider = 1,
    /// Receives the gateway's metering tap and produces bills.
    Metering = 2,
}

impl PluginKind {
    /// The kind for a raw manifest value, if known.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Provider),
            2 => Some(Self::Metering),
            _ => None,
        }
    }

    /// Lower-case name, as shown by the API and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Metering => "metering",
        }
    }
}

/// A NUL-padded UTF-8 string of at most `N - 1` bytes, readable without any Rust ABI.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize>(pub [u8; N]);

impl<const N: usize> FixedStr<N> {
    /// Copies `s` in at compile time; longer strings are truncated at `N - 1` bytes.
    pub const fn new(s: &str) -> Self {
        let src = s.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        while i < src.len() && i + 1 < N {
            out[i] = src[i];
            i += 1;
        }
        Self(out)
    }

    /// The string up to the first NUL; invalid UTF-8 is replaced, never trusted.
    pub fn to_string_lossy(&self) -> String {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(N);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

/// The manifest, exported by [`crate::export_plugin!`] as a `#[no_mangle]` static.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginManifest {
    /// Always [`MANIFEST_MAGIC`].
    pub magic: [u8; 8],
    /// Always [`MANIFEST_LAYOUT_VERSION`] for this layout.
    pub layout_version: u32,
    /// Major version of `skyport-plugin-api` the plugin was built against.
    pub api_major: u32,
    /// Minor version of `skyport-plugin-api` the plugin was built against.
    pub api_minor: u32,
    /// abi_stable minor version (0.x) the plugin was built with.
    pub abi_stable_minor: u32,
    /// [`PluginKind`] as a raw value, so that unknown kinds can be reported.
    pub kind: u32,
    /// 1 when built with `panic = "unwind"`, 0 when built with `panic = "abort"`.
    pub panic_unwind: u32,
    /// The plugin's name, e.g. `local-vmm`.
    pub name: FixedStr<64>,
    /// The plugin's own version, e.g. `0.3.1`.
    pub version: FixedStr<32>,
    /// The target triple it was compiled for.
    pub target: FixedStr<64>,
}

impl PluginManifest {
    /// The manifest of a plugin built against this crate.
    pub const fn current(name: &str, version: &str, kind: PluginKind) -> Self {
        Self {
            magic: MANIFEST_MAGIC,
            layout_version: MANIFEST_LAYOUT_VERSION,
            api_major: crate::API_MAJOR,
            api_minor: crate::API_MINOR,
            abi_stable_minor: crate::ABI_STABLE_MINOR,
            kind: kind as u32,
            panic_unwind: cfg!(panic = "unwind") as u32,
            name: FixedStr::new(name),
            version: FixedStr::new(version),
            target: FixedStr::new(crate::BUILD_TARGET),
        }
    }
}
