"""OpenID Connect relying party: id_token verification, the JWKS cache, the authorization
request and the token endpoint call. All OIDC cryptography of Transom lives in this package
(plugins never verify tokens).

Verification follows docs/oidc.md (security-checklist §2, §2.1):

* the header is parsed from segment 0 by us (never trusted beyond routing), ``alg`` must be
  one of the provider's algorithms (``RS256`` unless its discovery document or plugin says
  otherwise; always inside the asymmetric allow-list of ``algorithms``), header-supplied keys
  (``jku``/``x5u``/``jwk``/``x5c``) and ``crit`` are refused, and so is an access token
  (``typ: at+jwt``);
* ONE key, chosen by ``kid`` and bound to ``alg`` from a per-process :class:`JwksCache`, is
  handed to ``jose.jwt.decode`` with exactly that algorithm pinned (PS256 and EdDSA, which
  python-jose lacks, are verified on ``cryptography``);
* every claim check is ours (python-jose accepts a missing ``aud``, a string ``exp``, a
  future ``iat``, never checks ``nonce``/``azp``/``tid``), so that each refusal carries a
  hint an IdP administrator can act on.

Modules, one job each: ``common`` (refusal wording, base64url), ``idtoken`` (header and
claim checks, signature), ``algorithms`` (the allow-list, JWK parsing with the key type bound
to the algorithm, the signature check), ``jwks`` (key cache), ``discovery`` (discovery
documents, completing a discovery provider), ``userinfo`` (the UserInfo call and merge),
``authorize`` (PKCE, authorization URL),
``token_endpoint`` (code exchange), ``endpoints`` (redirect URI), ``start`` (starting a
login) and ``verify`` (the one verify step of the login pipeline). This package re-exports
the protocol pieces only: ``start`` and ``verify`` need the runtime, which itself imports
:class:`JwksCache` from here, so they are imported by their module path.
"""

from transom.oidc.algorithms import ALLOWED_ALGORITHMS
from transom.oidc.authorize import authorization_url, new_pkce_verifier, pkce_challenge
from transom.oidc.idtoken import (
    MAX_ID_TOKEN_AGE_SECONDS,
    MAX_ID_TOKEN_CHARS,
    check_claims,
    check_header,
    parse_header,
    verify_id_token,
)
from transom.oidc.jwks import JwksCache
from transom.oidc.token_endpoint import TokenResponse, exchange_code

__all__ = [
    "ALLOWED_ALGORITHMS",
    "MAX_ID_TOKEN_AGE_SECONDS",
    "MAX_ID_TOKEN_CHARS",
    "JwksCache",
    "TokenResponse",
    "authorization_url",
    "check_claims",
    "check_header",
    "exchange_code",
    "new_pkce_verifier",
    "parse_header",
    "pkce_challenge",
    "verify_id_token",
]
