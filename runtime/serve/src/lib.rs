//! `retroformer serve`'s library: an OpenAI-compatible HTTP server over the runtime's models.
//!
//! [`router`] builds the axum router (one module per endpoint under `routes/`), [`Engine`]
//! holds the served models with their schedulers (one batched session each) and adapters, and [`serve`] runs
//! the router on a listener until a shutdown signal, letting requests in flight finish. The
//! CLI's `serve` subcommand is glue: it loads the models and calls [`serve`].

mod adapters;
mod api;
mod capture;
mod engine;
mod error;
mod ids;
mod logprobs;
mod metrics;
mod routes;
mod scheduler;
mod schema;
mod server;
mod tools;

pub use adapters::{Active, Adapters, Resolved, ACTIVE, BASE};
pub use capture::Capture;
pub use engine::{Engine, Job, Limits, ServedModel};
pub use error::{ApiError, ServeError};
pub use metrics::Metrics;
pub use routes::router;
pub use schema::{to_gbnf, JSON_GBNF};
pub use server::{bind, serve, shutdown_signal};
pub use tools::{Call, Tools};

/// `m` locked, even if a thread panicked while holding it: what these locks guard (counters,
/// the active adapter, loaded handles, open sessions) stays usable, and one panicked request
/// must not make every later one panic too.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
