//! Local look-alikes of the ad platforms' conversion APIs, for tests and demos.
//!
//! **Never production.** The sandbox answers like the real endpoints (same
//! paths, validation rules, error envelopes and limits, per `spec/`), keeps
//! everything it accepted in memory, and exposes test-only hooks under
//! `/_sandbox/...` to read events back and inject faults. Integration tests
//! start it in-process with [`serve`] on `127.0.0.1:0`; demos point the
//! connector's base URL at it.
//!
//! Input: HTTP requests. Output: platform-shaped responses and an in-memory
//! store per platform. Invariants: state lives behind one mutex that is never
//! held across `.await`; logs never contain request bodies, PII, hashes or
//! tokens (counts, status codes and the pixel id only).

pub mod google;
pub mod meta;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use meta::MetaEventsReport;

/// Meta documents no byte limit (spec §1.3); 1,000 rich events fit well below this.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the sandbox accepts as valid credentials and paths.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The only pixel (dataset) id that exists; others get 100/33.
    pub meta_pixel_id: String,
    /// The only access token that is valid; others get 190.
    pub meta_access_token: String,
    /// Accepted Graph versions in the path, e.g. `v25.0`.
    pub api_versions: Vec<String>,
    /// Google's OAuth, Data Manager and Ads API look-alikes.
    pub google: google::GoogleSandboxConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            meta_pixel_id: "1234567890".into(),
            meta_access_token: "sandbox-meta-token".into(),
            // CAPI versions live at least two years; these are the ones in use in 2026.
            api_versions: (20..=25).map(|v| format!("v{v}.0")).collect(),
            google: google::GoogleSandboxConfig::default(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("meta_pixel_id", &self.meta_pixel_id)
            .field("meta_access_token", &"[redacted]")
            .field("api_versions", &self.api_versions)
            .field("google", &self.google)
            .finish()
    }
}

/// Shared sandbox state; cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SandboxConfig,
    meta: Mutex<meta::MetaStore>,
    google: google::GoogleSandbox,
}

impl Sandbox {
    /// Fresh, empty sandbox state.
    pub fn new(config: SandboxConfig) -> Self {
        Sandbox {
            inner: Arc::new(Inner {
                google: google::GoogleSandbox::new(config.google.clone()),
                config,
                meta: Mutex::default(),
            }),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The Google half: report, faults, clock.
    pub fn google(&self) -> &google::GoogleSandbox {
        &self.inner.google
    }

    /// Snapshot of what the Meta endpoint accepted and rejected.
    pub fn meta_report(&self) -> MetaEventsReport {
        self.meta_store().report()
    }

    /// Locks the Meta store. Callers must drop the guard before any `.await`.
    fn meta_store(&self) -> MutexGuard<'_, meta::MetaStore> {
        // A panic in another request cannot leave the store half-written
        // (every mutation is one push or counter bump), so poisoning is ignored.
        self.inner
            .meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// All sandbox routes (platform endpoints, test hooks, `/healthz`) over `state`.
pub fn router(state: Sandbox) -> Router {
    let google = google::routes(state.google().clone());
    Router::new()
        .merge(meta::routes())
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
        .merge(google)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Serves a fresh sandbox built from `config` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_sandbox(listener, Sandbox::new(config), shutdown).await
}

/// Serves an existing sandbox, so a test can keep a handle and read the store directly.
pub async fn serve_sandbox(
    listener: TcpListener,
    sandbox: Sandbox,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, pixel_id = %sandbox.config().meta_pixel_id, "sandbox listening");
    axum::serve(listener, router(sandbox))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Wall-clock Unix milliseconds; the only clock read in the sandbox.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
