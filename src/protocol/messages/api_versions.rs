//! ApiVersions (key 18), versions 0-4, flexible from 3.

use crate::message;

message! {
    pub struct ApiVersionsRequest {
        /// KIP-511: the client's software name and version.
        client_software_name: String => 3..,
        client_software_version: String => 3..,
    }
}

message! {
    pub struct ApiVersionsResponse {
        error_code: i16 => 0..,
        api_keys: Vec<ApiVersion> => 0..,
        throttle_time_ms: i32 => 1..,
        supported_features: Vec<SupportedFeatureKey> => 3..; tag 0,
        finalized_features_epoch: i64 = -1 => 3..; tag 1,
        finalized_features: Vec<FinalizedFeatureKey> => 3..; tag 2,
        zk_migration_ready: bool => 3..; tag 3,
    }
}

message! {
    pub struct ApiVersion {
        api_key: i16 => 0..,
        min_version: i16 => 0..,
        max_version: i16 => 0..,
    }
}

message! {
    pub struct SupportedFeatureKey {
        name: String => 3..,
        min_version: i16 => 3..,
        max_version: i16 => 3..,
    }
}

message! {
    pub struct FinalizedFeatureKey {
        name: String => 3..,
        max_version_level: i16 => 3..,
        min_version_level: i16 => 3..,
    }
}
