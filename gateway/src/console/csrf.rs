//! Cross-site request forgery: a write is refused when the browser says another site
//! started it (`Sec-Fetch-Site`, `Origin`), and a write made with the session cookie must
//! also carry the session's CSRF token (which only the console's own pages can read).
//! Clients that are not browsers send none of these headers, and are not affected.

use http::request::Parts;
use skyport_core::error::GatewayError;
use skyport_domain::sessions::{csrf_matches, CSRF_HEADER};

/// Refuses a write (any method but GET, HEAD and OPTIONS) another site started.
pub(crate) fn refuse_cross_site(head: &Parts) -> Result<(), GatewayError> {
    if is_read(head) {
        return Ok(());
    }
    let site = head
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Err(cross_site());
    }
    if let Some(origin) = head.headers.get(http::header::ORIGIN) {
        let host = head
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| head.headers.get(http::header::HOST)?.to_str().ok());
        let same = match (origin.to_str().ok(), host) {
            (Some(origin), Some(host)) => origin.strip_prefix("https://") == Some(host),
            _ => false,
        };
        if !same {
            return Err(cross_site());
        }
    }
    Ok(())
}

/// Refuses a write made with session cookie `secret` without the session's CSRF token.
pub(crate) fn require_token(head: &Parts, secret: &str) -> Result<(), GatewayError> {
    if is_read(head) {
        return Ok(());
    }
    let sent = head
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if csrf_matches(secret, sent) {
        Ok(())
    } else {
        Err(GatewayError::forbidden(format!(
            "a write with the console's session needs its CSRF token in {CSRF_HEADER} \
             (from GET /console/session)"
        )))
    }
}

fn is_read(head: &Parts) -> bool {
    matches!(
        head.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

fn cross_site() -> GatewayError {
    GatewayError::forbidden("a write another site started is refused (cross-site request)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyport_domain::sessions::csrf_token;

    fn head(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/v1/instances")
            .header("host", "gw.example:8443");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn writes_other_sites_start_are_refused() {
        assert!(
            refuse_cross_site(&head("POST", &[])).is_ok(),
            "not a browser"
        );
        assert!(refuse_cross_site(&head("POST", &[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(refuse_cross_site(&head("POST", &[("sec-fetch-site", "cross-site")])).is_err());
        assert!(refuse_cross_site(&head("POST", &[("sec-fetch-site", "same-site")])).is_err());
        assert!(refuse_cross_site(&head("GET", &[("sec-fetch-site", "cross-site")])).is_ok());
        assert!(refuse_cross_site(&head("POST", &[("origin", "https://gw.example:8443")])).is_ok());
        assert!(refuse_cross_site(&head("POST", &[("origin", "https://evil.example")])).is_err());
        assert!(refuse_cross_site(&head("DELETE", &[("origin", "null")])).is_err());
    }

    #[test]
    fn cookie_writes_need_the_sessions_token() {
        let token = csrf_token("s1");
        assert!(require_token(&head("POST", &[("x-csrf-token", &token)]), "s1").is_ok());
        assert!(require_token(&head("POST", &[("x-csrf-token", &token)]), "s2").is_err());
        assert!(require_token(&head("PATCH", &[]), "s1").is_err());
        assert!(require_token(&head("GET", &[]), "s1").is_ok());
    }
}
