//! Response bodies, as the bundled client decodes them, for the API and
//! version the first four bytes pick: whatever decodes must come back the
//! same through the broker's encoder and the decoder again.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use minikafka::protocol::ApiKey;
use minikafka::protocol::messages::Response;

fuzz_target!(|data: &[u8]| {
    let [k0, k1, v0, v1, body @ ..] = data else { return };
    let Some(api) = ApiKey::from_i16(i16::from_be_bytes([*k0, *k1])) else {
        return;
    };
    let version = i16::from_be_bytes([*v0, *v1]);
    if !api.spec().supports(version) {
        return;
    }
    let Ok(response) = Response::decode(api, version, &Bytes::copy_from_slice(body)) else {
        return;
    };
    let mut encoded = Vec::new();
    response.encode(version, &mut encoded);
    let again = Response::decode(api, version, &Bytes::from(encoded))
        .unwrap_or_else(|e| panic!("{api:?} v{version}: a re-encoded response does not decode: {e}"));
    assert_eq!(again, response, "{api:?} v{version}: decode(encode(response)) differs");
});
