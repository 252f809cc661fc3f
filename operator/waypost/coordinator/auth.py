"""Who may use the user API and the UI: the API token, as a bearer header or as the
UI's session cookie.

The cookie never holds the token itself but an HMAC of it, so a leaked cookie does
not reveal the bearer token, and changing the token ends every UI session. It is
HttpOnly (page scripts cannot read it) and SameSite=Strict (other sites' pages
cannot make the browser send it). Requests that change something with only the
cookie must also carry htmx's ``HX-Request`` header, which a cross-site form cannot
add, so a forged form post is refused even by a browser that ignores SameSite.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from waypost.coordinator import appkeys
from waypost.engine.errors import Unauthorized

COOKIE = "waypost_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``."""
    return hmac.new(token.encode(), b"waypost-ui-session-v1", hashlib.sha256).hexdigest()


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def has_session(request: web.Request) -> bool:
    """True when no token is configured or the request carries a valid session cookie."""
    expected = request.app[appkeys.ENGINE].settings.api_token
    if expected is None:
        return True
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and token_matches(cookie, session_value(expected))


def require_user(request: web.Request) -> None:
    """Refuse (401) a request without the API token, when one is configured."""
    expected = request.app[appkeys.ENGINE].settings.api_token
    if expected is None:
        return
    given = bearer(request)
    if given is None:
        if COOKIE in request.cookies:
            if not has_session(request):
                raise Unauthorized("the UI session is not valid; log in again")
            if request.method not in SAFE_METHODS and request.headers.get("HX-Request") != "true":
                raise Unauthorized("a change made with the UI session cookie must come from "
                                   "the UI (HX-Request header)")
            return
        raise Unauthorized("missing API token (Authorization: Bearer <token>)")
    if not token_matches(given, expected):
        raise Unauthorized("the API token is not valid")
