//! The consumer group coordinator.
