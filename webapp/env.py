"""Typed readers for settings from the environment: a bad value fails loudly at start."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_optional_float(name: str) -> float | None:
    """A number that may be left unset (None: "not set", never a made-up default)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    return env_float(name, 0.0)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def secret_key_path(base_dir: Path) -> Path:
    """Where the single-machine default keeps its generated key (``make run`` writes
    it; every later command on the machine reads it)."""
    var_dir = Path(env_str("WATTLAB_VAR_DIR", str(base_dir / "var")))
    return Path(env_str("WATTLAB_SECRET_KEY_FILE", str(var_dir / "secret_key")))


def keep_secret_key(path: Path) -> str:
    """The key in ``path``, made (random, readable by this user only) if absent."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _meta_name(header: str) -> str:
    """``X-Forwarded-For`` -> ``HTTP_X_FORWARDED_FOR`` (request.META's spelling)."""
    name = header.strip().upper().replace("-", "_")
    if name == "REMOTE_ADDR" or name.startswith("HTTP_"):
        return name
    return "HTTP_" + name


def client_address_settings(
    headers: list[str], proxies: int | None
) -> tuple[list[str], int | None]:
    """(django-axes' AXES_IPWARE_META_PRECEDENCE_ORDER, AXES_IPWARE_PROXY_COUNT) for
    WATTLAB_CLIENT_IP_HEADERS and WATTLAB_TRUSTED_PROXIES.

    ``proxies``: how many reverse proxies in front of Wattlab each append the address
    they received the request from to the header (nginx's $proxy_add_x_forwarded_for,
    Traefik, Caddy and cloud load balancers do); None: 1 when a header is named, else
    0. The client is then that many entries from the right end of the header, whatever
    a client wrote to the left of them. django-ipware counts the proxies listed in the
    header, one fewer: the nearest proxy is REMOTE_ADDR, not an entry (and its strict
    mode, which Wattlab turns off with IPWARE_STRICT, would refuse a chain a client had
    prepended to and fall back to the proxy's own address for everyone).
    """
    named = [_meta_name(h) for h in headers if h.strip()]
    named = [h for h in named if h != "REMOTE_ADDR"]
    if proxies is None:
        proxies = 1 if named else 0
    if proxies < 0:
        raise ImproperlyConfigured(f"WATTLAB_TRUSTED_PROXIES={proxies} must not be negative")
    if proxies == 0:
        if named:
            raise ImproperlyConfigured(
                f"WATTLAB_CLIENT_IP_HEADERS names {', '.join(named)}, but "
                "WATTLAB_TRUSTED_PROXIES=0: without a proxy that writes it, any client can "
                "set that header to any address. Set WATTLAB_TRUSTED_PROXIES to the number "
                "of proxies in front of Wattlab."
            )
        return ["REMOTE_ADDR"], None
    if not named:
        named = ["HTTP_X_FORWARDED_FOR"]
    # REMOTE_ADDR last: a request that reached Wattlab without the header.
    return [*named, "REMOTE_ADDR"], proxies - 1


def env_optional_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    return env_int(name, 0)
