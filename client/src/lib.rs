//! skiff-client (tutorial written at the end)
pub mod cluster;
pub mod connection;
pub mod error;
pub mod versions;
pub mod wire;
pub mod partitioner;
pub mod producer;
pub mod records;
pub mod sequence;
pub mod admin;
pub mod assignor;
pub mod consumer_protocol;
pub mod consumer;
pub mod group;
