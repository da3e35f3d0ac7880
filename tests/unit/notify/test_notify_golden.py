"""Golden texts: every event kind, rendered as the firm receives it, byte for
byte against tests/unit/notify/golden_notifications.json.

The records go through the consumer's record handler (parse, render, send) as
Kafka delivers them, so the file pins what a person reads whatever the
internals look like. The file was written from the renderer before it moved
from MessageToDict dicts to notify's domain values, when TranchePaid and
TrancheCancelled took their clause from a remembered TrancheScheduled; the
events now carry it, and the texts agree on every line. The last two
records are as payout published them before that (no clause: 条款：未知). Regenerate it only for a deliberate change of wording:
``.venv/bin/python tests/unit/notify/test_notify_golden.py --write`` and
review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from subsidy.contracts import topics
from subsidy.platform.registry import FirmRecord
from subsidy.services.notify import handlers
from subsidy.services.notify.adapters.kafka import NotifyHandler
from subsidy.v1 import decision_pb2

sys.path.insert(0, str(Path(__file__).parent))
from notify_fakes import (
    CONTACTS,
    TITLES,
    FakeChannel,
    FakeFirms,
    FakeLog,
    cancelled,
    cancelled_after_grace,
    decision,
    due,
    firm_record,
    grant,
    grant_adjusted,
    grant_payable,
    held,
    information_requested,
    notice_published,
    objection_resolved,
    paid,
    proposal_created,
    proposal_expired,
    recovery_opened,
    reserved,
    reviewed,
    scheduled,
    tranche_held,
    tranche_released,
)

GOLDEN = Path(__file__).with_name("golden_notifications.json")
NAMELESS = "91310117MA1K7D9Q00"


def _records() -> list:
    """Every event kind and the branches of their texts, in topic order."""
    referred = decision("REFERRED", app="SJ-2025-0003")
    review = decision("NEEDS_REVIEW", app="SJ-2025-0004")
    scope = decision(
        app="SJ-2025-0005",
        clause="一",
        reasons=[
            decision_pb2.Reason(code="OUT_OF_SCOPE", clause="一", message="企业不在本区登记"),
            decision_pb2.Reason(code="NO_MESSAGE", clause="", message=""),
        ],
    )
    nameless = decision(app="SJ-2025-0006", credit_code=NAMELESS)
    nothing = grant(app="SJ-2025-0007", granted=0)
    del nothing.grant_recorded.reasons[:]
    nothing.grant_recorded.tranche_count = 0
    unpaid = paid(app="SJ-2025-0009", number=1, amount=100, legacy=True)
    unpaid.tranche_paid.payment_id = ""
    unexplained = cancelled(app="SJ-2025-0009", number=0, amount=50000, legacy=True)
    unexplained.tranche_cancelled.reason = ""
    messages = [
        (topics.DECISIONS, decision()),
        (topics.DECISIONS, decision("INELIGIBLE", app="SJ-2025-0002")),
        (topics.DECISIONS, referred),
        (topics.DECISIONS, review),
        (topics.DECISIONS, decision(app="SJ-2025-0008", clause="10.cloud")),
        (topics.DECISIONS, scope),
        (topics.DECISIONS, nameless),
        (topics.PAYOUTS, grant()),
        (topics.PAYOUTS, grant(app="SJ-2025-0010", granted=100000050)),
        (topics.PAYOUTS, nothing),
        (topics.PAYOUTS, scheduled(number=0)),
        (topics.PAYOUTS, scheduled(number=1, amount=500000000)),
        (topics.PAYOUTS, scheduled(number=2, amount=88888890)),
        (topics.PAYOUTS, due(number=0)),
        (topics.PAYOUTS, paid(number=0)),
        (topics.PAYOUTS, due(number=1, amount=500000000)),
        (topics.PAYOUTS, cancelled(number=2)),
        # Published before tranche events carried their clause: none to name.
        (topics.PAYOUTS, unpaid),
        (topics.PAYOUTS, unexplained),
        # Review and the public notice (issue 12).
        (topics.DECISIONS, held()),
        (topics.DECISIONS, held(app="SJ-2025-0012", reasons=("REGISTRY_FACTS_CHANGED", "SOMETHING_NEW"))),
        (topics.DECISIONS, reviewed()),
        (topics.DECISIONS, reviewed("REJECTED", app="SJ-2025-0012", basis="")),
        (topics.PAYOUTS, reserved(app="SJ-2025-0013")),
        # Two lines of this firm and one of another, whom the registry does not know here: one e-mail, its own lines.
        (topics.NOTICES, notice_published()),
        (topics.NOTICES, objection_resolved()),
        (topics.NOTICES, objection_resolved("UPHELD", objection="O-4", reasons="")),
        (topics.PAYOUTS, grant_payable()),
        (topics.REVIEWS, information_requested()),
        # Release gates and recovery (issue 13): held (the facts' day; a firm the
        # platform no longer knows), released, cancelled after the grace, recovered.
        (topics.PAYOUTS, tranche_held()),
        (
            topics.PAYOUTS,
            tranche_held(app="SJ-2025-0016", facts_as_of="", reason="政务数据平台已无该企业的登记信息"),
        ),
        (topics.PAYOUTS, tranche_released()),
        (topics.PAYOUTS, cancelled_after_grace()),
        (topics.PAYOUTS, recovery_opened()),
        (topics.PAYOUTS, recovery_opened(app="SJ-2025-0010", amount=100000050, void=True, reason="骗取资助，认定无效")),
        # 免申即享 proposals (issue 13, item 4): made, and expired unanswered.
        (topics.PROPOSALS, proposal_created()),
        (topics.PROPOSALS, proposal_expired()),
        # Policy versions (issue 14): a RESERVED grant re-decided under the adopted version, up and down.
        (topics.PAYOUTS, grant_adjusted()),
        (topics.PAYOUTS, grant_adjusted(app="SJ-2023-0010", previous=30_000_000, granted=20_000_000)),
    ]
    return [
        SimpleNamespace(topic=topic.name, value=m.SerializeToString(), key=b"", partition=0, offset=i, headers=[])
        for i, (topic, m) in enumerate(messages)
    ]


def rendered() -> list[dict[str, str]]:
    channel = FakeChannel("email", "email")
    nameless = FirmRecord(dataclasses.replace(firm_record(NAMELESS).firm, name=""), CONTACTS)
    deps = handlers.Deps(
        firms=FakeFirms(firm_record(), nameless),
        log=FakeLog(),
        channels=[channel],
        titles=TITLES,
        attempts=1,
        sleep=lambda s: None,
    )
    handle = NotifyHandler(deps)
    records = _records()
    for record in records:
        handle(record)
    assert len(channel.delivered) == len(records), "every record is a distinct event: one e-mail each"
    return [{"event_id": n.event_id, "subject": n.subject, "body": n.body, "sms": n.sms} for n, _ in channel.delivered]


def test_every_event_kind_renders_exactly_the_golden_text():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    now = rendered()
    assert [g["event_id"] for g in golden] == [n["event_id"] for n in now]
    for expected, actual in zip(golden, now):
        assert actual == expected, expected["event_id"]


def test_the_golden_file_covers_every_event_kind_and_every_outcome():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    prefixes = {g["event_id"].split(":", 1)[0] for g in golden}
    assert prefixes == {
        "decision",
        "grant",
        "scheduled",
        "due",
        "paid",
        "cancelled",
        "published",
        "resolved",
        "payable",
        "info-requested",
        "held",
        "released",
        "recovery",
        "proposal",
        "adjusted",
    }
    subjects = "".join(g["subject"] for g in golden)
    for outcome in ("符合支持条件", "不符合支持条件", "需人工复核", "已转至相关基金办理"):
        assert f"评审结果：{outcome}" in subjects
    for outcome in ("审核结果：审核通过", "审核结果：审核未通过", "已转人工审核", "（待公示）", "公示名单"):
        assert outcome in subjects
    for outcome in ("异议成立", "异议不成立", "资助可拨付", "需补充材料"):
        assert outcome in subjects
    for outcome in ("拨付已暂停", "暂停拨付已解除", "资金追回通知", "免申即享", "已过期"):
        assert outcome in subjects
    assert "因政策调整重新核定" in subjects
    bodies = "".join(g["body"] for g in golden)
    assert "核定资助由50,000元调整为80,000元（增加30,000元）" in bodies
    assert "核定资助由300,000元调整为200,000元（减少100,000元）" in bodies


def test_no_firm_reads_another_firms_line_or_a_reviewers_name():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    text = json.dumps(golden, ensure_ascii=False)
    for other in ("SJ-OTHER-1", "上海别家科技有限公司", "reviewer-li", "reviewer-wang"):
        assert other not in text


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN.write_text(json.dumps(rendered(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
