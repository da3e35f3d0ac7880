"""Shared values for the eligibility service tests (a plain module, not a conftest: its name must not clash): the policy and the demo
applications as protobuf bytes with CloudEvents headers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from subsidy.contracts import cloudevents, codec
from subsidy.core.policy import load_policy

DEMO = Path(__file__).resolve().parents[3] / "demo" / "applications.jsonl"
POLICY = load_policy()


def demo_applications():
    return [
        codec.parse_application(json.loads(line))
        for line in DEMO.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def record(key, value, headers=None, *, topic="subsidy.applications.v1", partition=3, offset=41):
    """A consumed record as the handler sees it (a faust Message has these attributes)."""
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, key=key, value=value, headers=headers)


def application_record(app, trace_id: str | None = "4bf92f3577b34da6a3ce929d0e0e4736"):
    """(key, value, headers) as intake's relay publishes them."""
    headers = []
    if trace_id is not None:
        headers = cloudevents.headers(
            app.application_id, cloudevents.TYPE_APPLICATION_SUBMITTED, "/songjiang/subsidy/intake", trace_id
        )
    return app.firm.credit_code.encode(), codec.application_to_proto(app).SerializeToString(), headers
