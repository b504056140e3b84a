//! Wardline's web app for clinicians, nurses, patients and admins.
//!
//! The app lives in `web/` at the repository root (TypeScript, bundled with Vite). The
//! build script builds it with npm and embeds every file, so the `wardline` binary
//! serves it with no files on disk. [`router`] serves:
//!
//! - the app's own pages (`/`, `/login`, `/ward`, `/patients/{id}`, `/admin/...`, ...),
//!   which are all `index.html`: the app routes on the client and loads its data from
//!   the API, through the same access checks as any other client;
//! - the bundled assets, with their content types and cache headers (hashed file names
//!   are immutable; `index.html` is revalidated on every load).
//!
//! Every response carries a strict Content-Security-Policy (only `'self'`, no inline
//! script or style, no framing) and the usual hardening headers. The router has no
//! fallback, so unknown paths (and every `/api/...` path) stay with the API's.

use axum::Router;
use axum::body::Body;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;

/// One embedded file of the built app.
#[derive(Debug)]
pub(crate) struct Asset {
    /// The URL path, e.g. `/assets/index-3f9a1c0b.js`.
    pub(crate) path: &'static str,
    /// A quoted strong ETag over the content.
    pub(crate) etag: &'static str,
    pub(crate) body: &'static [u8],
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// The client-side routes: each serves `index.html`.
pub const APP_ROUTES: &[&str] = &[
    "/",
    "/login",
    "/account/password",
    "/account/second-factor",
    "/ward",
    "/alarms",
    "/me",
    "/me/{*rest}",
    "/patients/{patient_id}",
    "/patients/{patient_id}/{*rest}",
    "/admin",
    "/admin/{*rest}",
    // A specialist's start page, a share link and an invitation (tokens in the fragment).
    "/shared",
    "/s",
    "/invite",
    // Visits: the list and one visit's record (the room is [`VISIT_ROOM_ROUTE`]).
    "/visits",
    "/visits/{visit_id}",
    // The remote-monitoring ledger of the care team's patients.
    "/rpm-ledger",
];

/// A visit's room: the one page that may use the camera and the microphone, so a
/// script anywhere else in the app never can. The app loads it as a page of its own
/// (not by changing the address in place), because a document keeps the permissions
/// policy it was loaded with.
pub const VISIT_ROOM_ROUTE: &str = "/visits/{visit_id}/room";

/// What every page but a visit's room may not use.
const PERMISSIONS_POLICY: &str = "camera=(), microphone=(), geolocation=(), payment=(), usb=()";
/// A visit's room: the camera and the microphone, for this origin only.
const ROOM_PERMISSIONS_POLICY: &str =
    "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()";

/// The policy for every page and asset: everything from this origin only, nothing
/// inline, never framed.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The web app's routes, to merge into the API router (before its fallback).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut router = Router::new();
    let index = asset("/index.html");
    for path in APP_ROUTES {
        router = router.route(
            path,
            get(move |headers: HeaderMap| async move { respond(index, &headers) }),
        );
    }
    router = router.route(
        VISIT_ROOM_ROUTE,
        get(move |headers: HeaderMap| async move {
            let mut response = respond(index, &headers);
            response.headers_mut().insert(
                HeaderName::from_static("permissions-policy"),
                HeaderValue::from_static(ROOM_PERMISSIONS_POLICY),
            );
            response
        }),
    );
    for asset in generated::ASSETS {
        if asset.path == "/index.html" {
            continue;
        }
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { respond(Some(asset), &headers) }),
        );
    }
    router
}

/// Wraps the whole server (API and app): a browser that opens an address nobody serves
/// gets the app, which shows its own "not found" page, with status 404, instead of the
/// API's JSON. Only for page loads: a `GET` that accepts HTML, outside `/api/`. Every
/// other client keeps the API's answer.
pub fn pages_for_unknown_addresses<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(axum::middleware::from_fn(page_for_unknown_address))
}

async fn page_for_unknown_address(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let page_load = request.method() == axum::http::Method::GET
        && !request.uri().path().starts_with("/api/")
        && request
            .headers()
            .get(axum::http::header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    let response = next.run(request).await;
    if page_load && response.status() == StatusCode::NOT_FOUND {
        let mut page = respond(asset("/index.html"), &HeaderMap::new());
        if page.status() == StatusCode::OK {
            *page.status_mut() = StatusCode::NOT_FOUND;
            return page;
        }
    }
    response
}

fn asset(path: &str) -> Option<&'static Asset> {
    generated::ASSETS.iter().find(|asset| asset.path == path)
}

/// The content type for a file name.
pub fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Vite puts content-hashed files under `/assets/`: they never change.
fn cache_control(path: &str) -> &'static str {
    if path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

