//! A small adversarial OpenID Provider for relying-party tests: discovery (advertising RFC 9207
//! `iss`), an `/authorize` that answers at once with a code, a `/token` that returns an ID token
//! broken in the way the current [`Fault`] says, `/userinfo` (JSON or signed, with aggregated
//! claims when asked), and a JWKS of its RSA keys. Everything else about each flow is correct,
//! so a test shows that one rule alone stops the login.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use oidcgate_core::jose::Algorithm;
use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::validate::id_token::at_hash;
use serde_json::{Value, json};

/// What the next flows get wrong (or right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A correct ID token and JSON userinfo.
    None,
    BadSignature,
    AlgNone,
    /// HS256 with the RSA public key (its JWK text) as the HMAC secret.
    Hs256WithPublicKey,
    WrongIss,
    WrongAud,
    ExtraUntrustedAud,
    MissingSub,
    MissingIat,
    Expired,
    WrongNonce,
    WrongAtHash,
    /// No `kid` while the JWKS has several keys.
    KidlessSeveralKeys,
    /// Signed with a new key that the JWKS gains only now (the RP must refetch and accept).
    RotatedKey,
    /// Userinfo for another subject (the ID token lacks the profile, so the RP asks).
    UserinfoSubMismatch,
    /// The authorization response names another issuer (RFC 9207).
    WrongIssParam,
    /// The authorization response lacks `iss`, which discovery promises.
    MissingIssParam,
    /// Userinfo as a JWT signed by the issuer, with aggregated `groups` signed by it too.
    SignedUserinfo,
    /// Userinfo as a JWT whose signature is broken.
    SignedUserinfoForged,
    /// JSON userinfo with aggregated `groups` signed by an unknown claims provider.
    ForeignAggregatedClaims,
    /// A correct ID token whose `email_verified` is false.
    UnverifiedEmail,
}

struct OpState {
    issuer: String,
    client_id: String,
    fault: Mutex<Fault>,
    /// Published keys; the first signs.
    keys: Mutex<Vec<Arc<SigningKey>>>,
    /// code → nonce.
    codes: Mutex<HashMap<String, String>>,
    discovery_hits: std::sync::atomic::AtomicUsize,
}

