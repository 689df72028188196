//! Idempotent-producer state.
