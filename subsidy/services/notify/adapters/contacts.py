"""Where notify finds a firm's name and contacts: intake's registry adapters,
imported as they are (their FirmRecord already carries the ``contacts``
e-mail, phone and webhook URL, with a redacted ``repr``)."""

from __future__ import annotations

from typing import Any

from subsidy.platform.registry import FileRegistry, HttpRegistry


def build_registry(settings: Any) -> Any:
    if settings.registry_url:
        return HttpRegistry(
            settings.registry_url, timeout=settings.registry_timeout_s, attempts=settings.registry_attempts
        )
    return FileRegistry(settings.registry_file)
