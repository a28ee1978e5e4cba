//! What the host counts, through the `metrics` facade: no-ops until
//! [`install`] sets the Prometheus recorder (`serve --admin`), whose text
//! the admin listener (`ops::admin`) serves at `/metrics`.
//!
//! Labels stay bounded: a route's path (from the command line), a refusal's
//! reason, a failure's kind; never a connection id. Per-route handles are
//! made once per route and cloned into each connection, so counting a
//! message is an atomic add, not a registry lookup.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;

pub const CONNECTIONS_OPEN: &str = "wshost_connections_open";
pub const MESSAGES_IN: &str = "wshost_messages_in_total";
pub const BYTES_IN: &str = "wshost_bytes_in_total";
pub const FRAMES_OUT: &str = "wshost_frames_out_total";
pub const BYTES_OUT: &str = "wshost_bytes_out_total";
pub const REFUSED: &str = "wshost_requests_refused_total";
pub const GUEST_FAILURES: &str = "wshost_guest_failures_total";
pub const INSTANTIATE: &str = "wshost_instantiate_seconds";
pub const EVENT: &str = "wshost_event_seconds";
pub const EVICTIONS: &str = "wshost_evictions_total";
pub const PUBLISH_FANOUT: &str = "wshost_publish_fanout";
pub const CORO_INSTANCES: &str = "wshost_coro_instances";
pub const QUARANTINED: &str = "wshost_quarantined_total";
pub const POOL_INSTANCES: &str = "wshost_pool_instances";
pub const POOL_WARM_SLOTS: &str = "wshost_pool_warm_slots";
pub const POOL_RESIDENT: &str = "wshost_pool_resident_bytes";
pub const CLUSTER_CONNECTED: &str = "wshost_cluster_connected";
pub const CLUSTER_SENT: &str = "wshost_cluster_sent_total";
pub const CLUSTER_RECEIVED: &str = "wshost_cluster_received_total";
pub const CLUSTER_DROPPED: &str = "wshost_cluster_dropped_total";
pub const CLUSTER_RECONNECTS: &str = "wshost_cluster_reconnects_total";
pub const PANICS: &str = "wshost_panics_total";
pub const IN_FLIGHT: &str = "wshost_in_flight_bytes";
pub const LOOP_CONNECTIONS: &str = "wshost_loop_connections";

/// Install the Prometheus recorder; before any route is loaded, so the
/// routes' handles count into it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let seconds = [
        0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
    ];
    let fanout = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(INSTANTIATE.into()), &seconds)?
        .set_buckets_for_metric(Matcher::Full(EVENT.into()), &seconds)?
        .set_buckets_for_metric(Matcher::Full(PUBLISH_FANOUT.into()), &fanout)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS_OPEN, "Connections open, per route.");
    describe_gauge!(
        LOOP_CONNECTIONS,
        "Connections open, per event loop they run on."
    );
    describe_counter!(MESSAGES_IN, "Whole messages received from peers.");
    describe_counter!(BYTES_IN, Unit::Bytes, "Bytes of messages received.");
    describe_counter!(FRAMES_OUT, "Frames written to peers.");
    describe_counter!(BYTES_OUT, Unit::Bytes, "Bytes written to peers.");
    describe_counter!(REFUSED, "Requests answered by the host itself, by reason.");
    describe_counter!(GUEST_FAILURES, "Guest calls that failed, by kind.");
    describe_histogram!(INSTANTIATE, Unit::Seconds, "Time to instantiate a guest.");
    describe_histogram!(
        EVENT,
        Unit::Seconds,
        "Time an event-world guest took per event."
    );
    describe_counter!(EVICTIONS, "Connections evicted for not taking their queue.");
    describe_gauge!(
        IN_FLIGHT,
        Unit::Bytes,
        "Bytes of messages under way or not yet taken by guests (--max-in-flight, and the overdraft)."
    );
    describe_counter!(
        PANICS,
        "Panics of the host's own code caught and confined, by task (a bug: please report)."
    );
    describe_histogram!(PUBLISH_FANOUT, "Subscribers a topic message was queued to.");
    describe_gauge!(CORO_INSTANCES, "Coro-world instances running, per route.");
    describe_counter!(
        QUARANTINED,
        "Clients that crashed a coro instance: isolated (served alone) or banned."
    );
    describe_gauge!(POOL_INSTANCES, "Wasm instances in the pool (all worlds).");
    describe_gauge!(
        POOL_WARM_SLOTS,
        "The pool's memory slots used before and free now."
    );
    describe_gauge!(
        POOL_RESIDENT,
        Unit::Bytes,
        "Memory the pool's free slots keep resident for the next instance."
    );
    describe_gauge!(
        CLUSTER_CONNECTED,
        "1 while subscribed to the cluster's Redis."
    );
    describe_counter!(CLUSTER_SENT, "Messages published to the cluster's Redis.");
    describe_counter!(CLUSTER_RECEIVED, "Messages from other processes, by kind.");
    describe_counter!(CLUSTER_DROPPED, "Messages not sent to Redis, by reason.");
    describe_counter!(
        CLUSTER_RECONNECTS,
        "Connections to Redis made again after a loss."
    );
}

