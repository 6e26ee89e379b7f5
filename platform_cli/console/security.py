"""Who may reach the console and what a request must carry. Pure checks plus one middleware.

- Address: loopback by default. Any other address exposes the platform's controls to the
  network, so the console refuses to start there without a token (or an explicit read-only
  console, which has no actions at all).
- Token: with one, every request must carry it: `?token=...` once (the console then sets it as
  an HttpOnly, SameSite=Strict cookie and redirects to the same page without it), or the cookie,
  or `Authorization: Bearer ...`.
- Host: only the names the console was started on (and loopback names) are served, so a DNS
  rebinding page cannot read the console through a name it controls.
- Actions: every POST needs an Origin (or Referer) of the console itself and the console's CSRF
  token (a form field only its own pages carry).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request

from platform_cli.errors import PlinthError

TOKEN_COOKIE = "plinth_console_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, read_only: bool) -> None:
    """Refuse to listen beyond this machine without a token or a read-only console."""
    if not is_loopback(host) and not token and not read_only:
        raise PlinthError(
            f"--host {host}: the console's actions (cancel, promote, rollback...) would be open to anyone who reaches that address",
            "pass --token SECRET (or set PLINTH_CONSOLE_TOKEN), or --read-only for a console without actions",
        )


@dataclass
class Guard:
    """The console's secrets and the checks every request goes through."""

    host: str
    port: int
    token: str | None = None
    read_only: bool = False
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def allowed_hosts(self) -> set[str]:
        names = {self.host, *LOOPBACK_NAMES} if is_loopback(self.host) else {self.host}
        return {name.strip("[]") for name in names}

    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = urlsplit(f"//{host_header}").hostname or ""
        return name in self.allowed_hosts or self.host in ("0.0.0.0", "::")

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf_token.encode())

    def same_origin(self, origin: str | None, referer: str | None, host_header: str | None) -> bool:
        """A POST's Origin (or, without one, its Referer) must be this console's own address.
        Browsers send Origin on every cross-site POST, so a forged form from elsewhere fails here
        even before the CSRF token is looked at."""
        source = origin if origin and origin != "null" else referer
        if not source:
            return False
        parts = urlsplit(source)
        return parts.scheme in ("http", "https") and parts.netloc == (host_header or "")


def url_without_token(path: str, query: dict[str, str]) -> str:
    rest = {k: v for k, v in query.items() if k != "token"}
    return path + (f"?{urlencode(rest)}" if rest else "")


def form_token_check(guard: Guard):
    """A dependency of every route: an action (POST) must carry the console's form token. (In a
    dependency rather than the middleware: FastAPI parses the form once and shares it here.)"""
    from fastapi import HTTPException

    async def check(request: Request) -> None:
        if request.method == "POST" and not guard.csrf_ok((await request.form()).get("csrf")):
            raise HTTPException(403, "refused: missing or wrong form token (reload the page and try again)")

    return check


def middleware(guard: Guard):
    """Starlette HTTP middleware enforcing host, token and (on POST) origin and CSRF token."""
    from starlette.responses import PlainTextResponse, RedirectResponse

    async def check(request, call_next):
        if not guard.host_allowed(request.headers.get("host")):
            return PlainTextResponse("unknown host: open the console at the address `plinth console` printed", status_code=400)
        if guard.token is not None:
            from_query = request.query_params.get("token")
            if from_query is not None and request.method == "GET" and guard.token_ok(from_query):
                response = RedirectResponse(url_without_token(request.url.path, dict(request.query_params)), status_code=303)
                response.set_cookie(TOKEN_COOKIE, from_query, httponly=True, samesite="strict")
                return response
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
            if not guard.token_ok(request.cookies.get(TOKEN_COOKIE) or bearer):
                return PlainTextResponse("this console needs its token: open the URL `plinth console` printed (…?token=...)", status_code=401)
        if request.method not in ("GET", "HEAD"):
            if guard.read_only:
                return PlainTextResponse("this console is read-only (started with --read-only)", status_code=403)
            if not guard.same_origin(request.headers.get("origin"), request.headers.get("referer"), request.headers.get("host")):
                return PlainTextResponse("refused: the request did not come from the console's own pages (Origin)", status_code=403)
            # The form token is checked by `form_token_check`, where the parsed form is at hand.
        response = await call_next(request)
        # Pages carry their own scripts and styles only; nothing may frame them.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return check
