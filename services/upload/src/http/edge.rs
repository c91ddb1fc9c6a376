//! What the service checks of every request before its route, so that nothing is reachable or
//! writable that the operator did not open:
//!
//! - **Host**: a `Host` this service answers to (`CSVBUS_ALLOWED_HOSTS`; loopback names by
//!   default, and the address it listens on). A page on another site that rebinds its DNS name
//!   to this machine sends its own name and is refused, so it cannot read the answers. Probes
//!   (`/healthz`, `/readyz`) are exempt: orchestrators call them by address.
//! - **Cross-site writes**: a state-changing request whose `Origin` is not this service, or that
//!   the browser marks `Sec-Fetch-Site: cross-site` / `same-site`, is refused. Browsers send
//!   such requests (a form, or `fetch` with `text/plain`) without a preflight; command-line
//!   clients send no `Origin` and are not affected.
//!
//! Both answer `403` in the JSON error shape (`forbidden_host`, `cross_origin`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::App;

/// Refuses a request with a foreign `Host`, or a cross-site one that would change state.
pub async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if let Some(host) = host.filter(|_| !probe) {
        if !app.config.host_allowed(host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!("this service does not answer to the host {host:?} (CSVBUS_ALLOWED_HOSTS)"),
            )
            .into_response();
        }
    }
    if !req.method().is_safe() && cross_site(req.headers()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a request from another site may not change anything here; upload from this \
             service's own page, the CLI or a client that sends no Origin",
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether a browser sent the request from a page of another origin.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, a)| a);
    match (authority, host) {
        (Some(a), Some(h)) => !a.eq_ignore_ascii_case(h),
        // `Origin: null` (a sandboxed frame, a file), or no Host to compare with.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_browser_on_another_origin_is_cross_site() {
        let host = ("host", "127.0.0.1:8080");
        assert!(
            !cross_site(&headers(&[host])),
            "no Origin: a command-line client"
        );
        assert!(!cross_site(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9999")
        ])));
        assert!(cross_site(&headers(&[host, ("origin", "null")])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
    }
}
