//! Configs: DescribeConfigs (32, v0-4, flexible 4+), AlterConfigs (33,
//! v0-2, flexible 2+), IncrementalAlterConfigs (44, v0-1, flexible 1+).

use crate::message;

/// Resource types (Kafka's `ConfigResource.Type`).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Config sources (`DescribeConfigsResponse.ConfigSource`).
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

message! {
    pub struct DescribeConfigsRequest {
        resources: Vec<DescribeConfigsResource> => 0..,
        include_synonyms: bool => 1..,
        include_documentation: bool => 3..,
    }
}

message! {
    pub struct DescribeConfigsResource {
        resource_type: i8 => 0..,
        resource_name: String => 0..,
        /// Null asks for every config.
        configuration_keys: Option<Vec<String>> => 0..,
    }
}

message! {
    pub struct DescribeConfigsResponse {
        throttle_time_ms: i32 => 0..,
        results: Vec<DescribeConfigsResult> => 0..,
    }
}

message! {
    pub struct DescribeConfigsResult {
        error_code: i16 => 0..,
        error_message: Option<String> => 0..,
        resource_type: i8 => 0..,
        resource_name: String => 0..,
        configs: Vec<DescribeConfigsResourceResult> => 0..,
    }
}

message! {
    pub struct DescribeConfigsResourceResult {
        name: String => 0..,
        value: Option<String> => 0..,
        read_only: bool => 0..,
        is_default: bool => 0..=0,
        config_source: i8 = -1 => 1..,
        is_sensitive: bool => 0..,
        synonyms: Vec<DescribeConfigsSynonym> => 1..,
        config_type: i8 => 3..,
        documentation: Option<String> => 3..,
    }
}

message! {
    pub struct DescribeConfigsSynonym {
        name: String => 1..,
        value: Option<String> => 1..,
        source: i8 => 1..,
    }
}

message! {
    pub struct AlterConfigsRequest {
        resources: Vec<AlterConfigsResource> => 0..,
        validate_only: bool => 0..,
    }
}

message! {
    pub struct AlterConfigsResource {
        resource_type: i8 => 0..,
        resource_name: String => 0..,
        configs: Vec<AlterableConfig> => 0..,
    }
}

message! {
    pub struct AlterableConfig {
        name: String => 0..,
        value: Option<String> => 0..,
    }
}

message! {
    pub struct AlterConfigsResponse {
        throttle_time_ms: i32 => 0..,
        responses: Vec<AlterConfigsResourceResponse> => 0..,
    }
}

message! {
    pub struct AlterConfigsResourceResponse {
        error_code: i16 => 0..,
        error_message: Option<String> => 0..,
        resource_type: i8 => 0..,
        resource_name: String => 0..,
    }
}

message! {
    pub struct IncrementalAlterConfigsRequest {
        resources: Vec<IncrementalAlterConfigsResource> => 0..,
        validate_only: bool => 0..,
    }
}

message! {
    pub struct IncrementalAlterConfigsResource {
        resource_type: i8 => 0..,
        resource_name: String => 0..,
        configs: Vec<IncrementalAlterableConfig> => 0..,
    }
}

message! {
    pub struct IncrementalAlterableConfig {
        name: String => 0..,
        /// 0 set, 1 delete, 2 append, 3 subtract.
        config_operation: i8 => 0..,
        value: Option<String> => 0..,
    }
}

message! {
    pub struct IncrementalAlterConfigsResponse {
        throttle_time_ms: i32 => 0..,
        responses: Vec<AlterConfigsResourceResponse> => 0..,
    }
}
