//! The OpenAPI 3.1 document's frame: title, security scheme, tags. Paths and schemas come from
//! the handlers' `#[utoipa::path]` and the types they use (see [`crate::http::routes::documented`]).

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
    modifiers(&ApiKey, &EdgeRefusals),
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

/// Every route may answer `403` before it runs ([`crate::http::edge`]): a `Host` the service does not
/// answer to, or (on writes) a request from another site.
struct EdgeRefusals;

impl Modify for EdgeRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let refused = ResponseBuilder::new()
            .description(
                "`forbidden_host`: a Host this service does not answer to \
                 (CSVBUS_ALLOWED_HOSTS); `cross_origin`: a write from another site",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                op.responses
                    .responses
                    .entry("403".into())
                    .or_insert_with(|| refused.clone().into());
            }
        }
    }
}
