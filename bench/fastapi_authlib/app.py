"""FastAPI/Starlette + Authlib bearer-token resource server: a benchmark baseline only.

This app exists solely as the comparison peer of bench/load_resource_server.sh ("FastAPI/Starlette
+ Authlib on the same token", DESIGN §6). It is not part of oidcgate and is not meant to be
deployed. It follows the shape of seed 001's middleware (Starlette AuthenticationMiddleware with a
bearer-token backend, Authlib's JWT for signature and claims checks) without that seed's flaws:

* discovery and JWKS are fetched once, at startup, with a timeout (no lazy blocking fetch inside a
  request, no refresh thread); the discovery document's `issuer` must equal OIDC_ISSUER;
* only asymmetric signature algorithms are accepted (Authlib's default `jwt` also accepts HS*);
* a request without an Authorization header is anonymous (the backend returns None), so public
  routes work; a malformed or invalid token gets 401 with `WWW-Authenticate: Bearer`, not 400.

Settings from the environment: OIDC_ISSUER and OIDC_AUDIENCE (both required).
Routes: GET /public (no auth) and GET /protected (any valid token; 401 otherwise), with the same
JSON bodies as examples/resource_server.rs.

    OIDC_ISSUER=http://127.0.0.1:PORT OIDC_AUDIENCE=demo-api bench/fastapi_authlib/run.sh
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
import warnings
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

# Authlib 1.9 marks authlib.jose as deprecated in favour of joserfc (it still works until
# Authlib 2.0). The baseline deliberately uses Authlib's JWT as the seed does, so the warning
# printed at import is silenced here. (authlib.deprecate installs an "always" filter for its
# warning class when imported, so the "ignore" filter must be added after that import.)
from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.jose import JoseError, JsonWebKey, JsonWebToken, KeySet

# Asymmetric JWS algorithms only: a public JWKS must never verify an HMAC token.
ALLOWED_ALGORITHMS = [
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
]
FETCH_TIMEOUT_SECONDS = 10


def _setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"error: {name} is required")
    return value


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
        return json.loads(response.read())


def load_key_set(issuer: str) -> KeySet:
    """Reads the issuer's discovery document, then its JWKS, once."""
    discovery = _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if discovery.get("issuer") != issuer:
        raise RuntimeError(
            f"discovery issuer {discovery.get('issuer')!r} does not match OIDC_ISSUER {issuer!r}"
        )
    return JsonWebKey.import_key_set(_get_json(discovery["jwks_uri"]))


class TokenUser(BaseUser):
    """The caller of a request that carried a valid access token."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.claims.get("name") or self.claims.get("sub") or ""

    @property
    def identity(self) -> str:
        return self.claims.get("sub") or ""


class BearerTokenBackend(AuthenticationBackend):
    """Validates `Authorization: Bearer <JWT>` against a key set loaded at startup."""

    def __init__(self, issuer: str, audience: str, key_set: KeySet) -> None:
        self.key_set = key_set
        self.jwt = JsonWebToken(ALLOWED_ALGORITHMS)
        self.claims_options = {
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": audience},
            "exp": {"essential": True},
        }

    async def authenticate(self, conn: HTTPConnection):
        header = conn.headers.get("authorization")
        if header is None:
            return None  # anonymous: routes decide whether that is enough
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("expected an Authorization: Bearer token")
        try:
            claims = self.jwt.decode(token, self.key_set, claims_options=self.claims_options)
            claims.validate()  # exp, nbf, iat, and the essential iss/aud/exp above
        except (JoseError, ValueError) as error:  # ValueError: no key with the token's kid
            raise AuthenticationError("invalid token") from error
        scopes = str(claims.get("scope", "")).split()
        scopes.append("authenticated")
        return AuthCredentials(scopes), TokenUser(dict(claims))


def on_auth_error(conn: HTTPConnection, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc)},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def require_user(request: Request) -> TokenUser:
    """Dependency: the authenticated caller, or 401."""
    if "authenticated" not in request.auth.scopes:
        raise HTTPException(401, "not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return request.user


ISSUER = _setting("OIDC_ISSUER")
AUDIENCE = _setting("OIDC_AUDIENCE")

app = FastAPI(
    middleware=[
        Middleware(
            AuthenticationMiddleware,
            backend=BearerTokenBackend(ISSUER, AUDIENCE, load_key_set(ISSUER)),
            on_error=on_auth_error,
        )
    ],
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


@app.get("/public")
async def public():
    return {"message": "This endpoint is public."}


@app.get("/protected")
async def protected(user: TokenUser = Depends(require_user)):
    claims = user.claims
    return {
        "message": f"Hello, {user.display_name}!",
        "user": {
            "sub": claims.get("sub"),
            "name": claims.get("name"),
            "email": claims.get("email"),
            "picture": claims.get("picture"),
        },
    }