/// One route's handles, shared by its connections: a clone is one pointer
/// (each socket's task keeps one; the seven handles inline took 112 bytes
/// of every socket).
#[derive(Clone)]
pub struct RouteMeters(Arc<Handles>);

pub struct Handles {
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub frames_out: Counter,
    pub bytes_out: Counter,
    open: Gauge,
    pub instantiate: Histogram,
    pub event: Histogram,
}

impl std::ops::Deref for RouteMeters {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

impl RouteMeters {
    pub fn new(route: &str) -> Self {
        let route = route.to_string();
        RouteMeters(Arc::new(Handles {
            messages_in: counter!(MESSAGES_IN, "route" => route.clone()),
            bytes_in: counter!(BYTES_IN, "route" => route.clone()),
            frames_out: counter!(FRAMES_OUT, "route" => route.clone()),
            bytes_out: counter!(BYTES_OUT, "route" => route.clone()),
            open: gauge!(CONNECTIONS_OPEN, "route" => route.clone()),
            instantiate: histogram!(INSTANTIATE, "route" => route.clone()),
            event: histogram!(EVENT, "route" => route),
        }))
    }

    /// A connection of this route is open, holding `permit` (its
    /// `--max-connections` slot): counted until the guard is dropped.
    pub fn opened(&self, slot: impl Send + Sync + 'static) -> Open {
        self.open.increment(1.0);
        Open {
            gauge: self.open.clone(),
            _slot: Box::new(slot),
        }
    }
}

/// An open connection: its count in its route's gauge and its `slot` (the
/// server's: its `--max-connections` permit, its place on an event loop),
/// both given back when it is dropped.
pub struct Open {
    gauge: Gauge,
    _slot: Box<dyn Send + Sync>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// A request the host answered itself: `no_route`, `origin`, `capacity`,
/// `bad_request`, `bad_handshake`, `timeout`, `too_large`.
pub fn refused(reason: &'static str) {
    counter!(REFUSED, "reason" => reason).increment(1);
}

/// A guest call failed: `trap`, `cpu`, `memory` or `table`.
pub fn guest_failed(kind: &'static str) {
    counter!(GUEST_FAILURES, "kind" => kind).increment(1);
}

/// A panic of ours was caught in a `task` (`socket`, `guest_call`):
/// counted; returns what it said, if it said it as text.
pub fn panicked(task: &'static str, panic: &(dyn std::any::Any + Send)) -> String {
    counter!(PANICS, "task" => task).increment(1);
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not text)".into())
}

pub fn evicted() {
    counter!(EVICTIONS).increment(1);
}

/// A running coro-world instance of `route`, counted until dropped.
pub struct Running(Gauge);

impl Running {
    pub fn new(route: &str) -> Self {
        let gauge = gauge!(CORO_INSTANCES, "route" => route.to_string());
        gauge.increment(1.0);
        Running(gauge)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A crash of a coro instance of `route`: its client `isolated` or
/// `banned`, or `unattributed` when more than one task could have trapped.
pub fn quarantined(route: &str, action: &'static str) {
    counter!(QUARANTINED, "route" => route.to_string(), "action" => action).increment(1);
}

/// The wasm pools of `engines` as they stand, read at each scrape: what a
/// burst of handler-world connections leaves behind is warm slots, each
/// keeping up to `component::KEEP_RESIDENT` of memory and table resident
/// (a trim gives back the heap, not these).
pub fn pool<'a>(engines: impl IntoIterator<Item = &'a wasmtime::Engine>) {
    let (mut instances, mut warm, mut resident) = (0, 0, 0);
    for pool in engines
        .into_iter()
        .filter_map(|e| e.pooling_allocator_metrics())
    {
        instances += pool.component_instances();
        warm += pool.unused_warm_memories();
        resident += pool.unused_memory_bytes_resident()
            + pool.unused_table_bytes_resident()
            + pool.unused_stack_bytes_resident().unwrap_or(0);
    }
    gauge!(POOL_INSTANCES).set(instances as f64);
    gauge!(POOL_WARM_SLOTS).set(warm);
    gauge!(POOL_RESIDENT).set(resident as f64);
}

/// The in-flight budget's charged bytes, read at each scrape.
pub fn in_flight(bytes: usize) {
    gauge!(IN_FLIGHT).set(bytes as f64);
}

pub fn published(subscribers: u32) {
    histogram!(PUBLISH_FANOUT).record(subscribers);
}

/// The cluster's Redis subscription is up (or down).
pub fn cluster_connected(up: bool) {
    gauge!(CLUSTER_CONNECTED).set(if up { 1.0 } else { 0.0 });
}

pub fn cluster_sent(messages: usize) {
    counter!(CLUSTER_SENT).increment(messages as u64);
}

/// A message from another process: `publish` or `send`.
pub fn cluster_received(kind: &'static str) {
    counter!(CLUSTER_RECEIVED, "kind" => kind).increment(1);
}

/// Messages not sent to Redis (`queue_full`, `redis_down`, `too_large`)
/// or not fanned out from it (`incoming_full`).
pub fn cluster_dropped(reason: &'static str, messages: usize) {
    counter!(CLUSTER_DROPPED, "reason" => reason).increment(messages as u64);
}

pub fn cluster_reconnected() {
    counter!(CLUSTER_RECONNECTS).increment(1);
}