fn respond(asset: Option<&'static Asset>, request: &HeaderMap) -> Response {
    let mut response = match asset {
        None => {
            let mut response =
                Response::new(Body::from("the web app was built without index.html"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
        Some(asset) => {
            let not_modified = request
                .get_all(IF_NONE_MATCH)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .any(|tag| tag.trim() == asset.etag || tag.trim() == "*");
            let mut response = if not_modified {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                response
            } else {
                Response::new(Body::from(asset.body))
            };
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(content_type(asset.path)),
            );
            headers.insert(
                CACHE_CONTROL,
                HeaderValue::from_static(cache_control(asset.path)),
            );
            headers.insert(ETAG, HeaderValue::from_static(asset.etag));
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(PERMISSIONS_POLICY),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn fetch(router: Router, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        router
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec()
    }

    #[tokio::test]
    async fn client_routes_serve_the_app_with_security_headers() {
        for path in [
            "/",
            "/login",
            "/ward",
            "/patients/6c1d2f0e-0000-4000-8000-000000000000",
            "/admin/devices",
        ] {
            let response = fetch(router(), path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header(&response, "content-type"),
                "text/html; charset=utf-8"
            );
            assert_eq!(header(&response, "cache-control"), "no-cache");
            let csp = header(&response, "content-security-policy");
            assert!(csp.contains("default-src 'self'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe-inline"), "{csp}");
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");
            assert_eq!(header(&response, "referrer-policy"), "no-referrer");
            let html = String::from_utf8(body(response).await).expect("utf-8");
            assert!(html.contains("<script type=\"module\""), "{html}");
            let without_scripts = html.replace("<script type=\"module\" crossorigin src=", "");
            assert!(
                !without_scripts.contains("<script"),
                "no inline script in index.html: {html}"
            );
        }
    }

    #[tokio::test]
    async fn only_a_visit_room_may_use_the_camera_and_microphone() {
        for path in [
            "/",
            "/visits",
            "/visits/6c1d2f0e-0000-4000-8000-000000000000",
            "/ward",
        ] {
            let response = fetch(router(), path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let policy = header(&response, "permissions-policy");
            assert!(policy.contains("camera=()"), "{path}: {policy}");
            assert!(policy.contains("microphone=()"), "{path}: {policy}");
        }
        let response = fetch(
            router(),
            "/visits/6c1d2f0e-0000-4000-8000-000000000000/room",
            &[],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let policy = header(&response, "permissions-policy");
        assert!(policy.contains("camera=(self)"), "{policy}");
        assert!(policy.contains("microphone=(self)"), "{policy}");
        assert!(policy.contains("geolocation=()"), "{policy}");
        assert!(
            header(&response, "content-security-policy").contains("frame-ancestors 'none'"),
            "the room keeps the other headers"
        );
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_typed() {
        let scripts: Vec<_> = generated::ASSETS
            .iter()
            .filter(|asset| asset.path.starts_with("/assets/") && asset.path.ends_with(".js"))
            .collect();
        assert!(!scripts.is_empty(), "the bundle has a script");
        let css = generated::ASSETS
            .iter()
            .find(|asset| asset.path.ends_with(".css"))
            .expect("the bundle has a stylesheet");
        for asset in [scripts[0], css] {
            let response = fetch(router(), asset.path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(header(&response, "content-type"), content_type(asset.path));
            assert!(header(&response, "cache-control").contains("immutable"));
            let etag = header(&response, "etag").to_owned();
            assert_eq!(body(response).await, asset.body);
            let again = fetch(router(), asset.path, &[("if-none-match", &etag)]).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        }
    }

    #[tokio::test]
    async fn unknown_and_api_paths_fall_through_to_the_host_router() {
        let host: Router = Router::new()
            .route("/api/v1/me", get(|| async { "api" }))
            .merge(router())
            .fallback(|| async { (StatusCode::NOT_FOUND, "json 404") });
        for path in ["/api/v1/nothing", "/nothing", "/assets/missing.js"] {
            let response = fetch(host.clone(), path, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body(response).await, b"json 404");
        }
        let api = fetch(host, "/api/v1/me", &[]).await;
        assert_eq!(body(api).await, b"api");
    }

    /// A browser opening an address nobody serves gets the app (which shows its own "not
    /// found" page) with status 404; an API client, and any `/api/` address, the API's.
    #[tokio::test]
    async fn a_browser_gets_the_apps_not_found_page() {
        let host: Router = pages_for_unknown_addresses(
            Router::new()
                .route("/api/v1/me", get(|| async { "api" }))
                .merge(router())
                .fallback(|| async { (StatusCode::NOT_FOUND, "json 404") }),
        );
        let html = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
        let page = fetch(host.clone(), "/pateints/x", &html).await;
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert!(header(&page, "content-security-policy").contains("default-src 'self'"));
        assert!(String::from_utf8_lossy(&body(page).await).contains("<html"));
        for (path, accept) in [
            ("/pateints/x", "application/json"),
            ("/api/v1/nothing", "text/html"),
        ] {
            let response = fetch(host.clone(), path, &[("accept", accept)]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body(response).await, b"json 404", "{path} {accept}");
        }
        let found = fetch(host, "/login", &html).await;
        assert_eq!(found.status(), StatusCode::OK);
    }

    /// Every route the app's router knows is served `index.html`, so that a reload or a
    /// link to any page works (a route missing here answered 404 on reload).
    #[tokio::test]
    async fn every_client_route_is_served_the_app() {
        let main = include_str!("../../../web/src/main.ts");
        let routes: Vec<&str> = main
            .split("route('")
            .skip(1)
            .filter_map(|rest| rest.split('\'').next())
            .collect();
        assert!(routes.len() >= 10, "{routes:?}");
        for route in routes {
            // A path the route matches: each `:parameter` becomes a value.
            let path: String = route
                .split('/')
                .map(|segment| {
                    if segment.starts_with(':') {
                        "x1"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let response = fetch(router(), &path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{route} as {path}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("/a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("/favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("/noext"), "application/octet-stream");
    }
}