/// The running provider (stopped on drop).
pub struct HostileOp {
    pub issuer: String,
    state: Arc<OpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileOp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileOp {
    /// Starts a provider for `client_id` with two RSA keys published.
    pub async fn start(client_id: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let keys = (0..2)
            .map(|_| Arc::new(SigningKey::generate(Algorithm::RS256).unwrap()))
            .collect();
        let state = Arc::new(OpState {
            issuer: issuer.clone(),
            client_id: client_id.to_owned(),
            fault: Mutex::new(Fault::None),
            keys: Mutex::new(keys),
            codes: Mutex::new(HashMap::new()),
            discovery_hits: Default::default(),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            issuer,
            state,
            task,
        }
    }

    /// How often the discovery document was fetched.
    pub fn discovery_hits(&self) -> usize {
        self.state
            .discovery_hits
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sets what the next flows get wrong. [`Fault::RotatedKey`] adds a new signing key now.
    pub fn set_fault(&self, fault: Fault) {
        if fault == Fault::RotatedKey {
            let fresh = Arc::new(SigningKey::generate(Algorithm::RS256).unwrap());
            self.state.keys.lock().unwrap().insert(0, fresh);
        }
        *self.state.fault.lock().unwrap() = fault;
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn discovery(State(op): State<Arc<OpState>>) -> Response {
    op.discovery_hits
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let i = &op.issuer;
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

async fn jwks(State(op): State<Arc<OpState>>) -> Response {
    let keys: Vec<Value> = op
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|k| k.public_jwk().unwrap())
        .collect();
    axum::Json(json!({ "keys": keys })).into_response()
}

async fn authorize(
    State(op): State<Arc<OpState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let fault = *op.fault.lock().unwrap();
    let code = format!("code-{}", rand_hex());
    op.codes
        .lock()
        .unwrap()
        .insert(code.clone(), q.get("nonce").cloned().unwrap_or_default());
    // A request without a redirect URI (a reachability probe, say) gets a plain 400.
    let Some(Ok(mut url)) = q.get("redirect_uri").map(|r| url::Url::parse(r)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("code", &code);
        pairs.append_pair("state", q.get("state").map_or("", String::as_str));
        match fault {
            Fault::WrongIssParam => {
                pairs.append_pair("iss", "https://attacker.example");
            }
            Fault::MissingIssParam => {}
            _ => {
                pairs.append_pair("iss", &op.issuer);
            }
        }
    }
    Redirect::to(url.as_str()).into_response()
}

fn rand_hex() -> String {
    let mut b = [0u8; 12];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn token(
    State(op): State<Arc<OpState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let fault = *op.fault.lock().unwrap();
    let Some(nonce) = form
        .get("code")
        .and_then(|c| op.codes.lock().unwrap().remove(c))
    else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    let access_token = format!("at-{}", rand_hex());
    let keys = op.keys.lock().unwrap().clone();
    let key = &keys[0];
    let now = now();
    let mut claims = json!({
        "iss": op.issuer, "aud": op.client_id, "sub": "alice", "iat": now, "exp": now + 300,
        "nonce": nonce, "at_hash": at_hash(Algorithm::RS256, &access_token),
        "email": "alice@example.com", "name": "Alice", "preferred_username": "alice",
        "groups": ["users"], "roles": ["ops", "auditors"],
    });
    let c = claims.as_object_mut().unwrap();
    if matches!(
        fault,
        Fault::UserinfoSubMismatch
            | Fault::SignedUserinfo
            | Fault::SignedUserinfoForged
            | Fault::ForeignAggregatedClaims
    ) {
        // A bare ID token: the RP fills the profile from userinfo.
        for k in ["email", "name", "preferred_username", "groups"] {
            c.remove(k);
        }
    }
    match fault {
        Fault::WrongIss => {
            c.insert("iss".into(), json!("https://attacker.example"));
        }
        Fault::WrongAud => {
            c.insert("aud".into(), json!("another-client"));
        }
        Fault::ExtraUntrustedAud => {
            c.insert("aud".into(), json!([op.client_id, "another-client"]));
            c.insert("azp".into(), json!(op.client_id));
        }
        Fault::MissingSub => {
            c.remove("sub");
        }
        Fault::MissingIat => {
            c.remove("iat");
        }
        Fault::Expired => {
            c.insert("iat".into(), json!(now - 3600));
            c.insert("exp".into(), json!(now - 1800));
        }
        Fault::WrongNonce => {
            c.insert("nonce".into(), json!("not-the-nonce"));
        }
        Fault::UnverifiedEmail => {
            c.insert("email_verified".into(), json!(false));
        }
        Fault::WrongAtHash => {
            c.insert(
                "at_hash".into(),
                json!(at_hash(Algorithm::RS256, "another-token")),
            );
        }
        _ => {}
    }
    let payload = claims.to_string();
    let id_token = match fault {
        Fault::BadSignature => {
            let good = key.sign_jwt(None, &claims).unwrap();
            let (rest, sig) = good.rsplit_once('.').unwrap();
            let mut sig = sig.to_owned();
            let flipped = if sig.starts_with('A') { "B" } else { "A" };
            sig.replace_range(0..1, flipped);
            format!("{rest}.{sig}")
        }
        Fault::AlgNone => {
            let header = json!({"alg": "none", "kid": key.kid()});
            let signed = key.sign_with_header(&header, payload.as_bytes()).unwrap();
            let (rest, _) = signed.rsplit_once('.').unwrap();
            format!("{rest}.")
        }
        Fault::Hs256WithPublicKey => {
            let secret = key.public_jwk().unwrap().to_string();
            let hmac = SigningKey::hmac(Algorithm::HS256, secret.as_bytes(), key.kid()).unwrap();
            hmac.sign_jwt(None, &claims).unwrap()
        }
        Fault::KidlessSeveralKeys => key
            .sign_with_header(&json!({"alg": "RS256"}), payload.as_bytes())
            .unwrap(),
        _ => key.sign_jwt(None, &claims).unwrap(),
    };
    axum::Json(json!({
        "access_token": access_token, "token_type": "Bearer", "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

async fn userinfo(State(op): State<Arc<OpState>>) -> Response {
    let fault = *op.fault.lock().unwrap();
    let key = op.keys.lock().unwrap()[0].clone();
    let sub = if fault == Fault::UserinfoSubMismatch {
        "mallory"
    } else {
        "alice"
    };
    let mut info = json!({
        "sub": sub, "email": "alice@example.com", "email_verified": true,
        "name": "Alice", "preferred_username": "alice",
    });
    match fault {
        Fault::SignedUserinfo | Fault::SignedUserinfoForged => {
            // Aggregated groups, signed by this issuer (OIDC Core §5.6.2).
            let groups = key
                .sign_jwt(
                    None,
                    &json!({"iss": op.issuer, "groups": ["admins", "users"]}),
                )
                .unwrap();
            info["_claim_names"] = json!({"groups": "src1"});
            info["_claim_sources"] = json!({"src1": {"JWT": groups}});
            info["iss"] = json!(op.issuer);
            info["aud"] = json!(op.client_id);
            let mut jwt = key.sign_jwt(None, &info).unwrap();
            if fault == Fault::SignedUserinfoForged {
                let cut = jwt.len() - 4;
                jwt.replace_range(cut.., "AAAA");
            }
            ([(header::CONTENT_TYPE, "application/jwt")], jwt).into_response()
        }
        Fault::ForeignAggregatedClaims => {
            let stranger = SigningKey::generate(Algorithm::RS256).unwrap();
            let groups = stranger
                .sign_jwt(None, &json!({"iss": op.issuer, "groups": ["admins"]}))
                .unwrap();
            info["_claim_names"] = json!({"groups": "src1"});
            info["_claim_sources"] = json!({"src1": {"JWT": groups}});
            axum::Json(info).into_response()
        }
        _ => axum::Json(info).into_response(),
    }
}
