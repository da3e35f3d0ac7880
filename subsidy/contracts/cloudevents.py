"""CloudEvents (binary content mode) Kafka headers and W3C trace ids.

Every event carries `ce_id`, `ce_type`, `ce_source`, `ce_time`,
`ce_specversion`, `content-type: application/protobuf` and `ce_traceparent`
(the CloudEvents distributed-tracing extension, W3C format), so one
application can be followed through every service's logs by its trace id.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable, Mapping

from subsidy.core.dates import rfc3339

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"

TYPE_APPLICATION_SUBMITTED = "cn.gov.songjiang.subsidy.application.submitted.v1"
TYPE_DECISION_MADE = "cn.gov.songjiang.subsidy.decision.made.v1"
#: A candidate policy version's decision (shadow evaluation, subsidy.decisions.shadow.v1).
TYPE_DECISION_SHADOWED = "cn.gov.songjiang.subsidy.decision.shadowed.v1"
#: A re-decision at a policy version's adoption, superseding the application's
#: decision (subsidy.decisions.v1, ``supersedes_decision_id`` set; issue 14).
TYPE_DECISION_SUPERSEDED = "cn.gov.songjiang.subsidy.decision.superseded.v1"
TYPE_DEAD_LETTER = "cn.gov.songjiang.subsidy.dead_letter.v1"

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}\Z")

Headers = list[tuple[str, bytes]]


def new_trace_id() -> str:
    return secrets.token_hex(16)


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def headers(event_id: str, event_type: str, source: str, trace_id: str, time: dt.datetime | None = None) -> Headers:
    time = time or dt.datetime.now(dt.UTC)
    return [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", source.encode()),
        ("ce_time", rfc3339(time, timespec="milliseconds").encode()),
        ("content-type", CONTENT_TYPE.encode()),
        ("ce_traceparent", traceparent(trace_id).encode()),
    ]


def as_dict(raw: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers as text; undecodable values are replaced, never fatal."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (raw or [])}


def trace_id_of(raw: Iterable[tuple[str, bytes]] | Mapping[str, str] | None) -> str | None:
    values = raw if isinstance(raw, Mapping) else as_dict(raw)
    match = _TRACEPARENT.match(values.get("ce_traceparent", ""))
    return match.group(1) if match else None
