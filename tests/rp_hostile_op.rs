//! The login flow of `oidcgate serve` against an adversarial OpenID Provider
//! (tests/support/hostile_op.rs) that breaks one rule per sign-in: every broken ID token,
//! authorization response or userinfo answer ends with no session and a clear error page, while
//! a rotated signing key (refetched), a signed userinfo response and aggregated claims signed by
//! the issuer are accepted — and aggregated claims from an unknown claims provider are left out.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::Jar;
use support::gateway::{client, echo_upstream, start_gateway};
use support::hostile_op::{Fault, HostileOp};

struct Attempt {
    status: StatusCode,
    body: String,
    /// The session cookie the callback set, if any.
    session: Option<String>,
}

/// One sign-in through the gateway at `base`; `html` asks for the browser's error page.
async fn attempt(base: &str, html: bool) -> Attempt {
    let http = client();
    let mut jar = Jar::default();
    let start = http
        .get(format!("{base}/login?rd=%2Fapp"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    jar.absorb(start.headers());
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let back = http.get(&authorize).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    let accept = if html {
        "text/html"
    } else {
        "application/json"
    };
    let r = http
        .get(&callback)
        .header("cookie", jar.header())
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("oidcgate_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|v| !v.is_empty());
    Attempt {
        status: r.status(),
        body: r.text().await.unwrap_or_default(),
        session,
    }
}

/// The gateway in front of `upstream` as the OP's client `app`, plus `extra` settings.
async fn app_gateway(issuer: &str, upstream: &str, extra: &[(&str, &str)]) -> support::Running {
    let mut settings = vec![
        ("OIDC_CLIENT_ID", "app"),
        ("OIDC_CLIENT_SECRET", "app-secret"),
    ];
    settings.extend_from_slice(extra);
    start_gateway(issuer, upstream, &settings).await
}

/// The groups the upstream sees for a session.
async fn upstream_groups(base: &str, session: &str) -> String {
    let seen: Value = client()
        .get(format!("{base}/app"))
        .header("cookie", format!("oidcgate_session={session}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen["headers"]["x-auth-request-groups"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn every_broken_rule_ends_without_a_session() {
    let op = HostileOp::start("app").await;
    let (upstream, _task) = echo_upstream().await;
    let gw = app_gateway(
        &op.issuer,
        &upstream,
        &[
            // Refetch the JWKS for an unknown kid at once (the rotated-key case).
            ("OIDC_JWKS_REFETCH_COOLDOWN", "0s"),
        ],
    )
    .await;
    let base = &gw.base_url;

    let ok = attempt(base, false).await;
    assert_eq!(ok.status, StatusCode::FOUND, "{}", ok.body);
    assert!(ok.session.is_some());

    for (fault, status, says) in [
        (
            Fault::BadSignature,
            StatusCode::UNAUTHORIZED,
            "signature verification failed",
        ),
        (Fault::AlgNone, StatusCode::UNAUTHORIZED, "unsigned tokens"),
        (Fault::Hs256WithPublicKey, StatusCode::UNAUTHORIZED, "HS256"),
        (
            Fault::WrongIss,
            StatusCode::UNAUTHORIZED,
            "issuer does not match",
        ),
        (
            Fault::WrongAud,
            StatusCode::UNAUTHORIZED,
            "audience does not match",
        ),
        (
            Fault::ExtraUntrustedAud,
            StatusCode::UNAUTHORIZED,
            "audience this client does not trust",
        ),
        (
            Fault::MissingSub,
            StatusCode::UNAUTHORIZED,
            "claim \\\"sub\\\"",
        ),
        (
            Fault::MissingIat,
            StatusCode::UNAUTHORIZED,
            "claim \\\"iat\\\"",
        ),
        (Fault::Expired, StatusCode::UNAUTHORIZED, "expired"),
        (
            Fault::WrongNonce,
            StatusCode::UNAUTHORIZED,
            "nonce does not match",
        ),
        (Fault::WrongAtHash, StatusCode::UNAUTHORIZED, "at_hash"),
        (
            Fault::KidlessSeveralKeys,
            StatusCode::UNAUTHORIZED,
            "no kid and 2 keys",
        ),
        (
            Fault::UserinfoSubMismatch,
            StatusCode::UNAUTHORIZED,
            "another subject",
        ),
        (Fault::WrongIssParam, StatusCode::BAD_REQUEST, "RFC 9207"),
        (Fault::MissingIssParam, StatusCode::BAD_REQUEST, "RFC 9207"),
        (
            Fault::SignedUserinfoForged,
            StatusCode::UNAUTHORIZED,
            "signed userinfo response is invalid",
        ),
    ] {
        op.set_fault(fault);
        let a = attempt(base, false).await;
        assert_eq!(a.status, status, "{fault:?}: {}", a.body);
        assert!(a.body.contains(says), "{fault:?}: {}", a.body);
        assert_eq!(a.session, None, "{fault:?} must not leave a session");
    }

    // Browsers get a readable page, with the reason escaped, never a redirect.
    op.set_fault(Fault::WrongNonce);
    let page = attempt(base, true).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body.contains("<html") && page.body.contains("nonce does not match"),
        "{}",
        page.body
    );

    // Accepted: a signing key the JWKS gained after the gateway cached it (refetched once).
    op.set_fault(Fault::RotatedKey);
    let rotated = attempt(base, false).await;
    assert_eq!(rotated.status, StatusCode::FOUND, "{}", rotated.body);
    assert!(rotated.session.is_some());

    // Accepted: a signed userinfo response whose aggregated groups the issuer signed.
    op.set_fault(Fault::SignedUserinfo);
    let signed = attempt(base, false).await;
    assert_eq!(signed.status, StatusCode::FOUND, "{}", signed.body);
    let session = signed.session.expect("a session");
    assert_eq!(upstream_groups(base, &session).await, "admins,users");

    // Aggregated groups from an unknown claims provider are not taken on trust.
    op.set_fault(Fault::ForeignAggregatedClaims);
    let foreign = attempt(base, false).await;
    assert_eq!(foreign.status, StatusCode::FOUND, "{}", foreign.body);
    let session = foreign.session.expect("a session");
    assert_eq!(upstream_groups(base, &session).await, "");
}

#[tokio::test]
async fn explicit_endpoints_skip_discovery() {
    let op = HostileOp::start("app").await;
    let (upstream, _task) = echo_upstream().await;
    let i = &op.issuer;
    let (authorize, token, userinfo, jwks) = (
        format!("{i}/authorize"),
        format!("{i}/token"),
        format!("{i}/userinfo"),
        format!("{i}/jwks"),
    );
    let gw = app_gateway(
        i,
        &upstream,
        &[
            ("OIDC_OP_AUTHORIZATION_ENDPOINT", authorize.as_str()),
            ("OIDC_OP_TOKEN_ENDPOINT", token.as_str()),
            ("OIDC_OP_USER_ENDPOINT", userinfo.as_str()),
            ("OIDC_OP_JWKS_ENDPOINT", jwks.as_str()),
            ("OIDC_AUDIENCE", "api"),
        ],
    )
    .await;
    let ok = attempt(&gw.base_url, false).await;
    assert_eq!(ok.status, StatusCode::FOUND, "{}", ok.body);
    assert!(ok.session.is_some());
    // Userinfo from the explicit endpoint fills the profile of a bare ID token.
    op.set_fault(Fault::SignedUserinfo);
    let signed = attempt(&gw.base_url, false).await;
    let session = signed.session.expect("a session");
    assert_eq!(
        upstream_groups(&gw.base_url, &session).await,
        "admins,users"
    );
    assert_eq!(op.discovery_hits(), 0, "discovery is skipped");
}

#[tokio::test]
async fn pending_logins_per_browser_are_bounded() {
    let op = HostileOp::start("app").await;
    let (upstream, _task) = echo_upstream().await;
    let gw = app_gateway(&op.issuer, &upstream, &[("MAX_PENDING_LOGINS", "2")]).await;
    let mut jar = Jar::default();
    let mut started = Vec::new();
    for _ in 0..3 {
        let r = client()
            .get(format!("{}/login", gw.base_url))
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap();
        jar.absorb(r.headers());
        let live: Vec<String> = jar
            .0
            .iter()
            .filter(|(k, v)| k.starts_with("oidcgate_login.") && !v.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        started.push(live);
    }
    assert_eq!(started[0].len(), 1);
    assert_eq!(started[1].len(), 2);
    assert_eq!(
        started[2].len(),
        2,
        "the oldest was dropped: {:?}",
        started[2]
    );
}

#[tokio::test]
async fn email_rules_need_a_verified_address_and_groups_come_from_the_configured_claim() {
    let op = HostileOp::start("app").await;
    let (upstream, _task) = echo_upstream().await;
    let gw = app_gateway(
        &op.issuer,
        &upstream,
        &[
            ("ALLOWED_EMAIL_DOMAINS", "example.com"),
            ("OIDC_GROUPS_CLAIM", "roles"),
        ],
    )
    .await;
    let base = &gw.base_url;
    let ok = attempt(base, false).await;
    let session = ok.session.expect("a session");
    assert_eq!(upstream_groups(base, &session).await, "ops,auditors");

    // The same address, marked unverified by the IdP: signed in, but no email rule matches.
    op.set_fault(Fault::UnverifiedEmail);
    let unverified = attempt(base, false).await;
    let session = unverified.session.expect("a session");
    let r = client()
        .get(format!("{base}/app"))
        .header("cookie", format!("oidcgate_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
