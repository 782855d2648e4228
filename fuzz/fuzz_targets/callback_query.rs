//! Fuzzes the authorization-response parser of the relying party: `CallbackParams::from_query`
//! on any UTF-8 query string (form-urlencoded decoding, then the repeated-parameter check), and
//! `CallbackParams::from_pairs` on the same string split on `&` and `=` without decoding (as a
//! framework that already split a `form_post` body would pass it). Whatever parses must
//! survive a round trip: re-encoding its fields and parsing them again gives the same fields.
//! Nothing may panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oidcgate_core::client::CallbackParams;

fn fields(p: &CallbackParams) -> [(&'static str, Option<&str>); 5] {
    [
        ("code", p.code.as_deref()),
        ("state", p.state.as_deref()),
        ("iss", p.iss.as_deref()),
        ("error", p.error.as_deref()),
        ("error_description", p.error_description.as_deref()),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let raw_pairs = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")));
    let _ = CallbackParams::from_pairs(raw_pairs);
    let Ok(params) = CallbackParams::from_query(query) else {
        return;
    };
    let mut encoded = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields(&params) {
        if let Some(value) = value {
            encoded.append_pair(name, value);
        }
    }
    let again = CallbackParams::from_query(&encoded.finish()).expect("re-encoded callback parses");
    assert_eq!(fields(&again), fields(&params));
});
