//! Who may ask what.
//!
//! * Without a token (the default, loopback only) a request must name a loopback host
//!   (`127.0.0.1`, `localhost`, `[::1]`): a web page elsewhere cannot reach the server by
//!   pointing its own domain name at 127.0.0.1 (DNS rebinding).
//! * With a token (`--bind` to another address, or `--token`), every request carries it: as
//!   `Authorization: Bearer TOKEN`, or as the `reins_token` cookie the server sets when the
//!   printed URL (`/?token=TOKEN`) is opened.
//! * A request that changes something (any method but GET and HEAD) must come from the page
//!   itself: `Sec-Fetch-Site`, when the browser sends it, is `same-origin`; `Origin`, when
//!   sent, is this server; and it carries the header `X-Reins-Request: 1`, which a cross-site
//!   form cannot send and a cross-site script cannot send without a CORS preflight the server
//!   never grants. `--read-only` refuses every such request.
//! * Every response forbids framing, sniffing, inline scripts and referrers (the token may be
//!   in the URL).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::Shared;

/// The header a request that changes something must carry.
pub(crate) const REQUEST_HEADER: &str = "x-reins-request";
/// The cookie that carries the token.
pub(crate) const COOKIE: &str = "reins_token";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The middleware: refuses what is not allowed, then adds the security headers.
pub(crate) async fn check(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = match refusal(&app, &request) {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Why a request is refused, as the response to send; `None` lets it through.
fn refusal(app: &Shared, request: &Request) -> Option<Response> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match &app.config.token {
        None if !is_loopback_host(host) => {
            return Some(error(
                StatusCode::FORBIDDEN,
                &format!("this server answers only on a loopback address, not `{host}`"),
            ))
        }
        None => {}
        Some(token) => {
            if let Some(given) = query_token(request.uri().query()) {
                if same(&given, token) && request.method() == Method::GET {
                    // The printed URL: keep the token in a cookie and drop it from the address.
                    let mut back = Redirect::to(request.uri().path()).into_response();
                    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
                    if let Ok(v) = HeaderValue::from_str(&cookie) {
                        back.headers_mut().insert(header::SET_COOKIE, v);
                    }
                    return Some(back);
                }
            }
            if !carries_token(headers, token) {
                return Some(error(
                    StatusCode::UNAUTHORIZED,
                    "this server needs its token: open the URL `reins serve` printed, or send `Authorization: Bearer TOKEN`",
                ));
            }
        }
    }
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return None;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" {
            return Some(error(
                StatusCode::FORBIDDEN,
                &format!("a request from another site ({site}) cannot change anything"),
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let expected = format!("http://{host}");
        if origin.as_bytes() != expected.as_bytes() {
            return Some(error(
                StatusCode::FORBIDDEN,
                "a request from another origin cannot change anything",
            ));
        }
    }
    if headers.get(REQUEST_HEADER).map(|v| v.as_bytes()) != Some(b"1") {
        return Some(error(
            StatusCode::FORBIDDEN,
            "a request that changes something must carry `X-Reins-Request: 1`",
        ));
    }
    if app.config.read_only {
        return Some(error(
            StatusCode::FORBIDDEN,
            "this server is read-only (`reins serve --read-only`)",
        ));
    }
    None
}

/// A JSON error response: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// `127.0.0.1`, `localhost` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, tail)) if tail.is_empty() || tail.starts_with(':') => inside,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => name.eq_ignore_ascii_case("localhost"),
    }
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_string)
}

fn carries_token(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim(), token));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|t| same(t, token));
    bearer || cookie
}

/// Compares in time that depends only on the lengths.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A new random token: 32 hex digits (122 random bits).
pub(crate) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_only() {
        for host in [
            "127.0.0.1:7878",
            "localhost:1",
            "LOCALHOST",
            "[::1]:7878",
            "127.0.0.2",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:7878",
            "localhost.evil.example",
            "10.0.0.1:7878",
            "[::2]:1",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert_eq!(query_token(Some("a=1&token=xyz")).as_deref(), Some("xyz"));
        assert_eq!(new_token().len(), 32);
    }
}
