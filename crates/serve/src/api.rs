//! The routes: JSON handlers that check a request, hand its work to a lane and answer;
//! the bearer-token check; the request counter; the page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::Settings;
use crate::error::ApiError;
use crate::lanes::Lane;
use crate::metrics::Metrics;
use crate::service::Service;
use crate::wire::{AddRequest, CaptionRequest, GenerateRequest, KnnRequest, RetrieveRequest};

struct App {
    service: Arc<Service>,
    token: Option<String>,
    /// Retrieval, k-NN and adds: milliseconds each.
    search: Lane,
    /// Generation and captioning: seconds each.
    generate: Lane,
    metrics: Metrics,
    timeout: Duration,
}

const PAGE: &str = include_str!("page.html");

/// The server's routes over `service`, with the settings' token, limits, queues and
/// timeout.
pub fn router(service: Arc<Service>, settings: &Settings) -> Router {
    let app = Arc::new(App {
        service,
        token: settings.token.clone().filter(|token| !token.is_empty()),
        search: Lane::new("search", settings.search_workers, settings.queue),
        generate: Lane::new("generate", settings.workers, settings.queue),
        metrics: Metrics::default(),
        timeout: settings.timeout,
    });
    let protected = Router::new()
        .route("/retrieve", post(retrieve))
        .route("/generate", post(generate))
        .route("/caption", post(caption))
        .route("/knn-service", post(knn))
        .route("/indices-list", get(indices))
        .route("/documents", post(add))
        .route("/documents/{*id}", delete(remove))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&app), authorize));
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .layer(DefaultBodyLimit::max(settings.limits.max_body_bytes))
        .with_state(app)
}

async fn authorize(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &app.token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            // The scheme is case-insensitive (RFC 9110, 11.1); the token is not.
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim_start());
        if sent != Some(token.as_str()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = match tokio::time::timeout(app.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout {
            seconds: app.timeout.as_secs(),
        }
        .into_response(),
    };
    app.metrics.observe(
        &endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

type Answer<T> = Result<Json<T>, ApiError>;

async fn retrieve(
    State(app): State<Arc<App>>,
    body: Result<Json<RetrieveRequest>, JsonRejection>,
) -> Answer<impl Serialize> {
    let Json(request) = body?;
    let service = Arc::clone(&app.service);
    Ok(Json(
        app.search.run(move || service.retrieve(request)).await?,
    ))
}

async fn generate(
    State(app): State<Arc<App>>,
    body: Result<Json<GenerateRequest>, JsonRejection>,
) -> Answer<impl Serialize> {
    let Json(request) = body?;
    let service = Arc::clone(&app.service);
    Ok(Json(
        app.generate.run(move || service.generate(request)).await?,
    ))
}

async fn caption(
    State(app): State<Arc<App>>,
    body: Result<Json<CaptionRequest>, JsonRejection>,
) -> Answer<impl Serialize> {
    let Json(request) = body?;
    let service = Arc::clone(&app.service);
    Ok(Json(
        app.generate.run(move || service.caption(request)).await?,
    ))
}

/// clip-retrieval's client posts JSON without a content type, and its server reads the
/// body as JSON regardless; so does this route.
async fn knn(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<impl Serialize> {
    let request: KnnRequest = serde_json::from_slice(&body?).map_err(|err| ApiError::Body {
        status: StatusCode::BAD_REQUEST,
        detail: err.to_string(),
    })?;
    let service = Arc::clone(&app.service);
    Ok(Json(app.search.run(move || service.knn(request)).await?))
}

async fn add(
    State(app): State<Arc<App>>,
    body: Result<Json<AddRequest>, JsonRejection>,
) -> Answer<impl Serialize> {
    let Json(request) = body?;
    let service = Arc::clone(&app.service);
    Ok(Json(app.search.run(move || service.add(request)).await?))
}

async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer<impl Serialize> {
    let service = Arc::clone(&app.service);
    Ok(Json(app.search.run(move || service.remove(&id)).await?))
}

/// clip-retrieval's front end lists the indexes it may query; racm3 serves one memory.
async fn indices() -> Json<[&'static str; 1]> {
    Json(["racm3"])
}

async fn health(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "documents": app.service.memory_size(),
        "generator": app.service.has_generator(),
        "auth": app.token.is_some(),
    }))
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let lanes = [
        (app.search.name(), app.search.depth()),
        (app.generate.name(), app.generate.depth()),
    ];
    let text = app.metrics.render(&lanes, app.service.memory_size());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
