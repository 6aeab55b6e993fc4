//! One description per Kafka API (`<Name>Request` and `<Name>Response`),
//! field names and version ranges as in Kafka's message specs.

pub mod api_versions;
pub mod configs;
pub mod consumer_protocol;
pub mod delete_records;
pub mod describe_topic_partitions;
pub mod fetch;
pub mod find_coordinator;
pub mod group_admin;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod offsets;
pub mod produce;
pub mod topic_admin;

pub use api_versions::{ApiVersionsRequest, ApiVersionsResponse};
pub use configs::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
pub use delete_records::{DeleteRecordsRequest, DeleteRecordsResponse};
pub use describe_topic_partitions::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
pub use fetch::{FetchRequest, FetchResponse};
pub use find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse};
pub use group_admin::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};
pub use groups::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    SyncGroupRequest, SyncGroupResponse,
};
pub use init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
pub use list_offsets::{ListOffsetsRequest, ListOffsetsResponse};
pub use metadata::{MetadataRequest, MetadataResponse};
pub use offset_for_leader_epoch::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
pub use offsets::{OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse};
pub use produce::{ProduceRequest, ProduceResponse};
pub use topic_admin::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
};

use bytes::{BufMut, Bytes};

use super::{DeferredSlices, WireBuf};

use super::api::ApiKey;
use super::error::DecodeError;

macro_rules! apis {
    ($($key:ident => $request:ident, $response:ident;)*) => {
        /// A decoded request of any API we serve.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $($key($request),)*
        }

        /// A response of any API we serve.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Response {
            $($key($response),)*
        }

        impl Request {
            /// Decodes the body of a request for `key` at `version`; bytes
            /// after the end are refused.
            pub fn decode(key: ApiKey, version: i16, body: &Bytes) -> Result<Request, DecodeError> {
                match Self::decode_lenient(key, version, body)? {
                    (request, 0) => Ok(request),
                    (_, trailing) => Err(DecodeError::TrailingBytes(trailing)),
                }
            }

            /// Decodes the body of a request as Kafka does: bytes after the
            /// end are ignored, and their count is returned.
            pub fn decode_lenient(key: ApiKey, version: i16, body: &Bytes) -> Result<(Request, usize), DecodeError> {
                let flexible = key.spec().is_flexible(version);
                match key {
                    $(ApiKey::$key => super::decode_request_body(body, version, flexible)
                        .map(|(message, trailing)| (Request::$key(message), trailing)),)*
                }
            }

            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Request::$key(_) => ApiKey::$key,)*
                }
            }

            /// Encodes the body at `version` (for clients and tests).
            pub fn encode<B: WireBuf>(&self, version: i16, buf: &mut B) {
                self.encode_deferring(version, buf, None)
            }

            /// Encodes the body at `version`, setting large byte fields
            /// aside in `deferred` (when given) for the caller to write
            /// from where they are.
            pub fn encode_deferring<B: WireBuf>(&self, version: i16, buf: &mut B, deferred: Option<&DeferredSlices>) {
                let flexible = self.api_key().spec().is_flexible(version);
                match self {
                    $(Request::$key(message) => super::encode_body_into(message, version, flexible, buf, deferred),)*
                }
            }
        }

        impl Response {
            /// Decodes the body of a response for `key` at `version`.
            pub fn decode(key: ApiKey, version: i16, body: &Bytes) -> Result<Response, DecodeError> {
                let flexible = key.spec().is_flexible(version);
                match key {
                    $(ApiKey::$key => super::decode_body(body, version, flexible).map(Response::$key),)*
                }
            }

            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Response::$key(_) => ApiKey::$key,)*
                }
            }

            /// Encodes the body at `version`, reading any file slices in.
            pub fn encode<B: WireBuf>(&self, version: i16, buf: &mut B) {
                self.encode_deferring(version, buf, None)
            }

            /// Encodes the body at `version`, setting file slices aside in
            /// `deferred` (when given) for the caller to send after the
            /// buffer's bytes before their positions.
            pub fn encode_deferring<B: WireBuf>(&self, version: i16, buf: &mut B, deferred: Option<&DeferredSlices>) {
                let flexible = self.api_key().spec().is_flexible(version);
                match self {
                    $(Response::$key(message) => super::encode_body_into(message, version, flexible, buf, deferred),)*
                }
            }
        }
    };
}

