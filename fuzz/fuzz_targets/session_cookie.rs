//! Fuzzes session cookies as a browser could send them: the input is up to three cookie values
//! separated by newlines (`oidcgate_session`, `.1`, `.2`), rejoined by `CookieChunks::join` and
//! opened by `SessionKeys::open` for every purpose under a fixed secret (with a previous one for
//! rotation). Whatever opens must seal and open again to the same bytes. Nothing may panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use oidcgate_core::session::{CookieChunks, Purpose, SessionKeys};

const NAME: &str = "oidcgate_session";

static KEYS: LazyLock<SessionKeys> = LazyLock::new(|| {
    SessionKeys::new(
        b"fuzz-session-secret-of-32-bytes-or-more",
        &[b"fuzz-previous-secret-of-32-bytes-or-more"],
    )
    .expect("fixed secrets are long enough")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parts: Vec<&str> = text.split('\n').collect();
    let chunks = CookieChunks::default();
    let names = chunks.names(NAME);
    let Some(value) = chunks.join(NAME, |n| {
        let i = names.iter().position(|x| x == n)?;
        parts.get(i).copied().filter(|p| !p.is_empty())
    }) else {
        return;
    };
    for purpose in [Purpose::Session, Purpose::Login, Purpose::Ticket] {
        if let Ok(plain) = KEYS.open(purpose, NAME, &value) {
            let sealed = KEYS.seal(purpose, NAME, &plain).expect("reseal");
            assert_eq!(KEYS.open(purpose, NAME, &sealed).expect("reopen"), plain);
        }
    }
});
