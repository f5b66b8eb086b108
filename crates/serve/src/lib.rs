//! racm3's HTTP service: the retriever and the generator behind a JSON API, clip-retrieval's
//! `/knn-service` so its `ClipClient` works unchanged, Prometheus metrics, and a web page.
//!
//! It sits on top of the pipeline (`serve` → `racm3`). One [`Service`] holds the models and
//! the memory and is shared by every request; model work runs on blocking threads in two
//! bounded lanes (search: retrieval, k-NN and adds; generate: generation and captioning),
//! and a full lane answers 503 with `Retry-After` at once. Every limit a request can cross
//! answers a 4xx that names it.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the page: search, generate, caption, with and without retrieval |
//! | `GET /health` | liveness, the memory's size, whether a generator is loaded |
//! | `POST /retrieve` | `{text?, image?, k, query_threshold?, pairwise_threshold?}` → documents with scores |
//! | `POST /generate` | `{text, k, samples, cfg, temperature, top_p, seed}` → PNGs and the retrieved documents |
//! | `POST /caption` | `{image, k, samples, …}` → captions and the retrieved documents |
//! | `POST /knn-service` | clip-retrieval's request and response |
//! | `POST /documents` | `{documents: [{id?, caption, image?}]}` → added once on disk |
//! | `DELETE /documents/{id}` | removes a document, once on disk |
//! | `GET /metrics` | request counts and latencies, queue depths, memory size |
#![deny(missing_docs)]

mod api;
mod error;
mod lanes;
mod metrics;
mod service;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use api::router;
pub use error::ApiError;
pub use service::Service;

/// Bounds on what one request may ask for; each answers 413 naming the limit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes in a request body.
    pub max_body_bytes: usize,
    /// Pixels in an uploaded image, read from its header before decoding.
    pub max_image_pixels: u64,
    /// Documents a search returns (`k`, `num_images`).
    pub max_k: usize,
    /// Documents retrieved into a generation prompt.
    pub max_prompt_k: usize,
    /// Samples per generation.
    pub max_samples: usize,
    /// Decoding steps per request: samples × tokens per output × streams (2 with CFG).
    pub max_steps: usize,
    /// Characters of a text query or caption.
    pub max_text_chars: usize,
    /// Documents per `/documents` request.
    pub max_documents: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_image_pixels: 4096 * 4096,
            max_k: 100,
            max_prompt_k: 16,
            max_samples: 16,
            max_steps: 16 * 64 * 2,
            max_text_chars: 2000,
            max_documents: 256,
        }
    }
}

/// How the server listens and queues.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to bind; loopback unless the user says otherwise.
    pub address: SocketAddr,
    /// A bearer token every API call must carry (`/` and `/health` are open).
    pub token: Option<String>,
    /// Request limits.
    pub limits: Limits,
    /// Generations running at once.
    pub workers: usize,
    /// Searches running at once.
    pub search_workers: usize,
    /// Jobs that may wait in each lane beyond the running ones.
    pub queue: usize,
    /// Time from request to response before a 408.
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            limits: Limits::default(),
            workers: 1,
            search_workers: 2,
            queue: 16,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Binds `settings.address` and serves `service` on a runtime of its own until Ctrl-C;
/// `on_ready` learns the bound address (port 0 picks a free one) before the first request.
pub fn serve_blocking(
    service: Service,
    settings: &Settings,
    on_ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.address)
            .await
            .map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!(
                        "binding {}: {err}; is another server on that port? pass --port 0 for a free one",
                        settings.address
                    ),
                )
            })?;
        on_ready(listener.local_addr()?);
        serve(listener, Arc::new(service), settings).await
    })
}

/// Serves `service` on `listener` until Ctrl-C, finishing requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    settings: &Settings,
) -> std::io::Result<()> {
    let app = router(service, settings);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
