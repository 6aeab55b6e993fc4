//! Client-side code, speaking the standard protocol only, so it works
//! against minikafka and Apache Kafka alike: a connection that negotiates
//! versions, cluster metadata, a partition consumer, and the partitioner.

pub mod admin;
pub mod connection;
pub mod consumer;
pub mod groups;
pub mod metadata;
pub mod partitioner;
pub mod pipeline;

pub use connection::BrokerConnection;
pub use consumer::{ConsumedRecord, Consumer, StartOffset};
pub use metadata::Cluster;
pub use pipeline::PipelinedConnection;

use crate::protocol::{ApiKey, DecodeError, ErrorCode};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("no bootstrap server answered: {0}")]
    NoBroker(String),
    #[error("the broker does not serve {0:?} in a version we speak")]
    UnsupportedApi(ApiKey),
    #[error("malformed response: {0}")]
    Decode(#[from] DecodeError),
    #[error("response correlation id {got} does not match request {expected}")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the broker answered {code}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker { code: ErrorCode, message: Option<String> },
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

impl ClientError {
    pub(crate) fn broker(code: i16) -> ClientError {
        ClientError::Broker {
            code: ErrorCode::from_code(code),
            message: None,
        }
    }
}
