//! The OpenAPI 3.1 document's frame: title, security scheme, tags. Paths and schemas come from
//! the handlers' `#[utoipa::path]` and the types they use (see [`crate::routes::documented`]).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "csvbus",
        description = "CSV over HTTP into PostgreSQL tables through Kafka. Every error answers \
            the JSON shape `ErrorBody`; a 5xx means nothing went wrong with the data and a \
            retry is safe.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&ApiKey),
    tags(
        (name = "imports", description = "Uploads and what became of their rows"),
        (name = "tables", description = "Tables csvbus may write"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "page", description = "The web page and this document"),
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer <key>`, required when `CSVBUS_API_KEYS` is set.
struct ApiKey;

impl Modify for ApiKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of CSVBUS_API_KEYS, when any is set"))
                    .build(),
            ),
        );
    }
}
