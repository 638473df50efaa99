//! `GET /metrics`: the process's metrics in the Prometheus text format, from the
//! `metrics` crate's recorder (`metrics-exporter-prometheus`, without its own HTTP
//! listener). Labels are route templates (`/fhir/{ty}/{id}`), methods and statuses,
//! never a path with an id or a query: no health information reaches a metric.
//!
//! - `hale_http_requests_total{route,method,status}` and
//!   `hale_http_request_duration_seconds{route,method}` (a histogram);
//! - `hale_http_requests_in_flight`, `hale_http_requests_refused_total{reason}`;
//! - `hale_audit_entries_chained_total`, `hale_audit_chain_seconds` (a store timing:
//!   each second's round of the chainer), `hale_audit_chain_failures_total`;
//! - `hale_store_ping_seconds` (each `/readyz`);
//! - on SQLite, `hale_store_seconds{store,kind}` (a histogram of the store's own work:
//!   `point_read` — a read by id on the request's thread —, `read` — any other read on
//!   the blocking pool —, `write` — one write's statements in its savepoint —, and
//!   `commit` — one group commit, its `fsync` included), `hale_store_write_wait_seconds`
//!   (a write's wait in the writer's queue), `hale_store_writer_queue` (writes queued and
//!   not begun) and `hale_audit_journal_entries` (read-audit entries appended and not
//!   yet moved into the log: the audit backlog); on PostgreSQL, `hale_store_seconds`
//!   with `point_read`, `read` and `write` (its commit included) and
//!   `hale_store_pool_wait_seconds` (the wait for a pooled connection) and
//!   `hale_audit_unlinked_entries` (entries left unlinked after each round of the
//!   chainer: the audit backlog);
//! - `hale_backups_total{outcome}`, `hale_backup_last_success_timestamp_seconds`;
//! - `hale_hl7_messages_total{answer}` (MLLP);
//! - `hale_search_index_outdated` (1 when an older Hale wrote the search index and
//!   `hale reindex` has not run since);
//! - `hale_build_info{version}`.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Request durations' bucket bounds, in seconds.
const DURATION_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The store's timings' bounds, in seconds: a read by id takes microseconds.
const STORE_BUCKETS: &[f64] =
    &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0];

/// The process's recorder, installed on first use (one per process: servers started in
/// one process, as the tests do, share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            // a prefix matcher is tried before a suffix one
            .and_then(|b| b.set_buckets_for_metric(Matcher::Prefix("hale_store_".into()), STORE_BUCKETS))
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only what this one records");
        }
        describe();
        metrics::gauge!("hale_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("hale_http_requests_total", "HTTP requests answered, by route template, method and status");
    describe_histogram!("hale_http_request_duration_seconds", metrics::Unit::Seconds, "time to answer an HTTP request");
    describe_gauge!("hale_http_requests_in_flight", "HTTP requests being served");
    describe_counter!("hale_http_requests_refused_total", "requests refused before serving (busy, rate)");
    describe_counter!("hale_audit_entries_chained_total", "audit entries linked into the hash chain");
    describe_histogram!("hale_audit_chain_seconds", metrics::Unit::Seconds, "one round of the audit chainer");
    describe_counter!("hale_audit_chain_failures_total", "rounds of the audit chainer that failed");
    describe_histogram!("hale_store_ping_seconds", metrics::Unit::Seconds, "the store's answer to /readyz");
    describe_histogram!("hale_store_seconds", metrics::Unit::Seconds, "the store's work, by store and kind");
    describe_histogram!(
        "hale_store_write_wait_seconds",
        metrics::Unit::Seconds,
        "a write's wait for the writer (SQLite)"
    );
    describe_histogram!(
        "hale_store_pool_wait_seconds",
        metrics::Unit::Seconds,
        "a wait for a pooled connection (PostgreSQL)"
    );
    describe_gauge!("hale_audit_unlinked_entries", "audit entries left unlinked after a chainer round (PostgreSQL)");
    describe_gauge!("hale_store_writer_queue", "writes queued for the writer and not begun (SQLite)");
    describe_gauge!("hale_audit_journal_entries", "read-audit entries not yet moved into the log (SQLite)");
    describe_counter!("hale_backups_total", "scheduled backups, by outcome");
    describe_gauge!("hale_backup_last_success_timestamp_seconds", "when the last scheduled backup was written");
    describe_counter!("hale_hl7_messages_total", "HL7 v2 messages received over MLLP, by acknowledgement");
    describe_gauge!("hale_search_index_outdated", "1 when an older Hale wrote the search index: run hale reindex");
    describe_gauge!("hale_build_info", "the running version");
}

/// `GET /metrics`.
pub(crate) async fn render() -> Response {
    let mut r = handle().render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
