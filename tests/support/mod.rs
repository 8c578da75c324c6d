//! Shared helpers for the integration tests in `tests/*.rs` (each does `mod support;`).

// Every test binary compiles all of `support` but uses only part of it.
#[allow(dead_code)]
pub mod harness;
#[allow(dead_code)]
pub mod pg;
