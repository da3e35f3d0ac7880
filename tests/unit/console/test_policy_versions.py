"""The policy-versions page (政策版本, issue 14): the register's versions as
they are now (status, effective date, ``<id>+<digest>``, citations), which
one is adopted, the candidate in shadow (GetShadowDifference: money per
budget year, agreements by clause), and adoption by two reviewers: the
first proposes, a second, different one approves (the fake steps through
subsidy.core.adoption.step over the real register, as eligibility does);
the proposer approving their own proposal is refused in Chinese; bad forms
name the field and send nothing; roles the route table does not admit get
403 and call nothing. The gRPC adapter's side (the request on the wire, the
refusals' Chinese) is over a real gRPC server at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re

import grpc
import pytest

from subsidy.core.versions import load_versions
from subsidy.services.console import handlers
from subsidy.services.console.adapters import grpc as console_grpc
from subsidy.services.console.adapters.policy import PolicyVersions
from subsidy.services.console.model import Conflict, Forbidden, FormError, Person, Unavailable
from subsidy.v1 import policy_service_pb2
from tests.unit.console.fakes import make_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REGISTER = load_versions()
DRAFT = REGISTER.get("songjiang-ii-2022-draft")
FINAL = REGISTER.get("fictional-final-2023")


def section(page: str, element_id: str) -> str:
    found = re.search(rf'<(\w+)[^>]*id="{re.escape(element_id)}"[^>]*>.*?</\1>', page, re.S)
    assert found, f"no #{element_id} in the page"
    return found.group(0)


def cells(table: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", c.replace("<br>", "\n"))).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        ]
        for r in rows
    ]


def adopt(harness, version_id: str = FINAL.id, **form: str):
    data = {"csrf_token": harness.csrf(), "policy_version": FINAL.policy.version, "reason": "区科委审定虚构定稿"}
    data.update(form)
    return harness.client.post(f"/policy/versions/{version_id}/adopt", data=data, follow_redirects=False)


def adoption_calls(harness) -> list[tuple[str, str]]:
    return [c for c in harness.services.calls if c[0] == "PolicyService.AdoptVersion"]


# -- the page ---------------------------------------------------------------------------


def test_every_version_with_its_status_date_digest_and_citations(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("FINANCE")
    reply = harness.client.get("/policy/versions")
    assert reply.status_code == 200
    page = reply.text
    rows = {r[0].split()[0]: r for r in cells(section(page, "versions")) if r}
    assert set(rows) == set(REGISTER.ids())
    draft, final = rows[DRAFT.id], rows[FINAL.id]
    assert draft[1] == "已采纳（现行）" and draft[2] == "2022-01-01" and draft[3] == DRAFT.policy.version
    assert final[1] == "候选" and final[2] == "2023-07-01" and final[3] == FINAL.policy.version
    assert final[4] == DRAFT.id and "虚构版本，仅供演示" in final[0]
    for citation in (*DRAFT.citations, *FINAL.citations):
        assert html.escape(citation, quote=False) in page
    assert "第11.identifiers项停止执行" in final[5]
    assert DRAFT.policy.version in section(page, "adopted-versions")
    # No candidate in shadow on this instance: said, with the service's reason.
    assert "no shadow version is set" in section(page, "shadow-none")
    # FINANCE reads; only a REVIEWER adopts.
    assert "/adopt" not in page and "采纳候选版本 fictional-final-2023" in page


def test_the_candidate_in_shadow_money_per_budget_year_and_clauses(tmp_path):
    harness = make_harness(tmp_path)
    harness.services.shadow = policy_service_pb2.GetShadowDifferenceResponse(
        adopted_version=DRAFT.policy.version,
        shadow_version=FINAL.policy.version,
        since="2026-12-01T00:00:00Z",
        applications=7,
        years=[
            policy_service_pb2.BudgetYearDifference(
                year=2026, adopted_fen=5_000_000, shadow_fen=8_000_000, difference_fen=3_000_000
            ),
            policy_service_pb2.BudgetYearDifference(
                year=2027, adopted_fen=150_000_000, shadow_fen=100_000_050, difference_fen=-49_999_950
            ),
        ],
        clauses=[
            policy_service_pb2.ClauseAgreement(clause="10.cloud", agreements=2, differences=1),
            policy_service_pb2.ClauseAgreement(clause="6", agreements=0, differences=4),
        ],
        basis="each decision's ceiling",
    )
    harness.sign_in("OPERATOR")
    page = harness.client.get("/policy/versions").text
    assert cells(section(page, "shadow-years"))[1:] == [
        ["2026", "50,000元", "80,000元", "30,000元"],
        ["2027", "1,500,000元", "1,000,000.50元", "-499,999.50元"],
        ["合计", "1,550,000元", "1,080,000.50元", "-469,999.50元"],
    ]
    assert cells(section(page, "shadow-clauses"))[1:] == [["第10.cloud项", "2", "1"], ["第6项", "0", "4"]]
    assert "7 件申请" in section(page, "shadow-versions")
    final_row = section(page, f"version-{FINAL.id}")
    assert "影子评估中" in final_row and "影子评估中" not in section(page, f"version-{DRAFT.id}")
    assert 'id="shadow-other-files"' not in page
    # Shadow run on other files than the console lists: said so.
    harness.services.shadow.shadow_version = FINAL.id + "+00000000"
    assert 'id="shadow-other-files"' in harness.client.get("/policy/versions").text


@pytest.mark.parametrize("role", ["REVIEWER", "FINANCE", "OPERATOR", "PORTAL", "ENTERPRISE"])
def test_the_navigation_links_the_page_for_the_roles_that_may_open_it(tmp_path, role):
    harness = make_harness(tmp_path)
    harness.sign_in(role)
    nav = section(harness.client.get("/").text, "who")  # signed in: the header's navigation is there
    assert nav
    header = re.search(r"<nav>.*?</nav>", harness.client.get("/").text, re.S).group(0)
    linked = '<a href="/policy/versions">政策版本</a>' in header
    assert linked == (role in ("REVIEWER", "FINANCE", "OPERATOR"))
    before = len(harness.services.calls)
    reply = harness.client.get("/policy/versions")
    if linked:
        assert reply.status_code == 200
    else:
        assert reply.status_code == 403 and "无权访问此页面" in reply.text
        assert harness.services.calls[before:] == []


# -- adoption: four eyes ----------------------------------------------------------------


def test_one_reviewer_proposes_and_another_approves(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")  # 张敏, reviewer-zhang
    page = harness.client.get("/policy/versions").text
    form = section(page, f"adopt-{FINAL.id}")
    assert f'value="{FINAL.policy.version}"' in form and "readonly" in form  # the digest the reviewer sees
    assert f'action="/policy/versions/{FINAL.id}/adopt"' in form and 'name="csrf_token"' in form
    assert "提议采纳" in form and "批准采纳" not in form  # nothing is pending: this step proposes
    assert 'id="proposal-' not in page

    proposed = adopt(harness)
    assert proposed.status_code == 200
    assert proposed.headers["hx-push-url"] == "/policy/versions"
    assert "已提议采纳，待另一位审核人员批准" in section(proposed.text, "adoption-status")
    assert "reviewer-zhang（您），2026-12-01T10:01:00Z" in section(proposed.text, "proposed-by")
    assert "另一位审核人员" in section(proposed.text, "four-eyes")
    assert 'id="approved-by"' not in proposed.text and 'id="redecisions"' not in proposed.text
    status = cells(section(proposed.text, f"version-{FINAL.id}"))[0][1]
    assert status.startswith("候选") and "已提议采纳，待批准（reviewer-zhang，2026-12-01T10:01:00Z）" in status
    [sent] = harness.services.adopt_requests
    assert (sent.version_id, sent.policy_version, sent.reason) == (FINAL.id, FINAL.policy.version, "区科委审定虚构定稿")
    # eligibility finds the open applications and noticed awards itself: the console sends none
    assert len(sent.open_applications) == 0 and len(sent.noticed_awards) == 0

    # The proposer, on the page again (a reload, not the POST's answer): 待他人批准, no form to approve herself.
    again = harness.client.get("/policy/versions").text
    mine = section(again, f"adopt-{FINAL.id}")
    assert "adopt-form" not in mine and "待他人批准" in section(again, f"awaiting-{FINAL.id}")
    assert "reviewer-zhang（您）" in section(again, f"proposal-{FINAL.id}")

    # FINANCE reads the pending proposal too, and is offered nothing.
    harness.sign_in("FINANCE")
    read = harness.client.get("/policy/versions").text
    assert "reviewer-zhang" in section(read, f"proposal-{FINAL.id}") and "adopt-form" not in read

    # The second reviewer opens the page and sees what awaits them: who proposed which files, when, why.
    harness.sign_in("REVIEWER", subject="reviewer-li")  # 李强, a different subject
    before = len(adoption_calls(harness))
    page = harness.client.get("/policy/versions").text
    assert len(adoption_calls(harness)) == before  # reading sends no step
    proposal = html.unescape(re.sub(r"<[^>]+>", " ", section(page, f"proposal-{FINAL.id}")))
    for shown in (
        "等待另一位审核人员批准",
        "reviewer-zhang",
        "2026-12-01T10:01:00Z",
        FINAL.policy.version,
        "区科委审定虚构定稿",
    ):
        assert shown in proposal, shown
    form = section(page, f"adopt-{FINAL.id}")
    assert "批准采纳（reviewer-zhang 的提议）" in form and "批准理由" in form and 'id="awaiting-' not in page
    history = cells(section(page, "adoption-history"))[1:]
    assert [(r[1], r[2], r[3]) for r in history] == [(FINAL.id, "提议采纳", "reviewer-zhang")]

    approved = adopt(harness, reason="复核同意采纳")
    assert approved.status_code == 200, approved.text[:500]
    page = approved.text
    assert section(page, "adoption-status").count("已采纳") == 1
    assert "reviewer-zhang，2026-12-01T10:01:00Z" in section(page, "proposed-by")
    assert "reviewer-li（您），2026-12-01T10:02:00Z" in section(page, "approved-by")
    assert cells(section(page, "redecisions"))[1:] == [
        [
            "A-1",
            "第10.cloud项",
            "A-1@fictional-final-2023+7a319421",
            "符合",
            "62,000元",
            "A-1@2025.1",
            "否",
        ]
    ]
    assert 'href="/applications/A-1"' in section(page, "redecisions")
    assert cells(section(page, "adoption-report"))[1:] == [
        [
            "B-1",
            harness.services.firm_b,
            "第6项",
            "3,000,000元",
            "songjiang-ii-2022-draft+c9f1f78f",
            "符合",
            "2,000,000元",
            "-1,000,000元",
        ]
    ]
    entry = html.unescape(section(page, "register-entry"))
    assert f"  {FINAL.id}:" in entry and "status: adopted" in entry
    assert [s for _, s in adoption_calls(harness)] == ["reviewer-zhang", "reviewer-li"]
    assert set(harness.services.adoption_state.adopted) == {FINAL.id}

    # Any reviewer, on the page later: adopted (eligibility's trail), though the register records it only once
    # committed; who proposed and approved it, when; the draft ending on its effective date; nothing to send.
    harness.sign_in("REVIEWER")
    page = harness.client.get("/policy/versions").text
    rows = {r[0].split()[0]: r for r in cells(section(page, "versions")) if r}
    assert rows[FINAL.id][1].startswith("已采纳") and "登记表尚未记入" in rows[FINAL.id][1]
    assert "reviewer-li 于 2026-12-01T10:02:00Z 批准" in rows[FINAL.id][1]
    assert rows[DRAFT.id][2] == "2022-01-01 至 2023-07-01（不含）"
    assert rows[DRAFT.id][1] == "已采纳（现行）"
    assert "经两位审核人员采纳，登记表尚未记入" in section(page, "adopted-versions")
    adopted = html.unescape(re.sub(r"<[^>]+>", " ", section(page, f"adopted-{FINAL.id}")))
    for shown in ("reviewer-zhang（您）", "reviewer-li", "2026-12-01T10:02:00Z", "复核同意采纳", "2023-07-01"):
        assert shown in adopted, shown
    assert "该版本已采纳" in section(page, f"adopt-{FINAL.id}") and "adopt-form" not in page
    assert 'id="adoption-result"' not in page  # the answer of a step belongs to its POST only
    history = cells(section(page, "adoption-history"))[1:]
    assert [(r[2].split()[0], r[3]) for r in history] == [
        ("批准，已采纳", "reviewer-li"),
        ("提议采纳", "reviewer-zhang（您）"),
    ]
    assert "复核同意采纳" in history[0][5] and "自 2023-07-01 起生效" in history[0][2]


def test_the_proposer_approving_their_own_proposal_is_refused_in_chinese(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    assert adopt(harness).status_code == 200
    # The page offers her no form; sent all the same, eligibility refuses it (四眼原则).
    again = adopt(harness, reason="我再批准一次")
    assert again.status_code == 403
    error = html.unescape(section(again.text, "error"))
    assert "四眼原则" in error and "须由另一位审核人员（不同账号）批准" in error and "未被采纳" in error
    # The page again: still awaiting another reviewer, nothing adopted, the refusal in the trail.
    assert "待他人批准" in section(again.text, f"awaiting-{FINAL.id}")
    assert harness.services.adoption_state.adopted == {}
    assert 'id="adoption-result"' not in again.text
    [refused, proposed] = cells(section(again.text, "adoption-history"))[1:]
    assert (refused[2], refused[5]) == ("被拒绝", "我再批准一次")
    assert refused[6].startswith("四眼原则：four-eyes: 'reviewer-zhang' proposed the adoption")
    assert proposed[2] == "提议采纳"


def test_when_eligibility_cannot_say_the_register_and_the_step_just_taken_are_shown(tmp_path):
    """ListVersions refused or down: the register's statuses, said so; after a
    step, its answer laid over them (the proposer is still offered no form)."""
    harness = make_harness(tmp_path)
    harness.services.list_versions_error = Unavailable("政策版本采纳状态：服务暂时不可用，请稍后再试。")
    harness.sign_in("REVIEWER")
    page = harness.client.get("/policy/versions").text
    assert "服务暂时不可用" in section(page, "adoption-state-error") and "待批准的提议无法显示" in page
    assert "提交采纳（提议或批准）" in section(page, f"adopt-{FINAL.id}")  # which it is, eligibility decides
    assert 'id="adoption-history"' not in page
    proposed = adopt(harness).text
    assert "已提议采纳，待批准（reviewer-zhang" in cells(section(proposed, f"version-{FINAL.id}"))[0][1]
    assert "待他人批准" in section(proposed, f"awaiting-{FINAL.id}")
    harness.sign_in("REVIEWER", subject="reviewer-li")
    adopted = adopt(harness, reason="复核").text
    rows = {r[0].split()[0]: r for r in cells(section(adopted, "versions")) if r}
    assert rows[FINAL.id][1].startswith("已采纳") and "登记表尚未记入" in rows[FINAL.id][1]
    assert rows[DRAFT.id][2] == "2022-01-01 至 2023-07-01（不含）"
    assert "该版本已采纳" in section(adopted, f"adopt-{FINAL.id}")


def test_a_proposal_of_files_that_changed_since_lapses_and_a_new_step_proposes(tmp_path):
    harness = make_harness(tmp_path)
    stale = {
        "event": "proposed",
        "version_id": FINAL.id,
        "policy_version": f"{FINAL.id}+00000000",
        "subject": "reviewer-li",
        "at": "2026-11-30T09:00:00Z",
        "reason": "旧文件",
    }
    harness.services.adoption_events.append(stale)
    harness.services.adoption_state = harness.services.adoption_state.apply(stale)
    harness.sign_in("REVIEWER")
    page = harness.client.get("/policy/versions").text
    assert "已失效" in section(page, f"proposal-{FINAL.id}")
    assert "曾提议采纳，所审阅的文件已改变" in cells(section(page, f"version-{FINAL.id}"))[0][1]
    form = section(page, f"adopt-{FINAL.id}")
    assert "提议采纳" in form and "批准采纳" not in form
    assert "已提议采纳，待另一位审核人员批准" in section(adopt(harness).text, "adoption-status")


def test_versions_as_eligibility_reads_them_beside_the_consoles():
    """The handler's merge: eligibility's status and dates over the register
    the console reads, a digest that differs said so, and each reviewer's action."""
    listed = PolicyVersions().versions()
    zhang = Person(subject="reviewer-zhang", role="REVIEWER", name="张敏", token="t", expires_at=4102444800.0)
    li = dataclasses.replace(zhang, subject="reviewer-li")
    finance = dataclasses.replace(zhang, subject="finance-wang", role="FINANCE")
    pb = policy_service_pb2
    state = pb.ListVersionsResponse(
        versions=[
            pb.PolicyVersionState(
                version_id=DRAFT.id, status="adopted", register_status="adopted", policy_version=DRAFT.policy.version
            ),
            pb.PolicyVersionState(
                version_id=FINAL.id,
                status="candidate",
                register_status="candidate",
                policy_version=f"{FINAL.id}+0badf11e",
                proposal=pb.PendingProposal(
                    policy_version=FINAL.policy.version, proposed_by="reviewer-zhang", files_unchanged=True
                ),
            ),
        ]
    )
    views = {v.version_id: v for v in handlers.version_views(li, listed, state, None)}
    assert views[FINAL.id].eligibility_version == f"{FINAL.id}+0badf11e" and views[DRAFT.id].eligibility_version == ""
    assert views[FINAL.id].action == "approve" and views[DRAFT.id].action == ""
    assert {v.version_id: v.action for v in handlers.version_views(zhang, listed, state, None)}[
        FINAL.id
    ] == "await_other"
    assert {v.version_id: v.action for v in handlers.version_views(finance, listed, state, None)}[FINAL.id] == ""
    state.versions[1].status = "adopted"
    state.versions[1].ClearField("proposal")
    adopted = {v.version_id: v for v in handlers.version_views(li, listed, state, None)}[FINAL.id]
    assert (adopted.status, adopted.unregistered, adopted.action) == ("adopted", True, "adopted")


