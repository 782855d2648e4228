//! Fuzzes JWK Set loading: `JwkSet::from_json` on any bytes (JSON parsing with the duplicate
//! member check, then every JWK through key-type, curve, size and private-member checks and
//! aws-lc-rs key parsing). When a set loads, key selection is run for a few token headers.
//! Nothing here may panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oidcgate_core::jose::{Algorithm, Header, JwkSet};

fuzz_target!(|data: &[u8]| {
    let Ok(set) = JwkSet::from_json(data) else {
        return;
    };
    let _ = set.skipped().len();
    let mut kids: Vec<String> = set.kids().map(str::to_owned).collect();
    kids.truncate(4);
    for key in set.keys() {
        let _ = (key.kid(), key.kind(), key.declared_alg());
    }
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let _ = set.select(&Header::new(alg, None, None));
        for kid in &kids {
            let _ = set.contains_kid(kid);
            let _ = set.select(&Header::new(alg, Some(kid.clone()), None));
        }
    }
});
