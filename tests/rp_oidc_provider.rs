//! The relying-party client of oidcgate-core (`oidcgate_core::client::OidcClient`) against an
//! independent OpenID Provider (npm `oidc-provider`, started from tests/peers/oidc_provider.mjs):
//! discovery, the code flow with PKCE through the peer's login form, the callback's state and
//! RFC 9207 `iss` checks on the peer's real callbacks, the ID token (subject, nonce, `at_hash`),
//! userinfo with the opaque access token, refresh with rotation, introspection and revocation,
//! an RFC 9068 JWT access token for the API when the authorization request names the resource
//! indicator, and RP-initiated logout from the discovered `end_session_endpoint` — after which
//! a `prompt=none` request comes back as a `login_required` error callback. A `private_key_jwt`
//! client (ES256 and RS256 keys, and Node-written private JWKs for PS256 and EdDSA) authenticates
//! every grant and the introspection and revocation endpoints; `client_secret_jwt` works; an
//! unregistered key or a wrong secret is `invalid_client`.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use oidcgate_core::client::{CallbackParams, ClientAuth, ClientConfig, ClientError, OidcClient};
use oidcgate_core::http::ReqwestClient;
use oidcgate_core::jose::Algorithm;
use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::validate::{AccessTokenValidator, IssuerPolicy, ValidationError};
use reqwest::header::{COOKIE, LOCATION};
use support::browser::{Jar, field};
use support::oidc_provider::{
    API_AUDIENCE, API_RESOURCE, no_redirect_client, provider_login, start_oidc_provider,
};

const REDIRECT: &str = "http://127.0.0.1:4180/auth/callback";
const POST_LOGOUT: &str = "http://127.0.0.1:4180/";

fn http() -> Arc<ReqwestClient> {
    Arc::new(ReqwestClient::new(Default::default()).unwrap())
}

async fn demo_client(issuer: &str) -> OidcClient {
    OidcClient::discover(
        ClientConfig::confidential(issuer, "demo", "demo-secret"),
        http(),
    )
    .await
    .unwrap()
}

/// The callback URL's query, parsed the way an application would.
fn callback_params(callback: &str) -> CallbackParams {
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let url = url::Url::parse(callback).unwrap();
    CallbackParams::from_query(url.query().unwrap_or("")).unwrap()
}

