//! Derivation over an in-memory lookup store.