def test_a_version_whose_files_changed_since_review_is_refused(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    reply = adopt(harness, policy_version=f"{FINAL.id}+deadbeef")
    assert reply.status_code == 409
    assert "文件在您审阅之后已经改变" in html.unescape(section(reply.text, "error"))
    assert harness.services.adoption_state.proposals == {}


@pytest.mark.parametrize(
    ("version_id", "form", "named"),
    [
        (FINAL.id, {"reason": ""}, "采纳理由：必须填写"),
        (FINAL.id, {"reason": "理" * 1001}, "采纳理由：不能超过 1000 个字符"),
        (FINAL.id, {"policy_version": ""}, "政策版本标识：必须填写"),
        (FINAL.id, {"policy_version": DRAFT.policy.version}, "政策版本标识：须为本版本的标识"),
        (FINAL.id, {"policy_version": "<script>+1"}, "政策版本标识：须为本版本的标识"),
        (DRAFT.id, {"policy_version": DRAFT.policy.version}, "政策版本：只有候选版本可以采纳，该版本为“已采纳”"),
        ("no-such-version", {}, "政策版本：没有这个版本"),
    ],
)
def test_a_bad_form_names_the_field_and_sends_nothing(tmp_path, version_id, form, named):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    reply = adopt(harness, version_id, **form)
    assert reply.status_code == 400
    assert named in html.unescape(section(reply.text, "error"))
    assert "<script>+1" not in reply.text
    assert adoption_calls(harness) == [] and harness.services.adopt_requests == []


@pytest.mark.parametrize("role", ["FINANCE", "OPERATOR", "PORTAL", "ENTERPRISE"])
def test_only_a_reviewer_may_send_the_form(tmp_path, role):
    harness = make_harness(tmp_path)
    harness.sign_in(role)
    reply = adopt(harness)
    assert reply.status_code == 403 and "无权访问此页面" in reply.text
    assert adoption_calls(harness) == [] and harness.services.adopt_requests == []


def test_without_the_csrf_token_nothing_is_sent(tmp_path):
    harness = make_harness(tmp_path)
    harness.sign_in("REVIEWER")
    reply = harness.client.post(
        f"/policy/versions/{FINAL.id}/adopt",
        data={"policy_version": FINAL.policy.version, "reason": "x"},
        follow_redirects=False,
    )
    assert reply.status_code == 403 and "表单校验令牌" in reply.text
    assert harness.services.adopt_requests == []


def test_the_register_as_the_adapter_reads_it(tmp_path):
    listed = PolicyVersions().versions()
    assert [v.version_id for v in listed] == REGISTER.ids()
    final = next(v for v in listed if v.version_id == FINAL.id)
    assert (final.status, final.status_name, final.base, final.effective_from) == (
        "candidate",
        "候选",
        DRAFT.id,
        "2023-07-01",
    )
    assert final.policy_version == FINAL.policy.version and final.problem == ""
    assert final.citations == FINAL.citations and final.fictional


# -- the gRPC adapter against a real server ----------------------------------------------

PERSON = Person(subject="reviewer-li", role="REVIEWER", name="李强", token="tok-li", expires_at=4102444800.0)


async def _adopt_over_grpc(code: grpc.StatusCode | None, details: str = ""):
    """AdoptVersion on a real grpc.aio server that answers ``code`` with
    ``details`` (eligibility's words) or, with no code, "adopted"; the
    request and the metadata it received."""
    received: list = []

    async def adopt_version(request, context):
        received.append((request, dict(context.invocation_metadata())))
        if code is not None:
            await context.abort(code, details)
        return policy_service_pb2.AdoptVersionResponse(status="adopted", version_id=request.version_id)

    handler = grpc.method_handlers_generic_handler(
        "subsidy.v1.PolicyService",
        {
            "AdoptVersion": grpc.unary_unary_rpc_method_handler(
                adopt_version,
                request_deserializer=policy_service_pb2.AdoptVersionRequest.FromString,
                response_serializer=policy_service_pb2.AdoptVersionResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    services = console_grpc.GrpcServices("127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1", eligibility=address)
    request = handlers.adopt_request(
        FINAL.id, {"policy_version": FINAL.policy.version, "reason": "复核同意"}, PolicyVersions().versions()
    )
    try:
        try:
            return await services.adopt_version(PERSON, request), received
        except Exception as exc:  # noqa: BLE001 - the test looks at the refusal
            return exc, received
    finally:
        await services.close()
        await server.stop(None)


def test_the_request_on_the_wire_carries_the_token_and_no_open_applications():
    reply, received = asyncio.run(_adopt_over_grpc(None))
    assert reply.status == "adopted"
    [(request, metadata)] = received
    assert metadata["authorization"] == "Bearer tok-li"
    assert (request.version_id, request.policy_version, request.reason) == (
        FINAL.id,
        FINAL.policy.version,
        "复核同意",
    )
    assert list(request.open_applications) == [] and list(request.noticed_awards) == []


@pytest.mark.parametrize(
    ("code", "details", "error", "said"),
    [
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "four-eyes: 'reviewer-li' proposed the adoption of fictional-final-2023; "
            "the approval must come from another reviewer",
            Forbidden,
            "四眼原则——该版本的采纳是您本人提议的，须由另一位审核人员（不同账号）批准",
        ),
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "adopting a policy version is a REVIEWER's act, not FINANCE's",
            Forbidden,
            "采纳政策版本：服务拒绝了此操作",
        ),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "fictional-final-2023 was adopted at 2026-12-01T10:02:00Z (proposed by a, approved by b)",
            Conflict,
            "该版本已经采纳，不能再次采纳",
        ),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "policy_version: fictional-final-2023's files are x+1, not x+2: they changed since you reviewed them; "
            "review the version as it is now",
            Conflict,
            "文件在您审阅之后已经改变",
        ),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "policy/versions.yaml: versions.x.status: is adopted: only a candidate is adopted",
            Conflict,
            "只有候选版本可以采纳",
        ),
        (grpc.StatusCode.FAILED_PRECONDITION, "something new", Conflict, "当前状态下不能采纳（something new）"),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "the applications not yet past their public notice cannot be read from intake (ListApplications "
            "APPLICATION_STATE_RESERVED: PERMISSION_DENIED: x); nothing proposed or adopted, nothing recorded",
            Conflict,
            "未能从申请受理服务读取全部尚未过公示期的申请",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "the applications not yet past their public notice cannot be read from intake (ListApplications "
            "APPLICATION_STATE_RESERVED: UNAVAILABLE: x); nothing proposed or adopted, nothing recorded",
            Unavailable,
            "暂时无法从申请受理服务读取尚未过公示期的申请，未提议也未采纳，请稍后再试",
        ),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "policy_version: is required: the <id>+<digest> of the files you reviewed",
            FormError,
            "政策版本标识：服务不接受：is required",
        ),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "subject: adoption needs an identified reviewer (the token's subject)",
            FormError,
            "未能从登录令牌中识别出审核人员",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "fictional-final-2023 is adopted, but its 1 re-decision(s) could not be published on "
            "subsidy.decisions.v1 (KafkaError: x)",
            Unavailable,
            "该版本已经采纳，但重新决定暂未能发布到 subsidy.decisions.v1，账本暂按原决定；重新决定已随采纳记录保存，系统会自动重试发布",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "the adoption trail cannot be written (No space left on device); nothing adopted",
            Unavailable,
            "未采纳任何版本",
        ),
        (grpc.StatusCode.UNAVAILABLE, "connection refused", Unavailable, "采纳政策版本：服务暂时不可用"),
    ],
)
def test_eligibilitys_refusals_in_chinese(code, details, error, said):
    refused, received = asyncio.run(_adopt_over_grpc(code, details))
    assert len(received) == 1
    assert isinstance(refused, error), refused
    assert said in refused.message


