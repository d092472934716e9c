"""The UI's pages: sessions, one session (charts, trades, positions with orders, events), system
events, login/logout, and the `/health` and `/db_info` endpoints."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from atb.db import connection, migrate
from atb.db.errors import DatabaseError
from atb.db.settings import redact_url

from . import chart, queries, security

bp = Blueprint("ui", __name__)
HEALTH_TIMEOUT_S = 5.0


def _state() -> Any:
    return current_app.extensions["atb_ui"]


def _cursor(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        abort(400, description=f"{name} must be a row id")
    return int(raw)


def _paging(prefix: str = "") -> dict[str, Any]:
    direction = request.args.get(f"{prefix}dir")
    if direction not in (None, "", "asc", "desc"):
        abort(400, description=f"{prefix}dir must be asc or desc")
    return {
        "sort": request.args.get(f"{prefix}sort"),
        "direction": direction or None,
        "after": _cursor(f"{prefix}after"),
        "before": _cursor(f"{prefix}before"),
    }


def link(prefix: str = "", **changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one); a table's own
    cursors are reset whenever its sort or filters change."""
    args = request.args.to_dict()
    if (
        any(key in changes for key in (f"{prefix}sort", f"{prefix}dir"))
        or not prefix
        and any(key in changes for key in ("severity", "type"))
    ):
        args.pop(f"{prefix}after", None)
        args.pop(f"{prefix}before", None)
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = str(value)
    endpoint: Any = request.endpoint
    params: dict[str, Any] = {**(request.view_args or {}), **args}
    return url_for(endpoint, **params)


@bp.get("/")
def index() -> Any:
    return redirect(url_for("ui.sessions"))


@bp.get("/sessions")
def sessions() -> Any:
    page = queries.sessions_page(**_paging(), limit=_state().config.page_size)
    figures = {row.id: _state().figures.figures(row) for row in page.rows}
    return render_template(
        "sessions.html", page=page, figures=figures, columns=queries.SESSIONS.sortable
    )


@bp.get("/sessions/<int:session_id>")
def session_detail(session_id: int) -> Any:
    session = queries.session_row(session_id)
    if session is None:
        abort(404, description=f"there is no trading session {session_id}")
    size = max(_state().config.page_size // 2, 10)
    curve = queries.equity_curve(session_id)
    drawdowns = queries.drawdowns(curve.buckets)
    sorts = queries.trade_sorts(session_id)
    return render_template(
        "session.html",
        session=session,
        figures=_state().figures.figures(session),
        curve=curve,
        equity_svg=chart.equity_svg(curve.buckets),
        drawdown_svg=chart.drawdown_svg(curve.buckets, drawdowns),
        trades=queries.trades_page(session_id, sortable=sorts, **_paging("t_"), limit=size),
        positions=queries.positions_page(session_id, **_paging("p_"), limit=size),
        events=queries.events_page(session_id=session_id, **_paging("e_"), limit=size),
        trade_columns=sorts,
        position_columns=queries.POSITIONS.sortable,
    )


@bp.get("/events")
def events() -> Any:
    severity = request.args.get("severity") or None
    event_type = request.args.get("type") or None
    if severity is not None and severity not in queries.SEVERITIES:
        abort(400, description=f"severity must be one of {', '.join(queries.SEVERITIES)}")
    if event_type is not None and event_type not in queries.EVENT_TYPES:
        abort(400, description=f"type must be one of {', '.join(queries.EVENT_TYPES)}")
    page = queries.events_page(
        severity=severity, event_type=event_type, **_paging(), limit=_state().config.page_size
    )
    return render_template(
        "events.html",
        page=page,
        severity=severity,
        event_type=event_type,
        severities=queries.SEVERITIES,
        event_types=queries.EVENT_TYPES,
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    state = _state()
    if not state.config.login_required:
        return redirect(url_for("ui.sessions"))
    target = _safe_next(request.values.get("next"))
    error = None
    status = 200
    if request.method == "POST":
        client = security.client_address()
        wait = state.limiter.retry_after(client)
        if wait:
            error, status = f"Too many failed attempts: try again in {wait} s.", 429
        elif security.password_matches(state.config, request.form.get("password", "")):
            state.limiter.succeeded(client)
            security.log_in(state.config)
            return redirect(target)
        else:
            state.limiter.failed(client)
            error, status = "Wrong password.", 401
    response = current_app.make_response(
        (render_template("login.html", error=error, next=target), status)
    )
    if status == 429:
        response.headers["Retry-After"] = str(wait)
    return response


@bp.post("/logout")
def logout() -> Any:
    from flask import session

    session.clear()
    return redirect(url_for("ui.login"))


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//`) may be redirected to."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ch.isspace() or ord(ch) < 32 for ch in target)  # browsers drop tabs: "/\t/evil"
    ):
        return url_for("ui.sessions")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("ui.sessions")
    return target


@bp.get("/health")
def health() -> Any:
    """For Railway's health check: 200 when the database answers and is at head, else 503."""
    body: dict[str, Any] = {"ok": False, "database": {"reachable": False, "latency_ms": None}}
    try:
        with connection.call_deadline(HEALTH_TIMEOUT_S):
            started = time.perf_counter()
            connection.ping()
            body["database"] = {
                "reachable": True,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            }
            state = migrate.migration_state()
        body["migrations"] = {
            "at_head": not state.pending and not state.unknown,
            "applied": len(state.applied),
            "pending": len(state.pending),
            "unknown": len(state.unknown),
        }
        body["ok"] = body["migrations"]["at_head"]
    except (DatabaseError, OSError):
        body["migrations"] = {"at_head": None}
    return jsonify(body), 200 if body["ok"] else 503


@bp.get("/db_info")
def db_info() -> Any:
    """Backend, redacted URL, server version and pool figures (login required)."""
    info = _state().manager.get_database_info()
    info["database_url"] = redact_url(info.get("database_url"))
    return jsonify(info)
