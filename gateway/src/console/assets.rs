//! The console's files, embedded in the binary at build time (no CDN: the console works
//! on a network without the internet), each served with its type and an `ETag`.

use std::sync::LazyLock;

use bytes::Bytes;
use http::request::Parts;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("web/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("boot.js", JS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("instances.js", JS),
    asset!("order.js", JS),
    asset!("chart.js", JS),
    asset!("deployments.js", JS),
    asset!("orders.js", JS),
    asset!("bill.js", JS),
    asset!("budgets.js", JS),
    asset!("keys.js", JS),
    asset!("providers.js", JS),
    asset!("tenants.js", JS),
    asset!("catalog.js", JS),
    asset!("placements.js", JS),
    asset!("approvals.js", JS),
    asset!("webhooks.js", JS),
    asset!("sla.js", JS),
];

/// Each file's `ETag`, in [`ASSETS`] order.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..16]))
        .collect()
});

/// The console's page.
pub(super) fn index() -> Response<Full<Bytes>> {
    serve(0, None)
}

/// `/console/assets/{name}`: the file, 304 when the browser's copy is current, 404 when
/// there is no such file.
pub(super) fn asset(name: &str, head: &Parts) -> Response<Full<Bytes>> {
    match ASSETS
        .iter()
        .position(|a| a.name == name && name != "index.html")
    {
        Some(i) => serve(i, head.headers.get(header::IF_NONE_MATCH)),
        None => super::sign_in::page(StatusCode::NOT_FOUND, "Not found", "No such console file."),
    }
}

fn serve(i: usize, if_none_match: Option<&http::HeaderValue>) -> Response<Full<Bytes>> {
    let (asset, etag) = (&ASSETS[i], &ETAGS[i]);
    let fresh = if_none_match.is_some_and(|v| v.as_bytes() == etag.as_bytes());
    Response::builder()
        .status(if fresh {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_TYPE, asset.content_type)
        .header(header::ETAG, etag.as_str())
        // Revalidated on every load, so a new gateway's console is never mixed with an
        // old one's cached modules.
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(if fresh {
            Bytes::new()
        } else {
            Bytes::from_static(asset.body)
        }))
        .expect("static response parts are valid")
}

/// Bytes of every console file together.
#[cfg(test)]
pub(super) fn total_bytes() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_has_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains(" on"), "inline event handler");
        assert!(!html.contains("style="), "inline style");
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let js = std::str::from_utf8(a.body).unwrap();
            assert!(
                !js.contains("innerHTML"),
                "{} writes HTML from strings",
                a.name
            );
            assert!(!js.contains("eval("), "{} evaluates strings", a.name);
        }
        assert!(total_bytes() < 150 * 1024, "{} bytes", total_bytes());
    }
}
