//! The web UI and the OpenAPI document, compiled into the binary: no build step,
//! no files to install. The UI is one page that talks to `/_admin/api`; the
//! document is made from the handlers (`openapi.rs`).

use actix_web::HttpResponse;

const INDEX: &str = include_str!("static/index.html");
const SCRIPT: &str = include_str!("static/app.js");
const STYLE: &str = include_str!("static/app.css");

fn page(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}

pub async fn index() -> HttpResponse {
    let mut res = page("text/html; charset=utf-8", INDEX);
    res.headers_mut().insert(
        actix_web::http::header::CONTENT_SECURITY_POLICY,
        actix_web::http::header::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    res
}

pub async fn script() -> HttpResponse {
    page("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> HttpResponse {
    page("text/css; charset=utf-8", STYLE)
}

pub async fn openapi() -> HttpResponse {
    page("application/json", super::openapi::JSON.as_str())
}
