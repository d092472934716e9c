"""Run the UI: bind the database (never migrating it), build the app, serve it with waitress."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .app import create_app
from .config import UiConfig

log = logging.getLogger("atb.ui")
THREADS = 8


def build(config: UiConfig, url: str | None = None):
    """The app over the database at `url` (resolved as every atb command does)."""
    from atb.db import DatabaseManager

    # The UI reads; it never applies migrations (`atb db migrate` / setup-railway do).
    manager = DatabaseManager(url, apply_migrations=False, replace=True)
    return create_app(config, manager), manager


def serve(
    config: UiConfig, url: str | None = None, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until interrupted. `ready(address)` is called once the socket is listening."""
    from waitress import create_server

    app, manager = build(config, url)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    # Elsewhere X-Forwarded-* headers are dropped; on Railway its edge proxy sets them and the
    # app's ProxyFix trusts exactly one hop (client address for the login limit, the scheme).
    server = create_server(
        app,
        host=config.host,
        port=config.port,
        threads=THREADS,
        ident="atb",
        clear_untrusted_proxy_headers=not config.on_railway,
    )
    address = f"http://{_display_host(config.host)}:{server.effective_port}"
    if ready is not None:
        ready(address)
    try:
        server.run()
    finally:
        server.close()
        manager.close()


def _display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
