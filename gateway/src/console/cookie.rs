//! The session cookie: read from a request's `Cookie` headers, and written.

use skyport_domain::sessions::SESSION_COOKIE;

/// The session cookie's value in `headers`, when there is one.
pub(crate) fn session_cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// `Set-Cookie` for a new session: sent only over HTTPS, never readable by scripts, never
/// sent with a request another site starts.
pub(super) fn set(secret: &str, max_age_secs: u64) -> String {
    format!(
        "{SESSION_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    )
}

/// `Set-Cookie` that removes the session cookie.
pub(super) fn clear() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            "cookie",
            "a=1; __Host-skyport_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers), Some("abc"));
        let mut other = http::HeaderMap::new();
        other.append("cookie", "skyport_session=abc".parse().unwrap());
        assert_eq!(
            session_cookie(&other),
            None,
            "only the __Host- cookie counts"
        );
        let mut empty = http::HeaderMap::new();
        empty.append("cookie", "__Host-skyport_session=".parse().unwrap());
        assert_eq!(session_cookie(&empty), None);
    }

    #[test]
    fn the_cookie_is_secure_httponly_and_strict() {
        let c = set("s", 60);
        for part in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(clear().contains("Max-Age=0"));
    }
}
