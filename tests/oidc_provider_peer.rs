//! Smoke test of the independent OpenID Provider peer (npm `oidc-provider`, started from
//! tests/peers/oidc_provider.mjs): discovery, JWKS, RFC 9068 JWT access tokens for the API
//! resource from client credentials and from the authorization code flow (checked by oidcgate's
//! own access-token validator), and the code flow with PKCE through the peer's login form ending
//! in an ID token and a rotating refresh token.

mod support;

use oidcgate_core::client::authorize::pkce_challenge;
use oidcgate_core::jose::{AlgorithmSet, JwkSet, UnverifiedJwt, b64};
use oidcgate_core::validate::{AccessTokenValidator, IssuerPolicy};
use serde_json::Value;
use support::browser::{Jar, query};
use support::oidc_provider::{
    API_AUDIENCE, API_RESOURCE, no_redirect_client, provider_login, start_oidc_provider,
};

const REDIRECT: &str = "http://127.0.0.1:4180/auth/callback";

/// A JWT segment's JSON.
fn segment(jwt: &str, index: usize) -> Value {
    let part = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(&b64::decode(part).unwrap()).unwrap()
}

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body
}

#[tokio::test]
async fn oidc_provider_peer_issues_jwt_access_tokens_and_completes_the_code_flow() {
    let peer = start_oidc_provider(&[]).await;
    let issuer = peer.base_url.clone();
    let http = no_redirect_client();

    let meta = json(
        http.get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(meta["issuer"], issuer.as_str());
    let endpoint = |name: &str| meta[name].as_str().unwrap().to_owned();

    let jwks = http
        .get(endpoint("jwks_uri"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys = JwkSet::from_json(&jwks).unwrap();
    let published: Value = serde_json::from_slice(&jwks).unwrap();
    let rsa = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .expect("an RSA key");
    assert!(rsa["kid"].is_string() && rsa.get("alg").is_none(), "{rsa}");

    let validator = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(&issuer, API_AUDIENCE).require_at_jwt(true))
        .build()
        .unwrap();

    // Client credentials for the API resource: an RFC 9068 JWT for audience demo-api.
    let service = json(
        http.post(endpoint("token_endpoint"))
            .basic_auth("demo-service", Some("demo-service-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", API_RESOURCE),
                ("scope", "api:read"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let access = service["access_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "{access}");
    assert_eq!(segment(access, 0)["typ"], "at+jwt");
    assert_eq!(segment(access, 1)["aud"], API_AUDIENCE);
    let claims = validator.validate(access).await.unwrap();
    assert_eq!(claims.subject(), Some("demo-service"));
    assert!(claims.has_scope("api:read"));

    // Authorization code + PKCE for `demo` through the peer's login form.
    let verifier = b64::encode([42u8; 32]);
    let mut authorize = url::Url::parse(&endpoint("authorization_endpoint")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", "demo")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid profile email groups api:read")
        .append_pair("resource", API_RESOURCE)
        .append_pair("state", "st-1")
        .append_pair("nonce", "n-1")
        .append_pair("code_challenge", &pkce_challenge(&verifier))
        .append_pair("code_challenge_method", "S256");
    let mut jar = Jar::default();
    let callback = provider_login(&http, &mut jar, authorize.as_str(), "alice", "wonderland").await;
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let params = query(&callback);
    assert_eq!(params["state"], "st-1");
    assert_eq!(params["iss"], issuer);

    let tokens = json(
        http.post(endpoint("token_endpoint"))
            .basic_auth("demo", Some("demo-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", params["code"].as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = UnverifiedJwt::parse(tokens["id_token"].as_str().unwrap())
        .unwrap()
        .verify(&keys, AlgorithmSet::default())
        .unwrap()
        .claims()
        .unwrap();
    assert_eq!(id["iss"], issuer.as_str());
    assert_eq!(id["aud"], "demo");
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["nonce"], "n-1");
    let claims = validator
        .validate(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.subject(), Some("alice"));
    assert!(claims.has_scope("api:read"));

    // The refresh token rotates.
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token");
    let refreshed = json(
        http.post(endpoint("token_endpoint"))
            .basic_auth("demo", Some("demo-secret"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(refreshed["refresh_token"].as_str(), Some(refresh));
    assert_eq!(
        refreshed["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .count(),
        3
    );
}
