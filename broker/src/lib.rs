//! Skiff: a Kafka-compatible message broker.
pub mod group;
pub mod io;
pub mod log;
pub mod producer;
