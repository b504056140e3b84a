//! Wardline's HTTP API: a thin transport over the service layer. Handlers parse what
//! arrives, call one operation, and write its answer; every read of a patient's data
//! goes through the service's access check.
//!
//! The OpenAPI document is generated from the handlers' own declarations and types
//! (`utoipa`), so it cannot describe a route the router lacks or miss one it has.

pub mod error;
pub mod extract;
pub mod layers;
mod routes;
mod schemas;
pub mod state;
mod streams;

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{OpenApi as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use wardline_service::Error;

pub use error::{ApiError, ErrorBody};
pub use state::{ApiSettings, AppState, MetricsRenderer};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Wardline API",
        description = "Remote patient monitoring: people, patients, devices, observations, care plans and alarms. \
            A person authenticates with a session (bearer token from `/api/v1/auth/login`, or its HttpOnly cookie \
            with `X-Wardline-Request: 1` on requests that change state); a device with its own secret. \
            Every error is `{\"error\": {\"code\", \"message\", \"field\"?, \"kind\"?}}` with a stable `code`.",
    ),
    security(("session" = []), ("session_cookie" = [])),
    components(schemas(
        ErrorBody,
        schemas::LoincCode,
        routes::fhir::OperationOutcomeBody,
        // What a visit's room stream carries in its `room` events.
        wardline_service::visits::RoomEvent
    )),
)]
struct ApiDoc;

/// Every route of the API with its OpenAPI description, layered: a body limit and a
/// deadline for requests that answer once, none for the live streams, and request ids,
/// tracing spans and latency metrics for all.
fn api(request_timeout: std::time::Duration) -> OpenApiRouter<AppState> {
    let answered = OpenApiRouter::new()
        .merge(routes::people::routes())
        .merge(routes::clinical::routes())
        .merge(routes::analytics::routes())
        .merge(routes::devices::routes())
        .merge(routes::emergency::routes())
        .merge(routes::shares::routes())
        .merge(routes::nightscout::routes())
        .merge(routes::gateways::routes())
        .merge(routes::templates::routes())
        .merge(routes::visits::routes())
        .merge(routes::backend_clients::routes())
        .merge(routes::fhir::routes())
        .merge(routes::alarms::routes())
        .merge(routes::system::routes())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            layers::MAX_BODY_BYTES,
        ));
    let device_bodies = OpenApiRouter::new()
        .merge(routes::devices::ingest_routes())
        .merge(routes::gateways::forward_routes())
        .merge(routes::nightscout::protocol_routes())
        .merge(routes::imports::routes());
    let streams = OpenApiRouter::new()
        .merge(routes::clinical::stream_routes())
        .merge(routes::alarms::stream_routes())
        .merge(routes::visits::stream_routes())
        .merge(routes::export::routes())
        .merge(routes::fhir_bulk::file_routes())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            layers::MAX_BODY_BYTES,
        ));
    let deadline = tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        request_timeout,
    );
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(answered.merge(device_bodies).layer(deadline))
        .merge(streams)
}

/// The API's router, with its state. The web app's files are served beside it by the
/// binary.
pub fn router(state: AppState) -> Router {
    let (router, _) = api(state.settings.request_timeout).split_for_parts();
    layers::observed(
        router
            .fallback(|| async { ApiError(Error::NotFound("route".into())) })
            .method_not_allowed_fallback(|| async { ApiError(Error::MethodNotAllowed) })
            .with_state(state)
            // Answers carry health data and session tokens: no browser or proxy keeps a
            // copy (a shared workstation's cache, a proxy's disk).
            .layer(SetResponseHeaderLayer::overriding(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            )),
    )
}

/// Compresses answers to reads (gzip or Brotli, as the client accepts): the web app's
/// files and the API's JSON, a CGM month of which is megabytes. Only reads: a secret is
/// only ever in the answer to a write (a session's token, a device's secret, a share's
/// passcode), often beside text the client sent, and a compressed answer that holds
/// both lets an attacker who can watch its length guess the secret (BREACH). Event
/// streams are never compressed, so that each event leaves at once.
pub fn compressed<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::middleware::from_fn(compress_reads_only))
}

async fn compress_reads_only(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        request.headers_mut().remove(header::ACCEPT_ENCODING);
    }
    next.run(request).await
}

/// Tells browsers that reached the server over TLS to use nothing else for a year (HSTS),
/// so that a later plaintext link or a downgrade on the ward's network cannot carry a
/// session. Not for subdomains: a hospital runs other services beside it.
pub fn strict_transport<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(SetResponseHeaderLayer::overriding(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    ))
}

/// The OpenAPI document of the API.
pub fn openapi() -> OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let (_, mut document) = api(std::time::Duration::from_secs(30)).split_for_parts();
            describe(&mut document);
            document
        })
        .clone()
}

/// What the generated document needs beside the handlers' own declarations: the security
/// schemes, the version, the error responses every operation can give, the range of
/// every fixed-width integer, and nullable formatted values in the form generators read.
fn describe(document: &mut OpenApi) {
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    schemas::bound_integers(document);
    schemas::split_nullable_formats(document);
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A session token from /api/v1/auth/login"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            extract::SESSION_COOKIE,
            "The session cookie set at login (the web app)",
        ))),
    );
    components.add_security_scheme(
        "device_secret",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A device's own secret, shown once at enrolment"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "device_basic",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "A device's id and its secret, as HTTP Basic credentials (FHIR uploads)",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "nightscout_secret",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "api-secret",
            "The SHA-1 or SHA-512, in hexadecimal, of a Nightscout site's API secret (also taken as the `secret` or `token` query parameter)",
        ))),
    );
    let error_response = |spec: wardline_service::ErrorSpec| -> RefOr<Response> {
        RefOr::T(
            ResponseBuilder::new()
                .description(format!("`{}`: {}", spec.code, spec.meaning))
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            ErrorBody::name(),
                        ))))
                        .build(),
                )
                .build(),
        )
    };
    let mut by_status: std::collections::BTreeMap<u16, Vec<wardline_service::ErrorSpec>> =
        std::collections::BTreeMap::new();
    for spec in Error::ALL {
        by_status.entry(spec.status).or_default().push(spec);
    }
    let errors: Vec<(String, RefOr<Response>)> = by_status
        .into_iter()
        .map(|(status, specs)| {
            let mut response = error_response(specs[0]);
            if let RefOr::T(response) = &mut response {
                response.description = specs
                    .iter()
                    .map(|spec| format!("`{}`: {}", spec.code, spec.meaning))
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            (status.to_string(), response)
        })
        .collect();
    // The FHIR routes answer every error as an OperationOutcome in FHIR's media type.
    let fhir_errors: Vec<(String, RefOr<Response>)> = errors
        .iter()
        .map(|(status, response)| {
            let mut response = response.clone();
            if let RefOr::T(response) = &mut response {
                response.content = [(
                    wardline_fhir::FHIR_JSON.to_owned(),
                    RefOr::T(
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "OperationOutcome",
                            ))))
                            .build(),
                    ),
                )]
                .into_iter()
                .collect();
            }
            (status.clone(), response)
        })
        .collect();
    for (path, item) in document.paths.paths.iter_mut() {
        let errors = if path.starts_with(routes::fhir::FHIR_BASE) {
            &fhir_errors
        } else {
            &errors
        };
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            for (status, response) in errors {
                operation
                    .responses
                    .responses
                    .entry(status.clone())
                    .or_insert_with(|| response.clone());
            }
        }
    }
}
