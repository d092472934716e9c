"""Login, session expiry, login rate limiting and CSRF for the UI.

The session is Flask's signed cookie (HttpOnly, SameSite=Lax, Secure on Railway). It records when
the user logged in and was last seen; the server refuses it after `idle_minutes` without a
request or `max_session_minutes` in all, and after a password change (it carries a fingerprint
of the password it was opened with). Every POST must carry the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

from flask import abort, current_app, request, session

from .config import UiConfig

CSRF_FIELD = "csrf_token"


def password_fingerprint(config: UiConfig) -> str:
    """Ties sessions to the password: changing ATB_UI_PASSWORD logs everyone out."""
    key = config.secret_key.encode()
    return hmac.new(key, (config.password or "").encode(), hashlib.sha256).hexdigest()[:16]


def password_matches(config: UiConfig, given: str) -> bool:
    expected = (config.password or "").encode()
    return config.password is not None and hmac.compare_digest(expected, given.encode())


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse (400) a POST whose form token does not match the session's."""
    sent = request.form.get(CSRF_FIELD, "")
    token = session.get("csrf")
    if not token or not sent or not hmac.compare_digest(str(token), sent):
        abort(400, description="the form's CSRF token is missing or does not match this session")


def logged_in(config: UiConfig) -> bool:
    """True when the session is logged in and has not expired (refreshes its idle clock)."""
    if not config.login_required:
        return True
    now = time.time()
    since = session.get("auth_at")
    seen = session.get("seen_at")
    if (
        not isinstance(since, (int, float))
        or not isinstance(seen, (int, float))
        or session.get("pw") != password_fingerprint(config)
        or now - seen > config.idle_minutes * 60
        or now - since > config.max_session_minutes * 60
    ):
        return False
    if now - seen > 30:  # avoid rewriting the cookie on every request
        session["seen_at"] = now
    return True


def log_in(config: UiConfig) -> None:
    now = time.time()
    session.clear()
    session.permanent = True
    session.update(auth_at=now, seen_at=now, pw=password_fingerprint(config))
    session["csrf"] = secrets.token_urlsafe(32)


class LoginLimiter:
    """Failed logins per client address (and in total) within a sliding window."""

    def __init__(self, per_client: int, window_s: float, total: int | None = None) -> None:
        self.per_client = per_client
        self.total = total if total is not None else per_client * 10
        self.window_s = window_s
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _trim(self, stamps: deque[float], now: float) -> None:
        while stamps and now - stamps[0] > self.window_s:
            stamps.popleft()

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            mine = self._failures.get(client, deque())
            self._trim(mine, now)
            self._trim(self._all, now)
            waits = []
            if len(mine) >= self.per_client:
                waits.append(self.window_s - (now - mine[0]))
            if len(self._all) >= self.total:
                waits.append(self.window_s - (now - self._all[0]))
            return int(max(waits) + 1) if waits else 0

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures.setdefault(client, deque()).append(now)
            self._all.append(now)
            if len(self._failures) > 10_000:  # bound memory under a spray of addresses
                self._failures = {
                    k: v for k, v in self._failures.items() if v and now - v[-1] < self.window_s
                }

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def client_address() -> str:
    return request.remote_addr or "unknown"


def config() -> UiConfig:
    return current_app.extensions["atb_ui"].config
