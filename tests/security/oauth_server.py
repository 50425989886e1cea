#!/usr/bin/env python3
"""Test helper for the secure broker's OAUTHBEARER (tests/integration/security_oauth_test.lua).

  oauth_server.py token KEY.pem SUB [LIFETIME_S]
      prints an RS256 JWT for SUB (kid "klua-test", aud "klua-test", iss "klua-test-issuer")
  oauth_server.py serve CERTS_DIR
      an OAuth 2 token endpoint (client credentials, RFC 6749 4.4) on 127.0.0.1, port chosen
      by the OS; prints "http://127.0.0.1:PORT/token" and serves until stdin closes or SIGTERM.
      Clients (HTTP Basic auth):
        klua-oidc / klua-oidc-secret      token for sub "klua-oidc" signed with oauth.key (the
                                          key whose JWKS the broker trusts)
        klua-forger / klua-forger-secret  token for sub "klua-oidc" signed with oauth-other.key
                                          (same kid: the broker must refuse its signature)
        klua-slow / klua-slow-secret      as klua-oidc, answered after 1.5 s (is the client's
                                          loop free while it waits?)
      Any other credentials get 401. Each request is logged to stderr (client id only).

Signs with Python's `cryptography` (PKCS#1 v1.5, SHA-256), no PyJWT needed.
"""
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def make_jwt(key, sub, lifetime_s=3600, scope=None):
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": "klua-test"}
    claims = {"sub": sub, "iat": now, "nbf": now - 5, "exp": now + int(lifetime_s),
              "iss": "klua-test-issuer", "aud": "klua-test"}
    if scope:
        claims["scope"] = scope
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(sig)


def serve(certs):
    clients = {
        "klua-oidc": ("klua-oidc-secret", load_key(os.path.join(certs, "oauth.key"))),
        "klua-forger": ("klua-forger-secret", load_key(os.path.join(certs, "oauth-other.key"))),
    }
    clients["klua-slow"] = ("klua-slow-secret", clients["klua-oidc"][1])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            cid = secret = None
            auth = self.headers.get("Authorization") or ""
            if auth.startswith("Basic "):
                try:
                    cid, secret = base64.b64decode(auth[6:]).decode().split(":", 1)
                except Exception:
                    pass
            if cid is None:  # client_secret_post
                cid = (form.get("client_id") or [None])[0]
                secret = (form.get("client_secret") or [None])[0]
            grant = (form.get("grant_type") or [""])[0]
            print(f"token request: client {cid} grant {grant}", file=sys.stderr, flush=True)
            if grant != "client_credentials":
                return self.reply(400, {"error": "unsupported_grant_type"})
            if cid not in clients or clients[cid][0] != secret:
                return self.reply(401, {"error": "invalid_client"})
            if cid == "klua-slow":
                time.sleep(1.5)
            scope = (form.get("scope") or [None])[0]
            token = make_jwt(clients[cid][1], "klua-oidc", 3600, scope)
            self.reply(200, {"access_token": token, "token_type": "bearer", "expires_in": 3600})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{srv.server_address[1]}/token", flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    # Ends when the test closes our stdin (or kills us).
    try:
        sys.stdin.read()
    finally:
        srv.shutdown()


def main(argv):
    if len(argv) >= 3 and argv[0] == "token":
        print(make_jwt(load_key(argv[1]), argv[2], float(argv[3]) if len(argv) > 3 else 3600))
    elif len(argv) == 2 and argv[0] == "serve":
        serve(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
