//! Token-endpoint grants (RFC 6749 §4.1.3, §4.4, §6; RFC 8628), introspection (RFC 7662),
//! revocation (RFC 7009) and the RP-initiated logout URL.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};
use url::Url;

use super::{ClientAuth, ClientError, OidcClient, json_object};
use crate::http::{HttpRequest, Method};
use crate::validate::{IdTokenChecks, ValidationError};

/// A token-endpoint response. `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: Option<u64>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
    /// The whole response, for `--json` output and extensions.
    pub raw: Map<String, Value>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("has_id_token", &self.id_token.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenResponse {
    fn parse(raw: Map<String, Value>) -> Result<Self, ClientError> {
        let string = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
        let access_token = string("access_token")
            .ok_or_else(|| ClientError::BadResponse("no access_token".into()))?;
        let token_type =
            string("token_type").ok_or_else(|| ClientError::BadResponse("no token_type".into()))?;
        // DPoP-bound tokens (RFC 9449) need a proof per request, which this client does not
        // send: such a token would fail at every resource server, so it is refused here.
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(ClientError::BadResponse(format!(
                "unsupported token_type {:?}",
                token_type.chars().take(20).collect::<String>()
            )));
        }
        Ok(Self {
            access_token,
            token_type,
            expires_in: raw.get("expires_in").and_then(Value::as_u64),
            refresh_token: string("refresh_token"),
            id_token: string("id_token"),
            scope: string("scope"),
            raw,
        })
    }
}

