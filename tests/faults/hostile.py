"""Hostile records that ARE protobuf (issue 17, the hostile phase): the wrong
message type on each consumed topic, and valid events carrying hostile ids
and strings. The harness's own hostile values (tests/faults/harness.py,
``hostile_values``) are not protobuf at all; these are the cases a decoder
alone cannot catch.

Each record says what every consumer group reading its topic must do with
it: dead-letter it exactly once, or handle it harmlessly (no dead letter, no
stall, nothing of another firm touched), and why. The checker
(``problems``) finds each record's dead letters by the source coordinates
the letter carries, counts them per consumer (twice is a failure: a
consumer that dead-letters, rewinds and dead-letters again), and compares
with what the record says. The fault suite's own checker meanwhile holds
every other promise (the seed's firms' decisions, ledgers, payments and
notifications) and lag 0 on every group, so a record that stalled a
partition fails the seed.

Every record is about a firm that is not in any seed's workload (a valid
credit code, ``intruder(seed)``), except the two that name a seed firm on
purpose: a payment confirmation for one firm's tranche naming another firm,
and firm facts under one firm's key naming another (each must change
nothing of either firm).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format
from kafka import KafkaProducer

from subsidy.contracts import cloudevents, topics
from subsidy.core.credit_code import complete
from subsidy.platform import dead_letters
from subsidy.v1 import (
    application_pb2,
    decision_pb2,
    events_pb2,
    firm_facts_pb2,
    notice_pb2,
    payout_pb2,
    proposal_pb2,
    review_pb2,
)

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "applications.jsonl"

#: Consumer groups per topic, by the name their dead letters carry.
READERS = {
    topics.APPLICATIONS.name: ("eligibility", "review-applications"),
    topics.DECISIONS.name: ("payout", "notify", "intake-projection", "review"),
    topics.PAYOUTS.name: ("notify", "intake-payout-projection", "review-payouts"),
    topics.PAYMENTS.name: ("payout-payments",),
    topics.NOTICES.name: ("payout-notices", "notify"),
    topics.FIRMS.name: ("payout-firms", "intake-firms"),
    topics.PROPOSALS.name: ("notify",),
    topics.REVIEWS.name: ("notify",),
}

#: Ids a hostile producer might put in an otherwise valid event: line breaks
#: (e-mail header and log injection), spreadsheet formula prefixes, markup,
#: NUL, an id far past the grammar's 64 characters.
HOSTILE_IDS = {
    "crlf": "HX-1\r\nBcc: x@evil.example",
    "nel": "HX-2\u0085Forged: yes",
    "u2028": "HX-3\u2028Forged: yes",
    "formula=": '=HYPERLINK("http://evil.example","x")',
    "formula+": "+1+cmd|' /C calc'!A0",
    "formula-": "-2+3",
    "formula@": "@SUM(1+1)",
    "html": "<script>alert(1)</script>",
    "nul": "HX-9\x00",
    "long": "H" * 5000,
}
#: The few used where one id per class is enough.
FEW = ("crlf", "formula=", "html", "long")


def intruder(seed: int) -> str:
    """A valid credit code of no seed's workload, nor of the registry."""
    return complete(f"91310117X{seed % 100000:05d}99")


def bad_check_character(code: str) -> str:
    """``code`` with a wrong check character: not a valid credit code."""
    return code[:-1] + ("1" if code[-1] != "1" else "2")


@dataclasses.dataclass(frozen=True)
class Hostile:
    topic: str
    key: bytes
    value: bytes
    what: str
    #: The consumers (READERS names) that must dead-letter it exactly once;
    #: every other reader of the topic must take it without a dead letter.
    dead: frozenset[str]
    why: str


@dataclasses.dataclass(frozen=True)
class Placed:
    hostile: Hostile
    partition: int
    offset: int


def _decision(code: str, application_id: str) -> decision_pb2.Decision:
    """A decision as eligibility makes it (the calculator on the first demo
    application), about ``application_id`` of firm ``code``."""
    from subsidy.contracts.calculator import evaluate_application
    from subsidy.core.policy import load_policy

    demo = json.loads(DEMO_FILE.read_text(encoding="utf-8").splitlines()[0])
    message = json_format.ParseDict(evaluate_application(demo, load_policy()), decision_pb2.Decision())
    message.decision_id = message.decision_id.replace(demo["application_id"], application_id, 1)
    message.application_id = application_id
    message.credit_code = code
    return message


