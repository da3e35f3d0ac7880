"""The console's dead-letter pages over the real OperationsService use cases
(an in-memory SQLite store behind the fake): the operations page counts the
letters per topic, a topic lists its letters decoded, a letter shows its
original record as fields; an OPERATOR replays it (once), or discards it
with a reason the form insists on; hostile content is text; every other
role gets 403 before any call."""

from __future__ import annotations

import re

import pytest

from subsidy.v1 import application_pb2
from tests.unit.console.fakes import HOSTILE_NAME, make_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def application(firm_code: str) -> bytes:
    app = application_pb2.Application(application_id="A-77", submitted_on="2026-11-20")
    app.firm.credit_code = firm_code
    app.firm.name = HOSTILE_NAME
    return app.SerializeToString()


def url(letter_id: str) -> str:
    return f"/operations/dead-letters/{letter_id}"


def test_the_operator_sees_the_letters_decoded_and_escaped(tmp_path):
    harness = make_harness(tmp_path)
    letter = harness.services.add_dead_letter(application(harness.services.firm_a), offset=3)
    harness.services.add_dead_letter(b"\xff\x00garbage", offset=4)
    harness.sign_in("OPERATOR")
    summary = harness.client.get("/operations").text
    row = re.search(
        r"<tr[^>]*><td><a href=\"/operations/dead-letters\?topic=subsidy.applications.v1.dlq\">.*?</tr>", summary
    )
    assert row and '<td class="num">2</td>' in row.group(0)
    listing = harness.client.get("/operations/dead-letters?topic=subsidy.applications.v1.dlq").text
    assert letter in listing and "subsidy.v1.Application" in listing and "无法解码" in listing
    assert "unexpected error in 5 attempts" in listing and harness.services.firm_a in listing
    page = harness.client.get(url(letter)).text
    assert "A-77" in page and "待处理" in page and 'id="replay"' in page
    assert "<script>alert" not in page and "&lt;script&gt;" in page  # the firm name is text


def test_replay_once_then_refused(tmp_path):
    harness = make_harness(tmp_path)
    letter = harness.services.add_dead_letter(application(harness.services.firm_a))
    harness.sign_in("OPERATOR")
    reply = harness.client.post(
        url(letter) + "/replay", data={"csrf_token": harness.csrf(), "reason": "规则已修正"}, follow_redirects=False
    )
    assert reply.status_code == 303 and reply.headers["location"].endswith("?done=replayed")
    page = harness.client.get(reply.headers["location"]).text
    assert "已重放" in page and "operator-zhao" in page and "规则已修正" in page and 'id="replay"' not in page
    with harness.services.operations_store.db.transaction() as tx:
        assert tx.one("SELECT COUNT(*), MIN(topic) FROM operations_outbox") == (1, "subsidy.applications.v1")
    again = harness.client.post(url(letter) + "/replay", data={"csrf_token": harness.csrf()})
    assert again.status_code == 409 and "already replayed by operator-zhao" in again.text
    with harness.services.operations_store.db.transaction() as tx:
        assert tx.one("SELECT COUNT(*) FROM operations_outbox")[0] == 1


def test_discard_names_the_missing_reason_and_sends_nothing(tmp_path):
    harness = make_harness(tmp_path)
    letter = harness.services.add_dead_letter(b"junk")
    harness.sign_in("OPERATOR")
    before = len(harness.services.calls)
    reply = harness.client.post(url(letter) + "/discard", data={"csrf_token": harness.csrf(), "reason": " "})
    assert reply.status_code == 400 and "丢弃理由：必须填写。" in reply.text
    assert ("OperationsService.DiscardDeadLetter", "operator-zhao") not in harness.services.calls[before:]
    long = harness.client.post(url(letter) + "/discard", data={"csrf_token": harness.csrf(), "reason": "长" * 501})
    assert long.status_code == 400 and "丢弃理由：不能超过 500 个字符" in long.text
    done = harness.client.post(url(letter) + "/discard", data={"csrf_token": harness.csrf(), "reason": "测试数据"})
    assert done.status_code == 200 and "已丢弃" in done.text and "测试数据" in done.text


def test_a_forged_csrf_token_replays_nothing(tmp_path):
    harness = make_harness(tmp_path)
    letter = harness.services.add_dead_letter(application(harness.services.firm_a))
    harness.sign_in("OPERATOR")
    reply = harness.client.post(url(letter) + "/replay", data={"csrf_token": "forged"})
    assert reply.status_code == 403
    assert "待处理" in harness.client.get(url(letter)).text


@pytest.mark.parametrize(
    "path", ["/operations/dead-letters/not-a-topic/0/1", "/operations/dead-letters/subsidy.x.v1.dlq/a/1"]
)
def test_a_bad_letter_address_is_refused(tmp_path, path):
    harness = make_harness(tmp_path)
    harness.sign_in("OPERATOR")
    assert harness.client.get(path).status_code in (400, 404)


@pytest.mark.parametrize("role", ["ENTERPRISE", "PORTAL", "REVIEWER", "FINANCE"])
def test_only_operators(tmp_path, role):
    harness = make_harness(tmp_path)
    letter = harness.services.add_dead_letter(application(harness.services.firm_a))
    harness.sign_in(role)
    before = len(harness.services.calls)
    assert harness.client.get("/operations/dead-letters").status_code == 403
    assert harness.client.get(url(letter)).status_code == 403
    assert harness.client.post(url(letter) + "/replay", data={"csrf_token": harness.csrf()}).status_code == 403
    assert harness.services.calls[before:] == []
