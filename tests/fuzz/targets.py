"""The coverage-guided fuzzer's targets (issue 17, item 5): every decoder of
outside input and every gRPC request, in process. Each target takes the
fuzzer's bytes and either returns (the input was used, or refused with the
error its contract names) or raises: an exception of any other type, or an
``AssertionError`` of a broken promise, is a crash that libFuzzer saves.

    events        the consumed topics' decoders (subsidy/contracts/events.py,
                  codec.application_from_proto / decision_from_proto) and each
                  consumer's own parser (payout, notify, intake, review)
    application   an application as JSON (codec.parse_application) and the
                  calculator on it (subsidy/contracts/calculator.py)
    dead_letter   the dead-letter envelope (subsidy/platform/dead_letters.py):
                  any record fits, under the size limit, and decodes back
    page_token    subsidy/platform/paging.py: decode, and encode/decode round trip
    registry_feed registry-sync's feed: the /changes and /snapshot documents
                  (adapters/feed.py), each change (model.parse_change) and each
                  snapshot firm, folded
    grpc          every RPC of intake, proposals, eligibility, payout, review and operations
                  on their real servers (SQLite, no Kafka): raw request bytes
                  must get an answer other than INTERNAL or UNKNOWN, in time

``seeds(name)`` gives valid inputs to start from (libFuzzer mutates them);
crashes found once are kept under tests/fuzz/corpus/<target>/ and replayed
on every run (tests/fuzz/test_coverage_guided.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 3, 1)
SYNCED_AT = dt.datetime(2026, 3, 1, 8, tzinfo=dt.UTC)
FIRM = "91310117313Q6C3D6G"


@dataclasses.dataclass
class Target:
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    setup: Callable[[], None] = lambda: None


# -- events -----------------------------------------------------------------------------


def _event_decoders() -> list[tuple[Callable[[bytes], Any], tuple[type[BaseException], ...]]]:
    from subsidy.contracts import codec, events
    from subsidy.contracts.codec import BadInput
    from subsidy.platform.dead_letters import RecordRejected
    from subsidy.services.intake.adapters import kafka as intake_kafka
    from subsidy.services.notify import handlers as notify
    from subsidy.services.notify.model import InvalidEvent
    from subsidy.services.payout import handlers as payout
    from subsidy.services.payout.model import Rejected as PayoutRejected
    from subsidy.services.review import handlers as review
    from subsidy.services.review.model import Rejected as ReviewRejected

    contract = (events.MalformedEvent, BadInput)
    return [
        (lambda v: codec.application_from_proto(events.application(v)), contract),
        (lambda v: codec.decision_from_proto(events.decision(v)), contract),
        (events.payout_event, contract),
        (events.payment_confirmed, contract),
        (payout.parse_decision, (PayoutRejected,)),
        (payout.parse_payment, (PayoutRejected,)),
        (payout.parse_notice_line, (PayoutRejected,)),
        (lambda v: payout.parse_firm_facts(FIRM.encode(), v), (PayoutRejected,)),
        (notify.parse_decision, (InvalidEvent,)),
        (notify.parse_payout_event, (InvalidEvent,)),
        (notify.parse_notice_event, (InvalidEvent,)),
        (notify.parse_review_event, (InvalidEvent,)),
        (notify.parse_proposal_event, (InvalidEvent,)),
        (intake_kafka.parse_decision, (RecordRejected,)),
        (intake_kafka.parse_payout_event, (RecordRejected,)),
        (review.parse_decision, (ReviewRejected,)),
    ]


_DECODERS: list = []


def events_setup() -> None:
    _DECODERS.extend(_event_decoders())


def events_run(data: bytes) -> None:
    # The first byte picks the decoder, so each mutation is tried where it
    # reaches new code; every decoder sees every value over the run.
    if not data:
        return
    decode, allowed = _DECODERS[data[0] % len(_DECODERS)]
    with contextlib.suppress(allowed):
        decode(data[1:])


def events_seeds() -> list[bytes]:
    from tests.faults.hostile import HOSTILE_IDS, _decision, wrong_types

    values = [h.value for h in wrong_types(1)]
    values += [_decision(FIRM, "SJ-2025-0001").SerializeToString()]
    values += [_decision(FIRM, HOSTILE_IDS["crlf"]).SerializeToString()]
    return [bytes([i]) + v for v in values for i in range(16)]


# -- application JSON and the calculator -----------------------------------------------------

_POLICY: list = []


def application_setup() -> None:
    from subsidy.core.policy import load_policy

    _POLICY.append(load_policy())


def application_run(data: bytes) -> None:
    from subsidy.contracts.calculator import evaluate_application
    from subsidy.contracts.codec import BadInput

    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return  # not JSON: the CLI and the gateway refuse it before the codec
    try:
        out = evaluate_application(obj, _POLICY[0])
    except BadInput:
        return
    json.dumps(out)  # the calculator's answer is JSON


def application_seeds() -> list[bytes]:
    return [line.encode() for line in (ROOT / "demo" / "applications.jsonl").read_text().splitlines() if line.strip()]


# -- the dead-letter envelope -----------------------------------------------------------------


@dataclasses.dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list


def dead_letter_run(data: bytes) -> None:
    import atheris

    from subsidy.platform import dead_letters
    from subsidy.v1 import events_pb2

    fdp = atheris.FuzzedDataProvider(data)
    key = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000)) if fdp.ConsumeBool() else None
    headers = [
        (fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40)), fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600)))
        for _ in range(fdp.ConsumeIntInRange(0, 4))
    ]
    error = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 5000))
    repeat = fdp.ConsumeIntInRange(1, 600) if fdp.ConsumeBool() else 1  # up to ~2.4 MB: past the 1 MiB a record can be
    value = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096)) * repeat if fdp.ConsumeBool() else None
    record = _Record(
        "subsidy.decisions.v1", fdp.ConsumeIntInRange(0, 5), fdp.ConsumeIntInRange(0, 1 << 40), key, value, headers
    )
    letter = dead_letters.encode(
        record,
        error,
        dlq_topic="subsidy.decisions.v1.dlq",
        consumer="fuzz",
        source="/fuzz",
        trace_id=None,
        now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )
    assert len(letter.value) <= dead_letters.MAX_DEAD_LETTER_BYTES, len(letter.value)
    assert len(letter.key or b"") <= len(key or b""), "the key grew"
    decoded = events_pb2.DeadLetter.FromString(letter.value)
    assert decoded.source_offset == record.offset and decoded.consumer == "fuzz"
    original = value or b""
    if decoded.truncated:
        assert decoded.original_value_size == len(original)
        assert original.startswith(decoded.value)
        assert decoded.original_value_sha256 == hashlib.sha256(original).hexdigest()
    else:
        assert decoded.value == original


def dead_letter_seeds() -> list[bytes]:
    return [b"", b"\x01" * 64, bytes(range(256)) * 4]


# -- page tokens -----------------------------------------------------------------------------------


def page_token_run(data: bytes) -> None:
    from subsidy.platform import paging

    token = data.decode("utf-8", "replace")
    try:
        position = paging.decode(token)
    except paging.BadPageToken:
        return
    assert isinstance(position, dict)
    assert paging.decode(paging.encode(position)) == position


def page_token_seeds() -> list[bytes]:
    from subsidy.platform import paging

    return [
        paging.encode({"after": "SJ-2025-0001"}).encode(),
        paging.encode({"due_on": "2026-01-01", "tranche_id": "SJ-2025-0001/tranche-1"}).encode(),
        b"W1tbW1tbW1s=",
    ]


# -- registry-sync's feed -------------------------------------------------------------------------


def registry_feed_run(data: bytes) -> None:
    from subsidy.services.registry_sync import handlers, model
    from subsidy.services.registry_sync.adapters.feed import HttpFeed, decode_body
    from subsidy.services.registry_sync.events import facts_to_proto
    from subsidy.services.registry_sync.ports import FeedBroken

    try:
        doc = decode_body("/changes", data)  # what the adapter does with the platform's answer
    except FeedBroken:
        return

    class Canned(HttpFeed):
        def _get(self, path: str, query: dict[str, str]) -> Any:
            return doc

    feed = Canned("https://platform.invalid/feed", "")
    try:
        entries = list(feed.changes("", 100).changes)
    except FeedBroken:
        entries = []
    try:
        firms = list(feed.snapshot().firms)
    except FeedBroken:
        firms = []
    facts: dict[str, Any] = {}
    for entry in entries:
        try:
            change = model.parse_change(entry.obj, TODAY)
            folded = model.fold(facts.get(change.credit_code), change)
        except model.BadChange:  # a change the feed refuses (dead-lettered by registry-sync)
            continue
        facts[change.credit_code] = folded
        json.loads(model.canonical(folded))
        facts_to_proto(folded, SYNCED_AT).SerializeToString()  # what is published
    for i, entry in enumerate(firms):
        try:
            _, snapshot_facts = handlers._snapshot_firm(entry.obj, i, TODAY)
        except model.BadChange:
            continue
        facts_to_proto(snapshot_facts, SYNCED_AT).SerializeToString()


def registry_feed_seeds() -> list[bytes]:
    change = {
        "sequence": 7,
        "credit_code": FIRM,
        "kind": "REGISTRATION",
        "effective_on": "2026-02-27",
        "data": {"in_district": False},
    }
    award = {
        **change,
        "sequence": 8,
        "kind": "RECOGNITION_AWARDED",
        "data": {"kind": "DCMM_LEVEL", "level": "3", "reference": "R", "awarded_on": "2026-02-28"},
    }
    firm = {
        **change,
        "sequence": 9,
        "kind": "FIRM",
        "data": {
            "name": "上海九科",
            "kinds": ["INDUSTRIAL"],
            "registered_in_district": True,
            "tax_registered_in_district": True,
            "independent_legal_person": True,
        },
    }
    page = {"changes": [change, award, firm], "next_cursor": "c-9", "high_water": 9}
    snapshot = {"firms": [firm], "cursor": "c-9", "sequence": 9}
    return [json.dumps(d, ensure_ascii=False).encode() for d in (page, snapshot)]


# -- gRPC --------------------------------------------------------------------------------------------

_GRPC: dict[str, Any] = {}
ROLES = ("ENTERPRISE", "PORTAL", "REVIEWER", "FINANCE", "OPERATOR")


def _methods() -> list[str]:
    from subsidy.v1 import intake_pb2, operations_pb2, payout_pb2, policy_service_pb2, proposal_pb2, review_pb2

    services = [
        intake_pb2.DESCRIPTOR.services_by_name["IntakeService"],
        proposal_pb2.DESCRIPTOR.services_by_name["ProposalService"],
        policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"],
        payout_pb2.DESCRIPTOR.services_by_name["PayoutService"],
        review_pb2.DESCRIPTOR.services_by_name["ReviewService"],
        operations_pb2.DESCRIPTOR.services_by_name["OperationsService"],
    ]
    return [f"/{s.full_name}/{m.name}" for s in services for m in s.methods]


def grpc_setup() -> None:
    import grpc

    from tests.security.servers import Loop, Servers, security_for

    tmp = Path(tempfile.mkdtemp(prefix="fuzz-grpc-"))
    loop = Loop()
    names = ("intake", "eligibility", "payout", "review", "operations")
    servers = Servers(loop, tmp, {n: security_for(n, tmp) for n in names}).start()
    where = {
        "subsidy.v1.IntakeService": "intake",
        "subsidy.v1.ProposalService": "intake",
        "subsidy.v1.PolicyService": "eligibility",
        "subsidy.v1.PayoutService": "payout",
        "subsidy.v1.ReviewService": "review",
        "subsidy.v1.OperationsService": "operations",
    }
    channels = {n: grpc.insecure_channel(servers.address(n)) for n in names}
    _GRPC["methods"] = [
        (m, channels[where[m.split("/")[1]]].unary_unary(m, request_serializer=None, response_deserializer=None))
        for m in _methods()
    ]


def grpc_run(data: bytes) -> None:
    import grpc

    if len(data) < 2:
        return
    methods = _GRPC["methods"]
    name, call = methods[data[0] % len(methods)]
    role = ROLES[data[1] % len(ROLES)]
    # Authentication is off in this process: review takes the actor from
    # this metadata (docs/review.md); the other services ignore it.
    metadata = (("x-subsidy-subject", f"fuzz-{data[1] % 3}"), ("x-subsidy-role", role))
    try:
        call(data[2:], metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        code = exc.code()
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), f"{name}: {code.name}: {exc.details()}"
        assert code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{name}: no answer within 10 s"


def grpc_seeds() -> list[bytes]:
    """Every RPC with an empty request as each role, and a valid request
    for the RPCs that take an application, an id or a page."""
    from google.protobuf import json_format

    from subsidy.v1 import application_pb2, intake_pb2, payout_pb2, policy_service_pb2

    demo = json.loads((ROOT / "demo" / "applications.jsonl").read_text().splitlines()[0])
    app = json_format.ParseDict(demo, application_pb2.Application())
    methods = _methods()
    bodies = {
        "/subsidy.v1.IntakeService/SubmitApplication": intake_pb2.SubmitApplicationRequest(application=app),
        "/subsidy.v1.IntakeService/GetApplication": intake_pb2.GetApplicationRequest(application_id="SJ-2023-0001"),
        "/subsidy.v1.IntakeService/ListApplications": intake_pb2.ListApplicationsRequest(credit_code=FIRM, page_size=5),
        "/subsidy.v1.PolicyService/Evaluate": policy_service_pb2.EvaluateRequest(application=app),
        "/subsidy.v1.PayoutService/ListTranches": payout_pb2.ListTranchesRequest(page_size=3),
    }
    seeds = [bytes([i, r]) for i in range(len(methods)) for r in range(len(ROLES))]
    for name, body in bodies.items():
        if name in methods:
            seeds += [bytes([methods.index(name), r]) + body.SerializeToString() for r in range(len(ROLES))]
    return seeds


TARGETS = {
    "events": Target(events_run, events_seeds, events_setup),
    "application": Target(application_run, application_seeds, application_setup),
    "dead_letter": Target(dead_letter_run, dead_letter_seeds),
    "page_token": Target(page_token_run, page_token_seeds),
    "registry_feed": Target(registry_feed_run, registry_feed_seeds),
    "grpc": Target(grpc_run, grpc_seeds, grpc_setup),
}
