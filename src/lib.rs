//! capi-cdc: PostgreSQL logical replication → e-commerce conversions →
//! Meta (and, later, Google), effectively once.
//!
//! Data flows `source → decode → derive → spool → deliver`; `admin` watches
//! every stage. `apply` is the loop that moves one replication stream through
//! decode and derive into the spool; `run` wires the stages and reconnects.
//! See `docs/architecture.md`.

pub mod admin;
pub mod apply;
pub mod cmd;
pub mod config;
pub mod decode;
pub mod deliver;
pub mod derive;
pub mod error;
pub mod event;
pub mod lsn;
pub mod pgcluster;
pub mod run;
pub mod sandbox;
pub mod source;
pub mod spool;
pub mod status;
pub mod storefront;
pub mod tail;
pub mod telemetry;
