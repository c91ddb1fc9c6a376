//! The web page at `/`: plain HTML, CSS and JavaScript compiled into the binary (no build step,
//! no external network). It uses only the public API, with the key the user gives once.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../../web/index.html");
/// One script from four files, in this order: API calls, upload view, browsing views, wiring.
const SCRIPT: &str = concat!(
    include_str!("../../web/api.js"),
    include_str!("../../web/upload.js"),
    include_str!("../../web/browse.js"),
    include_str!("../../web/app.js"),
);
const STYLE: &str = include_str!("../../web/app.css");

/// What every asset is sent with: no external origin may be used, nothing is cached across
/// versions (the binary is the version).
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// The page: upload files, follow imports, read rejected rows.
#[utoipa::path(get, path = "/", tag = "page", responses(
    (status = 200, description = "The web page", body = String, content_type = "text/html"),
))]
pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// The page's script.
#[utoipa::path(get, path = "/app.js", tag = "page", responses(
    (status = 200, description = "The page's script", body = String, content_type = "text/javascript"),
))]
pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The page's style sheet.
#[utoipa::path(get, path = "/app.css", tag = "page", responses(
    (status = 200, description = "The page's style sheet", body = String, content_type = "text/css"),
))]
pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}
