//! A request frame (without its size prefix) through everything the broker
//! does with one before a handler: the prefix, the header for the version's
//! flexibility, and the body's decoder. Whatever decodes must survive an
//! encode and decode again unchanged.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use minikafka::protocol::header::RequestPrefix;
use minikafka::protocol::messages::Request;
use minikafka::protocol::{ApiKey, RequestHeader};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let Ok(prefix) = RequestPrefix::parse(&frame) else {
        return;
    };
    let Some(api) = ApiKey::from_i16(prefix.api_key) else {
        return;
    };
    let version = prefix.api_version;
    let spec = api.spec();
    if !spec.supports(version) {
        return;
    }
    let Ok((_, body)) = RequestHeader::parse(&frame, spec.is_flexible(version)) else {
        return;
    };
    let Ok((request, _trailing)) = Request::decode_lenient(api, version, &body) else {
        return;
    };
    let mut encoded = Vec::new();
    request.encode(version, &mut encoded);
    let again = Request::decode(api, version, &Bytes::from(encoded))
        .unwrap_or_else(|e| panic!("{api:?} v{version}: a re-encoded request does not decode: {e}"));
    assert_eq!(again, request, "{api:?} v{version}: decode(encode(request)) differs");
});
