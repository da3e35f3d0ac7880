"""Where notify finds a firm's name and contacts: intake's registry adapters,
imported as they are (their FirmRecord already carries the ``contacts``
e-mail, phone and webhook URL, with a redacted ``repr``)."""

from __future__ import annotations

from typing import Any

from subsidy.platform.topic_registry import registry_from_source


def build_registry(settings: Any) -> Any:
    """SUBSIDY_REGISTRY_SOURCE as for intake: ``topic`` (subsidy.firms.v1, so a
    change of contacts on the data platform reaches the next notification),
    ``http`` or ``file``; unset: HTTP when SUBSIDY_REGISTRY_URL is set, else the file."""
    return registry_from_source(
        settings.registry_source,
        url=settings.registry_url,
        file=settings.registry_file,
        bootstrap=settings.kafka_bootstrap,
        timeout_s=settings.registry_timeout_s,
        attempts=settings.registry_attempts,
    )
