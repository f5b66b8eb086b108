//! `/metrics`: request counts by endpoint and status, latency histograms by endpoint,
//! queue depths and the memory's size, in the Prometheus text format.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabels {
    lane: String,
}

/// The server's counters, shared by every request.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    queued: Family<LaneLabels, Gauge>,
    documents: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("racm3");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by endpoint and status",
            requests.clone(),
        );
        // 1 ms to about 33 s: a retrieval takes milliseconds, a generation seconds.
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, by endpoint",
            latency.clone(),
        );
        let queued = Family::<LaneLabels, Gauge>::default();
        registry.register(
            "queued_jobs",
            "Jobs running or waiting, by lane",
            queued.clone(),
        );
        let documents = Gauge::default();
        registry.register(
            "memory_documents",
            "Documents in the memory",
            documents.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            queued,
            documents,
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn observe(&self, endpoint: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
            })
            .observe(seconds);
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, lanes: &[(&str, usize)], documents: usize) -> String {
        for (lane, depth) in lanes {
            self.queued
                .get_or_create(&LaneLabels {
                    lane: (*lane).to_owned(),
                })
                .set(*depth as i64);
        }
        self.documents.set(documents as i64);
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}
