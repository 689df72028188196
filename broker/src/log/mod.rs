//! The partition log: durable, segmented, indexed storage of record batches.
