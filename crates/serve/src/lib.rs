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
    /// Pixels of all the images in one `/documents` request together, read from their
    /// headers before any is decoded.
    pub max_request_pixels: u64,
    /// Stored images are scaled down to fit this many pixels a side, keeping their
    /// shape, so a memory holds (and every hit sends back) a bounded image.
    pub stored_image_side: u32,
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
            max_request_pixels: 4096 * 4096,
            stored_image_side: 256,
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
    /// Time a client has to send a request's headers, on a new connection or an idle
    /// kept-alive one, before the connection is closed (against slow-loris clients).
    pub header_timeout: Duration,
}

impl Settings {
    /// Refuses settings that would not do what they say: an empty token, which would
    /// leave the API open while the user believes it needs one.
    pub fn validate(&self) -> Result<(), String> {
        if self
            .token
            .as_deref()
            .is_some_and(|token| token.trim().is_empty())
        {
            return Err("the bearer token is empty, which would leave the API open: give a token (--token or RACM3_TOKEN), or leave both unset to serve without one".into());
        }
        Ok(())
    }

    /// A warning for settings that are allowed but risky: serving beyond this machine
    /// without a token.
    pub fn warning(&self) -> Option<String> {
        (!self.address.ip().is_loopback() && self.token.is_none()).then(|| {
            format!(
                "warning: {} answers other machines and no --token is set, so anyone who can reach it may search, generate and change the memory",
                self.address
            )
        })
    }
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
            header_timeout: Duration::from_secs(30),
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
    settings
        .validate()
        .map_err(|problem| std::io::Error::new(std::io::ErrorKind::InvalidInput, problem))?;
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
        serve(listener, Arc::new(service), settings, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}

/// Serves `service` on `listener` until `shutdown` completes, then finishes the requests
/// in flight. Each connection gets `settings.header_timeout` to send its headers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    settings: &Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let app = router(service, settings);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, or a connection reset before it was accepted:
                // the listener itself is fine, so pause rather than spin or stop.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = connections.watch(connection.into_owned());
        tokio::spawn(async move {
            // A client that hangs up or times out ends only its own connection.
            let _ = connection.await;
        });
    }
    connections.shutdown().await;
    Ok(())
}
