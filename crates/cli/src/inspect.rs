//! `oidcgate inspect`: decode a JWT for a human, and with `--issuer` verify it and name the
//! check that failed. Without `--issuer` nothing is verified and the output says so.

use std::io::{IsTerminal, Read};
use std::sync::Arc;
use std::time::SystemTime;

use oidcgate_core::http::UrlPolicy;
use oidcgate_core::jose::{JoseError, UnverifiedJwt};
use oidcgate_core::provider::KeyCacheConfig;
use oidcgate_core::validate::{AccessTokenValidator, IssuerPolicy, ValidationError};
use serde_json::{Map, Value};

use crate::Outcome;
use crate::timefmt;

/// Largest input read from stdin.
const MAX_INPUT: u64 = 64 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Verify against this issuer's keys (found by discovery).
    #[arg(long, env = "OIDC_ISSUER")]
    issuer: Option<String>,
    /// Expected audience when verifying (default: whatever the token names, reported as not
    /// checked).
    #[arg(long, requires = "issuer")]
    audience: Option<String>,
    /// Require the RFC 9068 access-token type `at+jwt`.
    #[arg(long, requires = "issuer")]
    require_at_jwt: bool,
    /// Allow plain http to a non-loopback issuer (development only).
    #[arg(long, env = "OIDC_ALLOW_HTTP")]
    allow_http: bool,
    /// The token, or `-` to read it from standard input.
    token: String,
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn good(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn bad(&self, t: &str) -> String {
        self.paint("31", t)
    }
    fn head(&self, t: &str) -> String {
        self.paint("1", t)
    }
}

fn read_token(arg: &str) -> Result<String, String> {
    let raw = if arg == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .take(MAX_INPUT)
            .read_to_string(&mut buf)
            .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
        buf
    } else {
        arg.to_owned()
    };
    let trimmed = raw.trim();
    let token = match trimmed.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => trimmed,
    };
    Ok(token.to_owned())
}

pub async fn run(args: Args) -> Outcome {
    let style = Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let token = match read_token(&args.token) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    let jwt = match UnverifiedJwt::parse(&token) {
        Ok(jwt) => jwt,
        Err(e) => {
            eprintln!("error: input is not a JWS: {e}");
            return Outcome::Usage;
        }
    };
    let header = header_json(&token);
    let claims: Option<Map<String, Value>> = serde_json::from_slice(jwt.unverified_payload()).ok();
    println!("{}", style.head("Header"));
    println!("{}", pretty(&header));
    println!("{}", style.head("Claims"));
    match &claims {
        Some(c) => println!("{}", pretty(&Value::Object(c.clone()))),
        None => println!(
            "(payload is not a JSON object: {} bytes)",
            jwt.unverified_payload().len()
        ),
    }
    let now = SystemTime::now();
    if let Some(c) = &claims {
        let times: Vec<_> = ["iat", "nbf", "auth_time", "exp"]
            .into_iter()
            .filter_map(|n| Some((n, c.get(n)?.as_f64()? as i64)))
            .collect();
        if !times.is_empty() {
            println!("{}", style.head("Times"));
            for (name, t) in times {
                let rel = timefmt::relative(t, now);
                let note = match name {
                    "exp" if t < unix(now) => style.bad(&format!("expired {rel}")),
                    "exp" => format!("expires {rel}"),
                    _ => rel,
                };
                println!("  {name:<9} {}  ({note})", timefmt::date(t));
            }
        }
    }
    let Some(issuer) = args.issuer else {
        println!(
            "{}",
            style.head("Signature: not verified (pass --issuer URL to verify)")
        );
        return Outcome::Ok;
    };
    let token_aud = claims.as_ref().and_then(|c| match c.get("aud") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    });
    let (audience, aud_checked) = match (args.audience, token_aud) {
        (Some(a), _) => (a, true),
        (None, Some(a)) => (a, false),
        (None, None) => ("(none)".to_owned(), false),
    };
    let policy = IssuerPolicy::new(&issuer, audience).require_at_jwt(args.require_at_jwt);
    let key_cache = KeyCacheConfig {
        url_policy: UrlPolicy {
            allow_http: args.allow_http,
        },
        ..Default::default()
    };
    let validator = match AccessTokenValidator::builder()
        .issuer(policy)
        .key_cache(key_cache)
        .build()
    {
        Ok(v) => Arc::new(v),
        Err(e) => {
            eprintln!("error: --issuer: {e}");
            return Outcome::Usage;
        }
    };
    match validator.validate(&token).await {
        Ok(verified) => {
            println!(
                "{} signature ({} key {}) and claims checked against {issuer}",
                style.good("VALID:"),
                verified.alg(),
                verified.kid().unwrap_or("without kid"),
            );
            if !aud_checked {
                println!("note: aud was not checked (pass --audience)");
            }
            Outcome::Ok
        }
        Err(ValidationError::KeysUnavailable(e)) => {
            eprintln!("error: {e}");
            Outcome::Failed
        }
        Err(e) => {
            let check = match &e {
                ValidationError::Jose(JoseError::UnknownKid(_)) => "kid unknown",
                ValidationError::Jose(JoseError::AlgorithmNotAllowed(_)) => "algorithm not allowed",
                other => other.check(),
            };
            println!("{} {check}: {e}", style.bad("INVALID:"));
            Outcome::Failed
        }
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The header object as JSON (it parsed already, so this only fails on impossible input).
fn header_json(token: &str) -> Value {
    token
        .split('.')
        .next()
        .and_then(oidcgate_core::jose::b64::decode)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
