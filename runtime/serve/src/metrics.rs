//! Counters for `GET /metrics`, in Prometheus's text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What the server counts. Cheap to update from any thread.
#[derive(Default)]
pub struct Metrics {
    /// (endpoint, HTTP status) -> requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// (model, adapter id or "base") -> generations.
    per_adapter: Mutex<BTreeMap<(String, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    /// Prompt tokens taken from a session's cache instead of evaluated.
    reused_tokens: AtomicU64,
    /// Generations that reused a cached prefix of at least one token.
    cache_hits: AtomicU64,
    generations: AtomicU64,
    /// Requests not yet handed to a model's session (set when metrics are read), and requests
    /// submitted and not yet answered.
    pub queued: AtomicU64,
    pub running: AtomicU64,
}

impl Metrics {
    /// A request to `endpoint` answered with `status` after `seconds`.
    pub fn request(&self, endpoint: &str, status: u16, seconds: f64) {
        *crate::lock(&self.requests)
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        let mut l = crate::lock(&self.latency);
        let h = l.entry(endpoint.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// One generation's tokens, on `model` with `adapter`.
    pub fn generation(&self, model: &str, adapter: &str, stats: &retroformer_llm::GenerationStats) {
        self.generations.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(u64::from(stats.prompt_tokens), Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(u64::from(stats.generated_tokens), Ordering::Relaxed);
        self.reused_tokens
            .fetch_add(u64::from(stats.reused_tokens), Ordering::Relaxed);
        if stats.reused_tokens > 0 {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        *crate::lock(&self.per_adapter)
            .entry((model.to_string(), adapter.to_string()))
            .or_default() += 1;
    }

    /// The Prometheus text exposition, with `ready`: each model's name and whether it serves
    /// (what `/health` finds).
    pub fn render(&self, ready: &[(&str, bool)]) -> String {
        let mut s = String::new();
        s.push_str("# HELP retroformer_model_ready 1 while the model serves; 0 once it has stopped or stalled (see /health).\n# TYPE retroformer_model_ready gauge\n");
        for (model, up) in ready {
            let _ = writeln!(
                s,
                "retroformer_model_ready{{model=\"{}\"}} {}",
                escape(model),
                u8::from(*up)
            );
        }
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut s,
            "retroformer_generations_total",
            "Generations run.",
            get(&self.generations),
        );
        counter(
            &mut s,
            "retroformer_prompt_tokens_total",
            "Prompt tokens of generations.",
            get(&self.prompt_tokens),
        );
        counter(
            &mut s,
            "retroformer_completion_tokens_total",
            "Tokens generated.",
            get(&self.completion_tokens),
        );
        counter(
            &mut s,
            "retroformer_prompt_cache_reused_tokens_total",
            "Prompt tokens reused from a session's KV cache.",
            get(&self.reused_tokens),
        );
        counter(
            &mut s,
            "retroformer_prompt_cache_hits_total",
            "Generations that reused a cached prefix.",
            get(&self.cache_hits),
        );
        for (name, help, v) in [
            (
                "retroformer_queue_depth",
                "Requests waiting for a session.",
                get(&self.queued),
            ),
            (
                "retroformer_running",
                "Requests generating.",
                get(&self.running),
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        s.push_str("# HELP retroformer_requests_total Requests answered.\n# TYPE retroformer_requests_total counter\n");
        for ((endpoint, status), v) in crate::lock(&self.requests).iter() {
            let _ = writeln!(
                s,
                "retroformer_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {v}"
            );
        }
        s.push_str("# HELP retroformer_adapter_generations_total Generations per model and adapter.\n# TYPE retroformer_adapter_generations_total counter\n");
        for ((model, adapter), v) in crate::lock(&self.per_adapter).iter() {
            let _ = writeln!(
                s,
                "retroformer_adapter_generations_total{{model=\"{}\",adapter=\"{}\"}} {v}",
                escape(model),
                escape(adapter)
            );
        }
        self.render_latency(&mut s);
        s
    }

    fn render_latency(&self, s: &mut String) {
        let name = "retroformer_request_duration_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Time to answer a request.\n# TYPE {name} histogram"
        );
        for (endpoint, h) in crate::lock(&self.latency).iter() {
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(s, "{name}_bucket{{endpoint=\"{endpoint}\",le=\"{b}\"}} {c}");
            }
            let _ = writeln!(
                s,
                "{name}_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(s, "{name}_sum{{endpoint=\"{endpoint}\"}} {}", h.sum);
            let _ = writeln!(s, "{name}_count{{endpoint=\"{endpoint}\"}} {}", h.count);
        }
    }
}

/// A label value in Prometheus's escaping.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
