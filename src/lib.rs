//! minikafka: a single-binary, Kafka wire-protocol compatible broker.
//!
//! Layers, by what they may touch:
//! - [`protocol`]: bytes <-> typed messages; no I/O.
//! - [`storage`]: partition logs on disk (or in memory); knows nothing of requests.
//! - [`broker`]: typed requests -> typed responses over the storage; no sockets.
//! - [`server`]: the listeners and connections; the only code that owns sockets.
//! - [`client`]: client-side code (connections, metadata, a consumer, the
//!   partitioner), reusing `protocol`; [`producer`]: the bundled producer.

pub mod broker;
pub mod client;
pub mod config;
pub mod producer;
pub mod protocol;
pub mod server;
pub mod storage;

pub use config::BrokerConfig;
pub use server::{BrokerHandle, StartError, start};

/// The README's Rust examples compile as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
