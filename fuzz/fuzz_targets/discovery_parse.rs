//! Fuzzes OpenID Provider discovery documents: `ProviderMetadata::from_json` on any bytes,
//! including its error path (which shortens serde's message). When a document parses, its
//! endpoints are walked and the issuer goes through `discovery_url`. Nothing here may panic,
//! whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oidcgate_core::provider::{ProviderMetadata, discovery_url};

fuzz_target!(|data: &[u8]| {
    let Ok(metadata) = ProviderMetadata::from_json(data) else {
        return;
    };
    let _ = metadata.endpoints().count();
    let _ = discovery_url(&metadata.issuer);
});