def _application(code: str, application_id: str, demo: dict) -> application_pb2.Application:
    app = json.loads(json.dumps(demo))
    app["application_id"] = application_id
    app["firm"]["credit_code"] = code
    return json_format.ParseDict(app, application_pb2.Application())


def wrong_types(seed: int) -> list[Hostile]:
    """Valid protobuf of another topic's type on each consumed topic."""
    code = intruder(seed)
    key = code.encode()
    decision = _decision(code, f"HW{seed}-1").SerializeToString()
    notice = notice_pb2.NoticeEvent(
        event_id=f"payable:HW{seed}-2@2024-final",
        line_payable=notice_pb2.LinePayable(
            decision_id=f"HW{seed}-2@2024-final",
            application_id=f"HW{seed}-2",
            credit_code=code,
            notice_id=f"N-{seed}",
            payable_on="2024-06-01",
        ),
    ).SerializeToString()
    payout = payout_pb2.PayoutEvent(
        event_id=f"due:HW{seed}-3/tranche-1",
        tranche_due=payout_pb2.TrancheDue(
            tranche_id=f"HW{seed}-3/tranche-1",
            credit_code=code,
            amount_fen=50_000_00,
            due_on="2025-01-01",
            budget_year=2025,
            clause="3.2",
            application_id=f"HW{seed}-3",
        ),
    ).SerializeToString()
    proposal = proposal_pb2.ProposalEvent(
        event_id=f"created:HW{seed}-4",
        proposal_id=f"HW{seed}-4",
        credit_code=code,
        created=proposal_pb2.ProposalCreated(
            proposal=proposal_pb2.Proposal(
                proposal_id=f"HW{seed}-4", credit_code=code, clause="3.2", expires_on="2025-01-01"
            )
        ),
    ).SerializeToString()
    facts = firm_facts_pb2.FirmFacts(
        credit_code=code, name="入侵者", as_of="2024-06-01", registered_in_district=True, feed_sequence=1
    ).SerializeToString()
    every = READERS
    return [
        Hostile(
            topics.APPLICATIONS.name,
            key,
            decision,
            "a Decision on applications",
            frozenset(every[topics.APPLICATIONS.name]),
            "its repeated Reason (field 7) is no Application field 7: not an Application protobuf",
        ),
        Hostile(
            topics.DECISIONS.name,
            key,
            notice,
            "a NoticeEvent on decisions",
            frozenset(every[topics.DECISIONS.name]),
            "it parses as a Decision without application_id or clause: the contract's decoder refuses it",
        ),
        Hostile(
            topics.PAYOUTS.name,
            key,
            decision,
            "a Decision on payouts",
            frozenset(every[topics.PAYOUTS.name]),
            "its strings land on PayoutEvent's message fields: not a PayoutEvent protobuf",
        ),
        Hostile(
            topics.PAYMENTS.name,
            key,
            decision,
            "a Decision on payments",
            frozenset(every[topics.PAYMENTS.name]),
            "it parses as a payment of 0 fen (field 4 is a string there): refused as not positive",
        ),
        Hostile(
            topics.NOTICES.name,
            key,
            payout,
            "a PayoutEvent on notices",
            frozenset({"notify"}),
            "TrancheDue (field 4) reads as an ObjectionResolved without its ids: notify refuses it; payout's "
            "ledger reads only LinePayable and LineWithdrawn and passes over an objection, harmlessly",
        ),
        Hostile(
            topics.FIRMS.name,
            key,
            proposal,
            "a ProposalEvent on firms",
            frozenset(every[topics.FIRMS.name]),
            "it parses as FirmFacts whose credit_code (the event id) is not the record's key",
        ),
        Hostile(
            topics.PROPOSALS.name,
            key,
            facts,
            "a FirmFacts on proposals",
            frozenset(every[topics.PROPOSALS.name]),
            "its name lands on proposal_id: not an identifier",
        ),
        Hostile(
            topics.REVIEWS.name,
            key,
            notice,
            "a NoticeEvent on reviews",
            frozenset(every[topics.REVIEWS.name]),
            "LinePayable (field 5) reads as an InformationRequested without request number: refused",
        ),
    ]


