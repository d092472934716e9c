"""What `atb db ui` needs to start safely: bind address, port, password, session lifetime.

`UiConfig.from_env()` reads the environment once; `startup_problem()` is the one-line refusal
the CLI prints when the UI would be reachable from other machines without a password.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from atb.db.errors import ConfigurationError
from atb.db.settings import inside_railway, is_production

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MIN_PASSWORD_LENGTH = 8


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost, or '' (every interface)
        return False


def port_from_env(env: Mapping[str, str]) -> int:
    """`PORT` (Railway sets it), else 8000."""
    raw = env.get("PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(f"PORT={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def _minutes(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{name}={raw!r} must be a whole number of minutes (1 or more)")
    return int(raw)


@dataclass(frozen=True)
class UiConfig:
    """Settings of one UI process. `password=None` means no login (loopback development only)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    password: str | None = field(default=None, repr=False)
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    # A session ends after this long without a request, and in any case after max_session.
    idle_minutes: int = 30
    max_session_minutes: int = 12 * 60
    # Failed logins allowed per client address (and, ten times that, in total) per window.
    login_attempts: int = 5
    login_window_s: int = 300
    on_railway: bool = False
    production: bool = False
    page_size: int = 50
    # How long a page waits for a running session's figures before showing them as computing.
    figures_wait_s: float = 0.03

    @classmethod
    def from_env(
        cls, host: str = DEFAULT_HOST, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> UiConfig:
        """The configuration from ATB_UI_* variables (and PORT when `port` is None)."""
        env = os.environ if env is None else env
        password = env.get("ATB_UI_PASSWORD") or None
        return cls(
            host=host,
            port=port_from_env(env) if port is None else port,
            password=password,
            secret_key=env.get("ATB_UI_SECRET_KEY") or secrets.token_hex(32),
            idle_minutes=_minutes(env, "ATB_UI_SESSION_MINUTES", 30),
            on_railway=inside_railway(env)
            or bool(env.get("RAILWAY_ENVIRONMENT_NAME") or env.get("RAILWAY_ENVIRONMENT")),
            production=is_production(env),
        )

    @property
    def login_required(self) -> bool:
        return self.password is not None

    def startup_problem(self) -> str | None:
        """Why this configuration must not serve, as one line; None when it may."""
        if self.password is not None and len(self.password) < MIN_PASSWORD_LENGTH:
            return f"ATB_UI_PASSWORD is too short: use at least {MIN_PASSWORD_LENGTH} characters"
        if self.password is None:
            if self.on_railway:
                return "on Railway the UI needs a password: set ATB_UI_PASSWORD on the service"
            if self.production:
                return "with ATB_ENV=production the UI needs a password: set ATB_UI_PASSWORD"
            if not is_loopback(self.host):
                return (
                    f"--host {self.host or '(all interfaces)'} is reachable from other machines: "
                    "set ATB_UI_PASSWORD, or bind to 127.0.0.1"
                )
        return None