async def _list_over_grpc(code: grpc.StatusCode | None, details: str = ""):
    """ListVersions on a real grpc.aio server answering ``code`` or a state;
    the answer (or the console's error) and the metadata received."""
    received: list = []

    async def list_versions(request, context):
        received.append(dict(context.invocation_metadata()))
        if code is not None:
            await context.abort(code, details)
        return policy_service_pb2.ListVersionsResponse(
            versions=[policy_service_pb2.PolicyVersionState(version_id=FINAL.id, status="adopted")],
            read_at="2026-12-01T10:30:00Z",
        )

    handler = grpc.method_handlers_generic_handler(
        "subsidy.v1.PolicyService",
        {
            "ListVersions": grpc.unary_unary_rpc_method_handler(
                list_versions,
                request_deserializer=policy_service_pb2.ListVersionsRequest.FromString,
                response_serializer=policy_service_pb2.ListVersionsResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    services = console_grpc.GrpcServices("127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1", eligibility=f"127.0.0.1:{port}")
    try:
        try:
            return await services.list_versions(PERSON), received
        except Exception as exc:  # noqa: BLE001 - the test looks at the refusal
            return exc, received
    finally:
        await services.close()
        await server.stop(None)


def test_list_versions_on_the_wire_as_the_person_and_its_refusals_in_chinese():
    reply, [metadata] = asyncio.run(_list_over_grpc(None))
    assert metadata["authorization"] == "Bearer tok-li"
    assert [(v.version_id, v.status) for v in reply.versions] == [(FINAL.id, "adopted")]
    down, _ = asyncio.run(_list_over_grpc(grpc.StatusCode.UNAVAILABLE, "the adoption trail cannot be read"))
    assert isinstance(down, Unavailable) and down.message.startswith("政策版本采纳状态：服务暂时不可用")
    refused, _ = asyncio.run(_list_over_grpc(grpc.StatusCode.PERMISSION_DENIED, "role PORTAL may not call this"))
    assert isinstance(refused, Forbidden) and "政策版本采纳状态：服务拒绝了此操作" in refused.message


def test_every_event_the_adoption_trail_records_has_a_chinese_label():
    from subsidy.core import adoption
    from subsidy.services.console import model

    kinds = {adoption.PROPOSED, adoption.ADOPTED, adoption.REFUSED, adoption.REDECISIONS_PUBLISHED}
    assert kinds <= set(model.ADOPTION_EVENT)
