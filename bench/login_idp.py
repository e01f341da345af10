"""The OIDC provider of bench/login_bench.py, served over real HTTP in its own process (kept off
the server core): discovery, the authorization endpoint (it signs the user in at once: the
user is named by ``login_hint``), the token endpoint and the JWKS. Built on
``transom.testing.oidc.FakeOidcIdp``, so tokens are real RS256 JWTs and PKCE, client
authentication and single-use codes are checked.

    python bench/login_idp.py PORT CLIENT_ID CLIENT_SECRET GROUP_ID,GROUP_ID,...
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from transom.testing.oidc import FakeOidcIdp


def serve(port: int, client_id: str, client_secret: str, groups: list[str]) -> None:
    issuer = f"http://127.0.0.1:{port}"
    fake = FakeOidcIdp(issuer=issuer, client_id=client_id, client_secret=client_secret,
                       authorization_endpoint=f"{issuer}/oauth2/v1/authorize",
                       token_endpoint=f"{issuer}/oauth2/v1/token", jwks_uri=f"{issuer}/oauth2/v1/keys")
    discovery = json.dumps({
        "issuer": issuer, "authorization_endpoint": fake.authorization_endpoint,
        "token_endpoint": fake.token_endpoint, "jwks_uri": fake.jwks_uri,
        "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real IdP
        # headers and body go out in two writes: with Nagle on, the body waits for the ACK of
        # the headers, which the client delays by 40 ms (a login then took 75 ms at one client)
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/.well-known/openid-configuration":
                self._send(200, discovery, {"Content-Type": "application/json"})
            elif path == "/oauth2/v1/authorize":
                url = issuer + self.path
                query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
                sub = query.get("login_hint", "user0")
                claims = {"sub": sub, "email": f"{sub}@bench.example", "email_verified": True,
                          "name": f"Bench {sub}", "preferred_username": f"{sub}@bench.example", "groups": groups}
                answer = fake.authorize(url, claims)
                target = answer.pop("redirect_uri")
                self._send(302, b"", {"Location": f"{target}?{urlencode(answer)}"})
            else:
                self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = httpx.Request(self.command, issuer + self.path, headers=dict(self.headers.items()),
                                    content=body)
            answer = fake.handle(request)
            headers = {"Content-Type": answer.headers.get("content-type", "application/json")}
            self._send(answer.status_code, answer.content, headers)

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], [g for g in sys.argv[4].split(",") if g])