#[tokio::test]
async fn code_flow_userinfo_refresh_introspection_revocation_and_logout() {
    let peer = start_oidc_provider(&[]).await;
    let issuer = peer.base_url.clone();
    let client = demo_client(&issuer).await;
    let end_session = client
        .metadata()
        .end_session_endpoint
        .clone()
        .expect("the peer advertises end_session_endpoint");
    assert_eq!(end_session.as_str(), format!("{issuer}/session/end"));

    let (url, pending) = client
        .authorization_request(REDIRECT, "openid profile email")
        .build()
        .unwrap();
    let browser = no_redirect_client();
    let mut jar = Jar::default();
    let callback = provider_login(&browser, &mut jar, url.as_str(), "alice", "wonderland").await;
    let params = callback_params(&callback);
    assert_eq!(params.iss.as_deref(), Some(issuer.as_str()), "RFC 9207 iss");

    // The callback checks refuse tampered copies (without spending the code).
    let forged = CallbackParams {
        state: Some("forged".into()),
        ..params.clone()
    };
    assert!(matches!(
        client.handle_callback(&pending, &forged).await,
        Err(ClientError::StateMismatch)
    ));
    let no_iss = CallbackParams {
        iss: None,
        ..params.clone()
    };
    assert!(
        matches!(
            client.handle_callback(&pending, &no_iss).await,
            Err(ClientError::IssuerMismatch)
        ),
        "the peer advertises authorization_response_iss_parameter_supported"
    );

    let login = client.handle_callback(&pending, &params).await.unwrap();
    assert_eq!(login.id_token.subject(), Some("alice"));
    assert_eq!(
        login.id_token.string_claim("nonce"),
        Some(pending.nonce.as_str())
    );
    assert_eq!(login.id_token.audiences(), ["demo"]);
    let access = login.tokens.access_token.clone();
    assert!(!access.contains('.'), "no resource: an opaque access token");

    let info = client.userinfo(&access, "alice").await.unwrap();
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["name"], "Alice Liddell");
    assert!(matches!(
        client.userinfo(&access, "bob").await,
        Err(ClientError::UserinfoSubjectMismatch)
    ));

    // Refresh: a new access token and ID token, and the refresh token rotates.
    let refresh = login.tokens.refresh_token.clone().expect("a refresh token");
    let refreshed = client
        .refresh(&refresh, Some("alice"), Some(&pending.nonce))
        .await
        .unwrap();
    let rotated = refreshed
        .refresh_token
        .clone()
        .expect("a new refresh token");
    assert_ne!(rotated, refresh);
    assert_ne!(refreshed.access_token, access);
    assert!(
        refreshed.id_token.is_some(),
        "a new ID token (openid scope)"
    );

    // A refreshed ID token for another subject than expected is refused (the peer still
    // rotated, so this spends `rotated`).
    let err = client
        .refresh(&rotated, Some("bob"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::IdToken(ValidationError::SubjectMismatch)),
        "{err:?}"
    );
    // The rotated-out refresh token is refused.
    let err = client
        .refresh(&refresh, Some("alice"), None)
        .await
        .unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_grant"), "{err:?}");
    // The code is single-use.
    let again = client.handle_callback(&pending, &params).await.unwrap_err();
    assert_eq!(again.oauth_error(), Some("invalid_grant"), "{again:?}");

    // oidc-provider answers a reused refresh token or a replayed code by revoking the whole
    // grant (OAuth security BCP; RFC 6749 §4.1.2), so introspection and revocation use the
    // tokens of a second sign-in. The jar holds the peer's session, so no login form appears
    // (the wrong password is never sent): single sign-on.
    let (url, pending) = client
        .authorization_request(REDIRECT, "openid profile email")
        .build()
        .unwrap();
    let callback = provider_login(&browser, &mut jar, url.as_str(), "alice", "not-used").await;
    let second = client
        .handle_callback(&pending, &callback_params(&callback))
        .await
        .unwrap();
    let access = second.tokens.access_token;
    let active = client
        .introspect(&access, Some("access_token"))
        .await
        .unwrap();
    assert_eq!(active["active"], true, "{active:?}");
    assert_eq!(active["sub"], "alice", "{active:?}");
    assert_eq!(active["client_id"], "demo", "{active:?}");
    assert_eq!(active["token_type"], "Bearer", "{active:?}");
    client.revoke(&access, Some("access_token")).await.unwrap();
    let inactive = client.introspect(&access, None).await.unwrap();
    assert_eq!(inactive["active"], false, "{inactive:?}");
    assert!(matches!(
        client.userinfo(&access, "alice").await,
        Err(ClientError::OAuth { status: 401, .. })
    ));

    // RP-initiated logout: the URL is built on the discovered endpoint, the peer accepts its
    // parameters (its confirmation page, not an error), and confirming returns to the
    // post-logout redirect URI with the state.
    let logout = client
        .end_session_url(
            login.tokens.id_token.as_deref(),
            Some(POST_LOGOUT),
            Some("s1"),
        )
        .unwrap();
    assert!(
        logout.as_str().starts_with(&format!("{end_session}?")),
        "{logout}"
    );
    let q: HashMap<String, String> = logout.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "demo");
    assert_eq!(q["post_logout_redirect_uri"], POST_LOGOUT);
    assert_eq!(q["state"], "s1");
    assert_eq!(
        q["id_token_hint"],
        login.tokens.id_token.as_deref().unwrap()
    );
    let page = browser
        .get(logout.as_str())
        .header(COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    jar.absorb(page.headers());
    let status = page.status();
    let html = page.text().await.unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("op.logoutForm"), "{html}");
    let confirm = browser
        .post(format!("{end_session}/confirm"))
        .header(COOKIE, jar.header())
        .form(&[("xsrf", field(&html, "xsrf").as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    jar.absorb(confirm.headers());
    assert_eq!(confirm.status(), 303);
    let back = confirm.headers()[LOCATION].to_str().unwrap();
    assert_eq!(back, format!("{POST_LOGOUT}?state=s1"));

    // Signed out: prompt=none comes back as an error callback, which the client reports.
    let (url, pending) = client
        .authorization_request(REDIRECT, "openid")
        .prompt("none")
        .build()
        .unwrap();
    let response = browser
        .get(url.as_str())
        .header(COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    let mut location = url
        .join(response.headers()[LOCATION].to_str().unwrap())
        .unwrap();
    // oidc-provider may resume the request on its own origin before answering the client.
    for _ in 0..4 {
        if location.as_str().starts_with(REDIRECT) {
            break;
        }
        let next = browser
            .get(location.as_str())
            .header(COOKIE, jar.header())
            .send()
            .await
            .unwrap();
        location = location
            .join(next.headers()[LOCATION].to_str().unwrap())
            .unwrap();
    }
    let error = callback_params(location.as_str());
    assert_eq!(error.iss.as_deref(), Some(issuer.as_str()));
    let err = client.handle_callback(&pending, &error).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Authorization { error, .. } if error == "login_required"),
        "{err:?}"
    );
}

#[tokio::test]
async fn resource_indicator_yields_a_jwt_access_token_for_the_api() {
    let peer = start_oidc_provider(&[]).await;
    let issuer = peer.base_url.clone();
    let client = demo_client(&issuer).await;
    let (url, pending) = client
        .authorization_request(REDIRECT, "openid profile email api:read")
        .resource(API_RESOURCE)
        .build()
        .unwrap();
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["resource"], API_RESOURCE);

    let mut jar = Jar::default();
    let callback = provider_login(
        &no_redirect_client(),
        &mut jar,
        url.as_str(),
        "alice",
        "wonderland",
    )
    .await;
    // The ID token's at_hash is checked against the JWT access token here.
    let login = client
        .handle_callback(&pending, &callback_params(&callback))
        .await
        .unwrap();
    assert_eq!(login.id_token.subject(), Some("alice"));
    assert_eq!(
        login.id_token.string_claim("nonce"),
        Some(pending.nonce.as_str())
    );

    let validator = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(&issuer, API_AUDIENCE).require_at_jwt(true))
        .build()
        .unwrap();
    let claims = validator
        .validate(&login.tokens.access_token)
        .await
        .unwrap();
    assert_eq!(claims.subject(), Some("alice"));
    assert_eq!(claims.audiences(), [API_AUDIENCE]);
    assert_eq!(claims.string_claim("client_id"), Some("demo"));
    assert!(claims.has_scope("api:read"));

    // The granted resource applies to the refreshed tokens too: another valid JWT.
    let refreshed = client
        .refresh(
            login.tokens.refresh_token.as_deref().unwrap(),
            Some("alice"),
            None,
        )
        .await
        .unwrap();
    assert_ne!(refreshed.access_token, login.tokens.access_token);
    let claims = validator.validate(&refreshed.access_token).await.unwrap();
    assert_eq!(claims.subject(), Some("alice"));
    assert!(claims.has_scope("api:read"));

    // A JWT for another audience than this API's is refused by the validator.
    let other = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(&issuer, "other-api").require_at_jwt(true))
        .build()
        .unwrap();
    assert!(other.validate(&refreshed.access_token).await.is_err());
}

