"""Secrets come from the environment or from mounted files, never from the
repository: every secret ``NAME`` may instead be given as ``NAME_FILE``, the
path of a file holding it (a Kubernetes Secret mounted as a volume). The file
wins when both are set; surrounding whitespace (the trailing newline) is
stripped. Values are never logged: ``redact_url`` hides a URL's password.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path


class SecretError(ValueError):
    """A secret file that cannot be read; the message names the variable, never the value."""


def secret(name: str, env: Mapping[str, str] | None = None, default: str = "") -> str:
    """The value of ``name``, or of the file named by ``name_FILE``, or ``default``."""
    env = os.environ if env is None else env
    path = (env.get(f"{name}_FILE") or "").strip()
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    value = env.get(name)
    if value is None or not value.strip():
        return default
    return value.strip()


def redact_url(url: str) -> str:
    """``postgresql://user:secret@db/x?password=y`` -> ``postgresql://user:***@db/x?password=***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{k}={'***' if k.lower() in ('password', 'passwd', 'sslpassword', 'secret', 'token') else v}"
            for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
