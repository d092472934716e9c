"""The Flask application behind `atb db ui`: `create_app(config, manager)`.

Read-only: the only forms are login and logout (both CSRF-protected). Every response carries a
strict Content-Security-Policy (no script at all, styles and images from this server only), and
no error ever shows a URL, a password or a traceback: the page names a reference id, and the log
line with that id holds the (redacted) details.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import traceback
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import Flask, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from atb.db.errors import DatabaseUnavailable
from atb.db.settings import redact_url

from . import security
from .config import UiConfig
from .queries import FiguresCache

log = logging.getLogger("atb.ui")

# No script may run, and nothing may load from anywhere but this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
OPEN_ENDPOINTS = frozenset({"ui.health", "ui.login", "static"})


@dataclass
class UiState:
    """What the views share: the configuration, the manager, the limiter, the figures cache."""

    config: UiConfig
    manager: Any
    limiter: security.LoginLimiter
    figures: FiguresCache


def number(value: Any) -> str:
    """A stored number exactly as stored (Decimal scale kept, never exponent notation)."""
    if value is None:
        return "—"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):  # figures computed now (get_performance_metrics)
        return f"{value:.8f}".rstrip("0").rstrip(".") if value == value else "—"
    return str(value)


def timestamp(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def create_app(config: UiConfig, manager: Any) -> Flask:
    """The UI over `manager`'s database (a DatabaseManager bound in this process)."""
    app = Flask("atb.ui")
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_NAME="atb_ui_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.on_railway,  # Railway serves HTTPS at its edge
        PERMANENT_SESSION_LIFETIME=dt.timedelta(minutes=config.max_session_minutes),
        MAX_CONTENT_LENGTH=16 * 1024,
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
    )
    if config.on_railway:
        # Railway's edge proxy is the one hop in front: trust its client address and scheme.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    app.extensions["atb_ui"] = UiState(
        config=config,
        manager=manager,
        limiter=security.LoginLimiter(config.login_attempts, config.login_window_s),
        figures=FiguresCache(manager, wait_s=config.figures_wait_s),
    )
    app.jinja_env.filters["num"] = number
    app.jinja_env.filters["ts"] = timestamp
    app.jinja_env.globals["csrf_token"] = security.csrf_token
    app.jinja_env.globals["login_required"] = config.login_required

    from .views import bp, link

    app.register_blueprint(bp)
    app.jinja_env.globals["link"] = link  # a global: imported macros see no context

    @app.before_request
    def guard() -> Any:
        if request.method == "POST":
            security.check_csrf()
        if request.endpoint in OPEN_ENDPOINTS or security.logged_in(config):
            return None
        if request.endpoint == "ui.db_info" or request.method != "GET":
            return jsonify(error="login required"), 401
        return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))

    @app.after_request
    def headers(response: Any) -> Any:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error_page(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(DatabaseUnavailable)
    def database_down(exc: DatabaseUnavailable) -> Any:
        reference = _log_failure(exc)
        return _error_page(
            503, "Database unavailable",
            "The database did not answer. Try again in a moment.", reference,
        )  # fmt: skip

    @app.errorhandler(Exception)
    def failure(exc: Exception) -> Any:
        reference = _log_failure(exc)
        return _error_page(500, "Something went wrong", "The page could not be shown.", reference)

    return app


def _log_failure(exc: BaseException) -> str:
    """Log the (redacted) traceback under a fresh reference id; the id is all the page shows."""
    reference = secrets.token_hex(4)
    details = redact_url("".join(traceback.format_exception(exc)))
    log.error("ui error %s on %s %s\n%s", reference, request.method, request.path, details)
    return reference


def _error_page(code: int, title: str, message: str, reference: str | None = None) -> Any:
    if (
        request.path in ("/health", "/db_info")
        or request.accept_mimetypes.best == "application/json"
    ):
        body = {"error": title, "reference": reference} if reference else {"error": title}
        return jsonify(body), code
    html = render_template(
        "error.html", code=code, title=title, message=message, reference=reference
    )
    return html, code