/// A device authorization response (RFC 8628 §3.2).
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    /// Seconds between polls; 5 when the provider does not say (RFC 8628 §3.2).
    pub interval: u64,
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn form_component(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl OidcClient {
    /// POSTs a form to an endpoint with client authentication; returns the JSON object of a
    /// 2xx answer or the provider's OAuth error.
    async fn post_form(
        &self,
        url: Url,
        params: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        #[cfg(feature = "signing")]
        let assertion: String;
        let mut pairs: Vec<(&str, &str)> = params.to_vec();
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
        ];
        match &self.config.auth {
            ClientAuth::None => pairs.push(("client_id", &self.config.client_id)),
            ClientAuth::SecretPost(secret) => {
                pairs.push(("client_id", &self.config.client_id));
                pairs.push(("client_secret", secret.expose()));
            }
            ClientAuth::SecretBasic(secret) => {
                let credentials = format!(
                    "{}:{}",
                    form_component(&self.config.client_id),
                    form_component(secret.expose())
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                headers.push(("authorization".to_owned(), format!("Basic {encoded}")));
            }
            #[cfg(feature = "signing")]
            ClientAuth::PrivateKeyJwt(key) | ClientAuth::SecretJwt(key) => {
                assertion = self.client_assertion(key, url.as_str())?;
                pairs.push(("client_id", &self.config.client_id));
                pairs.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
                pairs.push(("client_assertion", &assertion));
            }
        }
        let request = HttpRequest {
            method: Method::Post,
            url,
            headers,
            body: Some(form_encode(&pairs).into_bytes()),
        };
        let response = self.http.execute(request).await?;
        if (200..300).contains(&response.status) {
            return Ok((response.status, response.body));
        }
        let body = json_object(&response.body).unwrap_or_default();
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .map(|s| s.chars().take(300).collect::<String>())
        };
        Err(ClientError::OAuth {
            status: response.status,
            error: text("error").unwrap_or_else(|| format!("HTTP {}", response.status)),
            description: text("error_description").unwrap_or_default(),
        })
    }

    /// A `private_key_jwt` or `client_secret_jwt` assertion for one request to `endpoint`.
    #[cfg(feature = "signing")]
    fn client_assertion(
        &self,
        key: &crate::jose::sign::SigningKey,
        endpoint: &str,
    ) -> Result<String, ClientError> {
        let now = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = serde_json::json!({
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": endpoint,
            "jti": super::authorize::random_value(),
            "iat": now,
            "exp": now + 60,
        });
        let mut header = serde_json::json!({"alg": key.alg().name(), "typ": "JWT"});
        // A shared secret has no key id; a private key names the registered one.
        if !key.alg().is_hmac() {
            header["kid"] = serde_json::json!(key.kid());
        }
        key.sign_with_header(&header, claims.to_string().as_bytes())
            .map_err(|e| ClientError::Signing(e.to_string()))
    }

    async fn token_request(&self, params: &[(&str, &str)]) -> Result<TokenResponse, ClientError> {
        let url = self.endpoint(self.metadata.token_endpoint.as_ref(), "token")?;
        let (_, body) = self.post_form(url, params).await?;
        TokenResponse::parse(json_object(&body)?)
    }

    /// Redeems an authorization code (with its PKCE verifier).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenResponse, ClientError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ])
        .await
    }

    /// Redeems a refresh token. A new ID token, when returned, must be for `expected_sub`
    /// (OIDC Core §12.2); it may lack `nonce`, but one it carries must equal `original_nonce`
    /// when that is given. When the issuer's keys cannot be fetched to check it, the response
    /// comes back without it (`id_token: None`) rather than losing the rotated tokens.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        expected_sub: Option<&str>,
        original_nonce: Option<&str>,
    ) -> Result<TokenResponse, ClientError> {
        let mut tokens = self
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .await?;
        if let Some(id_token) = &tokens.id_token {
            let checks = IdTokenChecks {
                nonce: None,
                max_age: None,
                access_token: Some(&tokens.access_token),
                expected_sub,
                original_nonce,
            };
            match self.id_tokens.validate(id_token, checks).await {
                Ok(_) => {}
                // The old refresh token is spent by now: keep the new tokens (they came from the
                // token endpoint itself) and drop only the ID token that could not be checked.
                Err(ValidationError::KeysUnavailable(e)) => {
                    tracing::warn!(error = %e, "the refreshed ID token could not be checked (issuer keys unavailable); it is not kept");
                    tokens.id_token = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(tokens)
    }

    /// The client credentials grant; `extra` carries e.g. `audience` or `resource`.
    pub async fn client_credentials(
        &self,
        scope: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<TokenResponse, ClientError> {
        let mut params = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
        params.extend_from_slice(extra);
        self.token_request(&params).await
    }

    /// RFC 7662 introspection.
    pub async fn introspect(
        &self,
        token: &str,
        hint: Option<&str>,
    ) -> Result<Map<String, Value>, ClientError> {
        let url = self.endpoint(
            self.metadata.introspection_endpoint.as_ref(),
            "introspection",
        )?;
        let mut params = vec![("token", token)];
        if let Some(h) = hint {
            params.push(("token_type_hint", h));
        }
        let (_, body) = self.post_form(url, &params).await?;
        json_object(&body)
    }

    /// RFC 7009 revocation.
    pub async fn revoke(&self, token: &str, hint: Option<&str>) -> Result<(), ClientError> {
        let url = self.endpoint(self.metadata.revocation_endpoint.as_ref(), "revocation")?;
        let mut params = vec![("token", token)];
        if let Some(h) = hint {
            params.push(("token_type_hint", h));
        }
        self.post_form(url, &params).await.map(|_| ())
    }

    /// The RP-initiated logout URL, when the provider has an `end_session_endpoint`.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Option<Url> {
        let mut url = self.metadata.end_session_endpoint.clone()?;
        self.config.url_policy.check(&url).ok()?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.config.client_id);
            if let Some(h) = id_token_hint {
                q.append_pair("id_token_hint", h);
            }
            if let Some(u) = post_logout_redirect_uri {
                q.append_pair("post_logout_redirect_uri", u);
            }
            if let Some(s) = state {
                q.append_pair("state", s);
            }
        }
        Some(url)
    }

    /// Starts a device authorization (RFC 8628 §3.1).
    pub async fn device_authorization(
        &self,
        scope: Option<&str>,
    ) -> Result<DeviceAuthorization, ClientError> {
        let url = self.endpoint(
            self.metadata.device_authorization_endpoint.as_ref(),
            "device authorization",
        )?;
        let mut params = Vec::new();
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
        let (_, body) = self.post_form(url, &params).await?;
        let raw = json_object(&body)?;
        let string = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
        let missing = |k: &str| {
            ClientError::BadResponse(format!("no {k} in the device authorization response"))
        };
        Ok(DeviceAuthorization {
            device_code: string("device_code").ok_or_else(|| missing("device_code"))?,
            user_code: string("user_code").ok_or_else(|| missing("user_code"))?,
            verification_uri: string("verification_uri")
                .ok_or_else(|| missing("verification_uri"))?,
            verification_uri_complete: string("verification_uri_complete"),
            expires_in: raw.get("expires_in").and_then(Value::as_u64).unwrap_or(600),
            interval: raw
                .get("interval")
                .and_then(Value::as_u64)
                .unwrap_or(5)
                .clamp(1, 60),
        })
    }

    /// Polls until the user approves (or denies, or the code expires), honouring `interval` and
    /// adding 5 s on each `slow_down` (RFC 8628 §3.5). `on_wait` is called before each wait.
    pub async fn poll_device(
        &self,
        device: &DeviceAuthorization,
        mut on_wait: impl FnMut(Duration),
    ) -> Result<TokenResponse, ClientError> {
        let deadline = self
            .clock
            .unix_seconds()
            .saturating_add(i64::try_from(device.expires_in).unwrap_or(600));
        let mut interval = Duration::from_secs(device.interval);
        loop {
            on_wait(interval);
            tokio::time::sleep(interval).await;
            if self.clock.unix_seconds() > deadline {
                return Err(ClientError::DeviceExpired);
            }
            let result = self
                .token_request(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &device.device_code),
                ])
                .await;
            match result {
                Ok(tokens) => {
                    if let Some(id_token) = &tokens.id_token {
                        let checks = IdTokenChecks {
                            access_token: Some(&tokens.access_token),
                            ..Default::default()
                        };
                        self.id_tokens.validate(id_token, checks).await?;
                    }
                    return Ok(tokens);
                }
                Err(e) => match e.oauth_error() {
                    Some("authorization_pending") => {}
                    Some("slow_down") => interval += Duration::from_secs(5),
                    Some("expired_token") => return Err(ClientError::DeviceExpired),
                    Some("access_denied") => return Err(ClientError::AccessDenied),
                    _ => return Err(e),
                },
            }
        }
    }
}