def hostile_ids(seed: int, demo: dict, victim: str, other: str) -> list[Hostile]:
    """Valid events whose ids are hostile, and events naming another firm.
    ``victim`` and ``other`` are two of the seed's firms; ``demo`` one of the
    seed's applications (the shape of a valid one, its id a real one)."""
    code = intruder(seed)
    key = code.encode()
    grammar = "the application id is outside the identifier grammar (subsidy/contracts/events.py)"
    out: list[Hostile] = []
    for name, hid in HOSTILE_IDS.items():
        out.append(
            Hostile(
                topics.APPLICATIONS.name,
                key,
                _application(code, hid, demo).SerializeToString(),
                f"an Application with a {name} id",
                frozenset(READERS[topics.APPLICATIONS.name]),
                "eligibility's codec and review's store refuse an id outside the grammar",
            )
        )
        out.append(
            Hostile(
                topics.DECISIONS.name,
                key,
                _decision(code, hid).SerializeToString(),
                f"a Decision with a {name} application id",
                frozenset(READERS[topics.DECISIONS.name]),
                grammar,
            )
        )
    for name in FEW:
        hid = HOSTILE_IDS[name]
        out.append(
            Hostile(
                topics.PAYOUTS.name,
                key,
                payout_pb2.PayoutEvent(
                    event_id=f"due:{hid}",
                    tranche_due=payout_pb2.TrancheDue(
                        tranche_id=f"{hid}/tranche-1",
                        credit_code=code,
                        amount_fen=50_000_00,
                        due_on="2025-01-01",
                        budget_year=2025,
                        clause="3.2",
                        application_id=hid,
                    ),
                ).SerializeToString(),
                f"a TrancheDue with a {name} id",
                frozenset({"notify", "intake-payout-projection"}),
                f"{grammar}; review keeps only GrantRecorded and passes over a TrancheDue, harmlessly",
            )
        )
        out.append(
            Hostile(
                topics.PAYMENTS.name,
                key,
                payout_pb2.PaymentConfirmed(
                    payment_id=hid, tranche_id=f"{hid}/tranche-1", credit_code=code, amount_fen=1, paid_on="2025-01-02"
                ).SerializeToString(),
                f"a PaymentConfirmed with a {name} id",
                frozenset(READERS[topics.PAYMENTS.name]),
                "no such tranche: refused, nothing written",
            )
        )
        out.append(
            Hostile(
                topics.NOTICES.name,
                key,
                notice_pb2.NoticeEvent(
                    event_id=f"payable:{hid}@2024-final",
                    line_payable=notice_pb2.LinePayable(
                        decision_id=f"{hid}@2024-final",
                        application_id=hid,
                        credit_code=code,
                        notice_id=f"N-{seed}",
                        payable_on="2024-06-01",
                    ),
                ).SerializeToString(),
                f"a LinePayable with a {name} id",
                frozenset({"payout-notices"}),
                "payout knows no such decision: refused; notify tells no firm of a payable line "
                "(a silent kind), harmlessly",
            )
        )
        out.append(
            Hostile(
                topics.FIRMS.name,
                key,
                firm_facts_pb2.FirmFacts(
                    credit_code=code, name=hid, as_of="2024-06-01", registered_in_district=True, feed_sequence=7
                ).SerializeToString(),
                f"FirmFacts with a {name} name",
                frozenset({"intake-firms"} if name == "long" else ()),
                "a firm's name is data, not an id: payout keeps it without control characters and cut to 200 "
                "characters (the finance CSV neutralises formulas); intake refuses one over 256 characters",
            )
        )
        out.append(
            Hostile(
                topics.PROPOSALS.name,
                key,
                proposal_pb2.ProposalEvent(
                    event_id=f"created:{hid}",
                    proposal_id=hid,
                    credit_code=code,
                    created=proposal_pb2.ProposalCreated(
                        proposal=proposal_pb2.Proposal(
                            proposal_id=hid, credit_code=code, clause="3.2", expires_on="2025-01-01"
                        )
                    ),
                ).SerializeToString(),
                f"a ProposalCreated with a {name} id",
                frozenset(READERS[topics.PROPOSALS.name]),
                "a proposal id is an application id to be: notify refuses one outside the grammar",
            )
        )
        out.append(
            Hostile(
                topics.REVIEWS.name,
                key,
                review_pb2.ReviewEvent(
                    event_id=f"info:{hid}",
                    information_requested=review_pb2.InformationRequested(
                        item_id=hid, application_id=hid, credit_code=code, request_number=1, missing="营业执照副本"
                    ),
                ).SerializeToString(),
                f"an InformationRequested with a {name} id",
                frozenset(READERS[topics.REVIEWS.name]),
                "notify refuses an application id outside the grammar (it would reach the e-mail's subject)",
            )
        )
    # Credit codes: a bad check character, and another firm's.
    bad = bad_check_character(code)
    out.append(
        Hostile(
            topics.FIRMS.name,
            bad.encode(),
            firm_facts_pb2.FirmFacts(
                credit_code=bad, name="坏校验位", as_of="2024-06-01", feed_sequence=1
            ).SerializeToString(),
            "FirmFacts under a credit code with a bad check character",
            frozenset(READERS[topics.FIRMS.name]),
            "the key is no valid credit code",
        )
    )
    out.append(
        Hostile(
            topics.PAYMENTS.name,
            key,
            payout_pb2.PaymentConfirmed(
                payment_id=f"HP{seed}-cross",
                tranche_id=f"{demo['application_id']}/tranche-0",
                credit_code=other,
                amount_fen=1,
                paid_on="2025-01-02",
            ).SerializeToString(),
            "a PaymentConfirmed for a seed firm's tranche naming another seed firm",
            frozenset(READERS[topics.PAYMENTS.name]),
            "the tranche is another firm's (or, where the seed granted nothing, unknown): refused, nothing paid",
        )
    )
    out.append(
        Hostile(
            topics.FIRMS.name,
            key,
            firm_facts_pb2.FirmFacts(
                credit_code=victim, name="冒名", as_of="2024-06-01", registered_in_district=False, feed_sequence=1 << 40
            ).SerializeToString(),
            "FirmFacts under the intruder's key naming a seed firm (moved out of the district)",
            frozenset(READERS[topics.FIRMS.name]),
            "the facts' credit code is not the record's key: refused, the seed firm's standing untouched",
        )
    )
    return out


