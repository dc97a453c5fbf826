"""Who may look and who may act: authentication, CSRF protection and the local-bind rule.

* ``--auth user:password`` asks for HTTP basic auth; ``--auth TOKEN`` (no colon) accepts
  ``Authorization: Bearer TOKEN``, or basic auth with any user name and the token as
  password (so a browser's login prompt works too). Without ``--auth`` the dashboard
  only binds to a loopback address.
* ``/healthz`` and ``/readyz`` answer without auth: probes must reach them, and they
  reveal nothing.
* Actions are POSTs carrying the ``X-CSRF-Token`` header equal to the ``celeriac_csrf``
  cookie (``SameSite=Strict``): another site can neither read the cookie nor set the
  header. A request authenticated with a bearer token needs no CSRF token, since
  browsers never attach one on their own.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "Auth",
    "AuthMiddleware",
    "InsecureBind",
    "check_bind",
    "csrf_ok",
    "csrf_token",
    "is_loopback",
    "scrub",
    "set_csrf_cookie",
]

CSRF_COOKIE = "celeriac_csrf"
CSRF_HEADER = "x-csrf-token"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class InsecureBind(Exception):
    """The dashboard would be reachable from other hosts with no authentication."""


def is_loopback(address: str) -> bool:
    return address.strip().lower() in LOOPBACK


def check_bind(address: str, auth: Auth | None) -> None:
    if auth is None and not is_loopback(address):
        raise InsecureBind(
            f"refusing to serve the dashboard on {address!r} without authentication: anyone who can reach "
            "that address could revoke tasks and shut workers down. Pass --auth user:password (or a token, or "
            "set CELERIAC_DASHBOARD_AUTH), or bind to 127.0.0.1."
        )


@dataclass(frozen=True, slots=True)
class Auth:
    user: str | None  # None: a bearer token
    secret: str

    @classmethod
    def parse(cls, spec: str | None) -> Auth | None:
        if not spec:
            return None
        user, sep, password = spec.partition(":")
        if sep and user and password:
            return cls(user, password)
        if sep:
            raise ValueError("--auth: expected user:password or a token")
        return cls(None, spec)

    def check(self, header: str | None) -> str | None:
        """``"basic"`` or ``"bearer"`` for a valid ``Authorization`` header, else None."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self.user is None and _same(value, self.secret):
            return "bearer"
        if scheme == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            user_ok = self.user is None or _same(user, self.user)
            if user_ok and _same(password, self.secret):
                return "basic"
        return None


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, say) with the password of ``url`` replaced by ``**``."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "**")
    return text


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class AuthMiddleware:
    """401 for every request without valid credentials (but the health endpoints)."""

    def __init__(self, app: ASGIApp, auth: Auth | None) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.auth is None or scope["path"] in OPEN_PATHS:
            scope.setdefault("state", {})["auth_scheme"] = None
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        scheme = self.auth.check(request.headers.get("authorization"))
        if scheme is None:
            response: Response = JSONResponse(
                {"error": "authentication required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="celeriac dashboard", charset="UTF-8"'},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["auth_scheme"] = scheme
        await self.app(scope, receive, send)


def csrf_token(request: Request) -> str:
    """The token the request's cookie carries, or a new one."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def csrf_ok(request: Request) -> bool:
    if getattr(request.state, "auth_scheme", None) == "bearer":
        return True
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    return bool(cookie) and _same(cookie, header)


def set_csrf_cookie(response: Response, token: str) -> None:
    # Readable by the page's script (it copies it into the header), never sent cross-site.
    response.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="strict", path="/")