apis! {
    Produce => ProduceRequest, ProduceResponse;
    Fetch => FetchRequest, FetchResponse;
    ListOffsets => ListOffsetsRequest, ListOffsetsResponse;
    Metadata => MetadataRequest, MetadataResponse;
    OffsetCommit => OffsetCommitRequest, OffsetCommitResponse;
    OffsetFetch => OffsetFetchRequest, OffsetFetchResponse;
    FindCoordinator => FindCoordinatorRequest, FindCoordinatorResponse;
    JoinGroup => JoinGroupRequest, JoinGroupResponse;
    Heartbeat => HeartbeatRequest, HeartbeatResponse;
    LeaveGroup => LeaveGroupRequest, LeaveGroupResponse;
    SyncGroup => SyncGroupRequest, SyncGroupResponse;
    DescribeGroups => DescribeGroupsRequest, DescribeGroupsResponse;
    ListGroups => ListGroupsRequest, ListGroupsResponse;
    ApiVersions => ApiVersionsRequest, ApiVersionsResponse;
    InitProducerId => InitProducerIdRequest, InitProducerIdResponse;
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
    DeleteGroups => DeleteGroupsRequest, DeleteGroupsResponse;
    CreateTopics => CreateTopicsRequest, CreateTopicsResponse;
    DeleteTopics => DeleteTopicsRequest, DeleteTopicsResponse;
    CreatePartitions => CreatePartitionsRequest, CreatePartitionsResponse;
    DescribeCluster => DescribeClusterRequest, DescribeClusterResponse;
    DescribeConfigs => DescribeConfigsRequest, DescribeConfigsResponse;
    AlterConfigs => AlterConfigsRequest, AlterConfigsResponse;
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse;
    DescribeTopicPartitions => DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse;
    DeleteRecords => DeleteRecordsRequest, DeleteRecordsResponse;
    OffsetDelete => OffsetDeleteRequest, OffsetDeleteResponse;
}

impl Request {
    /// A whole request frame (size, header, body) at `version`, as clients
    /// send it.
    pub fn encode_frame(&self, version: i16, correlation_id: i32, client_id: &str) -> bytes::BytesMut {
        self.encode_frame_deferring(version, correlation_id, client_id, None)
    }

    /// As [`encode_frame`](Self::encode_frame), with the frame's large
    /// byte fields (record batches) set aside in `deferred`, positioned in
    /// the returned bytes; the frame's size counts them.
    pub fn encode_frame_deferring(
        &self,
        version: i16,
        correlation_id: i32,
        client_id: &str,
        deferred: Option<&DeferredSlices>,
    ) -> bytes::BytesMut {
        let key = self.api_key();
        let mut frame = bytes::BytesMut::with_capacity(256);
        frame.put_i32(0);
        super::RequestHeader {
            api_key: key as i16,
            api_version: version,
            correlation_id,
            client_id: Some(client_id.to_string()),
        }
        .encode(&mut frame, key.spec().is_flexible(version));
        let before = deferred.map_or(0, DeferredSlices::bytes);
        self.encode_deferring(version, &mut frame, deferred);
        let set_aside = deferred.map_or(0, DeferredSlices::bytes) - before;
        let size = (frame.len() - 4 + set_aside) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        frame
    }
}

/// Whether a response to `key` uses the flexible response header (v1) at
/// `version`. ApiVersions never does (KIP-511): a client that sent a version
/// the broker does not know must still be able to read the answer.
pub fn response_header_is_flexible(key: ApiKey, version: i16) -> bool {
    key != ApiKey::ApiVersions && key.spec().is_flexible(version)
}
