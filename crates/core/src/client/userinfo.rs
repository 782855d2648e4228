//! Userinfo (OIDC Core §5.3): a JSON or signed-JWT (`application/jwt`) response whose `sub` must
//! be the ID token's, and its aggregated and distributed claims (§5.6.2).
//!
//! Claims from another source are trusted only when they are signed by this issuer's keys: an
//! aggregated claims JWT, or the JWT a distributed-claims endpoint on the issuer's own origin
//! returns. Sources signed by some other claims provider cannot be verified without that
//! provider's keys, so their claims are left out (and logged), never taken on trust. Fetches go
//! only to the issuer's origin, so a response cannot send the client to arbitrary URLs.

use serde_json::{Map, Value};
use url::Url;

use super::{ClientError, OidcClient, json_object};
use crate::http::{HttpRequest, Method};

/// Most claim sources resolved for one response.
const MAX_SOURCES: usize = 8;

fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl OidcClient {
    /// The userinfo claims for `access_token`; their `sub` must equal `expected_sub` (OIDC Core
    /// §5.3.2). A signed response is verified with the issuer's keys; aggregated and
    /// distributed claims signed by the issuer are merged in.
    pub async fn userinfo(
        &self,
        access_token: &str,
        expected_sub: &str,
    ) -> Result<Map<String, Value>, ClientError> {
        let url = self.endpoint(self.metadata.userinfo_endpoint.as_ref(), "userinfo")?;
        let request = HttpRequest {
            method: Method::Get,
            url,
            headers: vec![
                ("authorization".into(), format!("Bearer {access_token}")),
                ("accept".into(), "application/json, application/jwt".into()),
            ],
            body: None,
        };
        let response = self.http.execute(request).await?;
        if response.status != 200 {
            return Err(ClientError::OAuth {
                status: response.status,
                error: "userinfo_failed".into(),
                description: format!("userinfo answered HTTP {}", response.status),
            });
        }
        let mut claims = if media_type(response.header("content-type")) == "application/jwt" {
            let text = std::str::from_utf8(&response.body)
                .map_err(|_| ClientError::BadResponse("the signed userinfo is not text".into()))?;
            self.id_tokens
                .verify_issuer_jwt(text.trim(), false)
                .await
                .map_err(ClientError::SignedUserinfo)?
        } else {
            json_object(&response.body)?
        };
        if claims.get("sub").and_then(Value::as_str) != Some(expected_sub) {
            return Err(ClientError::UserinfoSubjectMismatch);
        }
        self.resolve_claim_sources(&mut claims).await;
        Ok(claims)
    }

    /// Replaces `_claim_names`/`_claim_sources` (OIDC Core §5.6.2) by the claims they point to,
    /// where the source is signed by this issuer.
    async fn resolve_claim_sources(&self, claims: &mut Map<String, Value>) {
        let names = claims.remove("_claim_names");
        let sources = claims.remove("_claim_sources");
        let (Some(Value::Object(names)), Some(Value::Object(sources))) = (names, sources) else {
            return;
        };
        for (source, spec) in sources.iter().take(MAX_SOURCES) {
            let wanted: Vec<&String> = names
                .iter()
                .filter(|(_, s)| s.as_str() == Some(source))
                .map(|(claim, _)| claim)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            match self.claim_source(spec).await {
                Ok(found) => {
                    for claim in wanted {
                        // `sub` identifies the user; a claims source never changes it.
                        if claim != "sub"
                            && let Some(value) = found.get(claim.as_str())
                        {
                            claims.insert(claim.clone(), value.clone());
                        }
                    }
                }
                Err(why) => {
                    tracing::info!(source = %source, reason = %why, "claims source left out");
                }
            }
        }
    }

    /// The verified claims of one `_claim_sources` entry.
    async fn claim_source(&self, spec: &Value) -> Result<Map<String, Value>, String> {
        if let Some(jwt) = spec.get("JWT").and_then(Value::as_str) {
            return self
                .id_tokens
                .verify_issuer_jwt(jwt, true)
                .await
                .map_err(|e| format!("aggregated claims not signed by the issuer: {e}"));
        }
        let endpoint = spec
            .get("endpoint")
            .and_then(Value::as_str)
            .ok_or("neither JWT nor endpoint")?;
        let url = Url::parse(endpoint).map_err(|_| "the endpoint is not a URL".to_owned())?;
        let issuer = Url::parse(self.issuer()).map_err(|_| "the issuer is not a URL".to_owned())?;
        if url.origin() != issuer.origin() {
            return Err(format!(
                "distributed claims at {} are not on the issuer's origin",
                url.origin().ascii_serialization()
            ));
        }
        self.config
            .url_policy
            .check(&url)
            .map_err(|e| e.to_string())?;
        let mut headers = vec![("accept".to_owned(), "application/jwt".to_owned())];
        if let Some(token) = spec.get("access_token").and_then(Value::as_str) {
            headers.push(("authorization".into(), format!("Bearer {token}")));
        }
        let response = self
            .http
            .execute(HttpRequest {
                method: Method::Get,
                url,
                headers,
                body: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!("the endpoint answered HTTP {}", response.status));
        }
        let text =
            std::str::from_utf8(&response.body).map_err(|_| "the answer is not text".to_owned())?;
        self.id_tokens
            .verify_issuer_jwt(text.trim(), true)
            .await
            .map_err(|e| format!("distributed claims not signed by the issuer: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::media_type;

    #[test]
    fn media_types_ignore_parameters_and_case() {
        assert_eq!(
            media_type(Some("Application/JWT; charset=utf-8")),
            "application/jwt"
        );
        assert_eq!(media_type(Some("application/json")), "application/json");
        assert_eq!(media_type(None), "");
    }
}