/// Two private JWKs written by Node's crypto (a JOSE implementation other than ours): RSA with
/// `alg: PS256`, and Ed25519. Generated once per test process.
fn node_private_jwks() -> Vec<serde_json::Value> {
    static JWKS: std::sync::OnceLock<Vec<serde_json::Value>> = std::sync::OnceLock::new();
    JWKS.get_or_init(|| {
        let script = "const { generateKeyPairSync } = require('crypto');
            const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
            const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
            console.log(JSON.stringify([{ ...rsa, alg: 'PS256' }, ed]));";
        let out = std::process::Command::new("node")
            .args(["-e", script])
            .output()
            .expect("node runs (scripts/test installs it)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    })
    .clone()
}

/// A `demo-jwt` client of the peer authenticating with `key` (`private_key_jwt`).
async fn jwt_client(issuer: &str, key: SigningKey) -> OidcClient {
    let config = ClientConfig {
        auth: ClientAuth::PrivateKeyJwt(Arc::new(key)),
        ..ClientConfig::public(issuer, "demo-jwt")
    };
    OidcClient::discover(config, http()).await.unwrap()
}

#[tokio::test]
async fn private_key_jwt_authenticates_code_refresh_introspection_revocation_and_service_grants() {
    // The peer registers the public halves of an ES256 and an RS256 key for `demo-jwt`.
    let es = SigningKey::generate(Algorithm::ES256).unwrap();
    let rs = SigningKey::generate(Algorithm::RS256).unwrap();
    let node_jwks = node_private_jwks();
    let mut public = vec![es.public_jwk().unwrap(), rs.public_jwk().unwrap()];
    for jwk in &node_jwks {
        public.push(
            SigningKey::from_private_jwk(jwk, None)
                .unwrap()
                .public_jwk()
                .unwrap(),
        );
    }
    let jwks = serde_json::json!({ "keys": public });
    let peer = start_oidc_provider(&[("JWT_CLIENT_JWKS", &jwks.to_string())]).await;
    let issuer = peer.base_url.clone();
    // Loaded the way the gateway loads OIDC_CLIENT_KEY_FILE: PEM, algorithm from the key.
    let loaded = SigningKey::from_pem(es.to_pkcs8_pem().unwrap().as_bytes(), None).unwrap();
    let client = jwt_client(&issuer, loaded).await;

    let (url, pending) = client
        .authorization_request(REDIRECT, "openid profile email offline_access")
        .param("prompt", "consent")
        .build()
        .unwrap();
    let browser = no_redirect_client();
    let mut jar = Jar::default();
    let callback = provider_login(&browser, &mut jar, url.as_str(), "alice", "wonderland").await;
    let login = client
        .handle_callback(&pending, &callback_params(&callback))
        .await
        .unwrap();
    assert_eq!(login.id_token.audiences(), ["demo-jwt"]);
    let refresh = login.tokens.refresh_token.clone().expect("a refresh token");
    let refreshed = client
        .refresh(&refresh, Some("alice"), Some(&pending.nonce))
        .await
        .unwrap();
    // Introspection and revocation get assertions whose `aud` is their own endpoint.
    let active = client
        .introspect(&refreshed.access_token, None)
        .await
        .unwrap();
    assert_eq!(active["active"], true, "{active:?}");
    assert_eq!(active["client_id"], "demo-jwt", "{active:?}");
    client
        .revoke(&refreshed.access_token, Some("access_token"))
        .await
        .unwrap();
    let inactive = client
        .introspect(&refreshed.access_token, None)
        .await
        .unwrap();
    assert_eq!(inactive["active"], false, "{inactive:?}");
    let service = client.client_credentials(None, &[]).await.unwrap();
    assert!(!service.access_token.is_empty());

    // Private JWKs as another JOSE library writes them (Node's crypto): RSA named PS256 by its
    // `alg` member, and Ed25519, both registered with the provider below.
    // (The provider accepts RS256, PS256, ES256 and EdDSA assertions.)
    let node_jwks = node_private_jwks();
    let ps = SigningKey::from_private_jwk(&node_jwks[0], None).unwrap();
    assert_eq!(ps.alg(), Algorithm::PS256);
    let ed = SigningKey::from_private_jwk(&node_jwks[1], None).unwrap();
    assert_eq!(ed.alg(), Algorithm::EdDSA);

    // The RSA key works as well; a key the provider does not know is refused.
    let rsa_client = jwt_client(&issuer, rs).await;
    assert!(rsa_client.client_credentials(None, &[]).await.is_ok());
    for key in [ps, ed] {
        let alg = key.alg();
        let client = jwt_client(&issuer, key).await;
        let r = client.client_credentials(None, &[]).await;
        assert!(r.is_ok(), "{alg:?}: {r:?}");
    }
    let hmac = OidcClient::discover(
        ClientConfig {
            auth: ClientAuth::secret_jwt("demo-hmac-secret-of-at-least-thirty-two-bytes").unwrap(),
            ..ClientConfig::public(&issuer, "demo-hmac")
        },
        http(),
    )
    .await
    .unwrap();
    assert!(hmac.client_credentials(None, &[]).await.is_ok());
    let wrong_secret = OidcClient::discover(
        ClientConfig {
            auth: ClientAuth::secret_jwt("another-secret-of-at-least-thirty-two-bytes").unwrap(),
            ..ClientConfig::public(&issuer, "demo-hmac")
        },
        http(),
    )
    .await
    .unwrap();
    let err = wrong_secret
        .client_credentials(None, &[])
        .await
        .unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_client"), "{err:?}");
    let stranger = jwt_client(&issuer, SigningKey::generate(Algorithm::ES256).unwrap()).await;
    let err = stranger.client_credentials(None, &[]).await.unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_client"), "{err:?}");
}