def produce(bootstrap: str, seed: int, demo: dict, victim: str, other: str) -> list[Placed]:
    """Every hostile record of this module on its topic, with CloudEvents headers."""
    records = wrong_types(seed) + hostile_ids(seed, demo, victim, other)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10)
    placed = []
    try:
        for n, h in enumerate(records):
            headers = cloudevents.headers(
                f"hostile-{seed}-pb-{n}", "cn.gov.songjiang.hostile.v1", "/tests/faults", cloudevents.new_trace_id()
            )
            meta = producer.send(h.topic, key=h.key, value=h.value, headers=headers).get(timeout=60)
            placed.append(Placed(h, meta.partition, meta.offset))
    finally:
        producer.close(timeout=10)
    return placed


def letters(read_topic: Callable[[str], list]) -> dict[tuple[str, int, int], Counter]:
    """Every dead letter on every .dlq topic: source coordinates -> letters per consumer."""
    found: dict[tuple[str, int, int], Counter] = defaultdict(Counter)
    for dlq in topics.ALL:
        if dlq.name.endswith(".dlq"):
            for r in read_topic(dlq.name):
                letter = events_pb2.DeadLetter.FromString(r.value)
                where = (letter.source_topic, letter.source_partition, letter.source_offset)
                # Every letter of one record by one consumer carries one id, however
                # often it is sent: what lets a reader of the DLQ keep it once.
                derived = dead_letters.event_id(letter.consumer, *where)
                if cloudevents.as_dict(r.headers or []).get("ce_id") != derived:
                    found[where][f"{letter.consumer} (ce_id not {derived})"] += 1
                found[where][letter.consumer] += 1
    return found


def problems(
    placed: list[Placed], read_topic: Callable[[str], list], passes: Callable[[str], int] = lambda consumer: 1
) -> list[str]:
    """Each record dead-lettered once by each consumer it names and by no other.

    ``passes(consumer)``: how many times that consumer may have read the
    records, 1 plus what made it read again since they were placed: a full
    replay of its service (the rewind fault resets its groups to the earliest
    offsets), or the end of a member whose progress was not yet committed
    (kill -9, a pause past the session timeout, a broker restart). Reading a
    poison record again dead-letters it again, under the same derived id
    (dead_letters.event_id), which a reader of the DLQ folds into one (the
    operations service does); more letters than passes is a record handled
    twice in one pass."""
    found = letters(read_topic)
    out = []
    for p in placed:
        h = p.hostile
        got = found.get((h.topic, p.partition, p.offset), Counter())
        twice = sorted(c for c, n in got.items() if n > passes(c))
        if twice:
            out.append(f"hostile {h.what} ({h.topic}/{p.partition}/{p.offset}) dead-lettered more than once by {twice}")
        if set(got) != set(h.dead):
            out.append(
                f"hostile {h.what} ({h.topic}/{p.partition}/{p.offset}) dead-lettered by {sorted(got)}, "
                f"want {sorted(h.dead)}: {h.why}"
            )
    return out
