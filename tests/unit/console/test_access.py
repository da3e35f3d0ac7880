"""The console's access matrix: every route of routes.yaml for every role.
A role the table does not admit gets 403 and no service is called; a role it
admits gets the page (or the form's redirect), with the services' real
access policy (access.yaml) behind the fake, so the table cannot promise a
page whose calls the services would refuse. An ENTERPRISE sees only its own
firm."""

from __future__ import annotations

import pytest

from subsidy.core.versions import load_versions
from subsidy.platform.security.policy import AccessPolicy
from subsidy.services.console.access import load_routes
from subsidy.services.console.model import ROLES
from tests.unit.console.fakes import FakeServices, make_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROUTES = load_routes()
CANDIDATE = load_versions().get("fictional-final-2023")
PRIVATE = [r for r in ROUTES.values() if not r.public]


def request_for(route, services: FakeServices, role: str) -> tuple[str, dict]:
    params = {
        "item_id": "rv-1",
        "notice_id": services.notice.notice_id,
        "application_id": "A-1",
        "credit_code": services.firm_a,
        "version_id": CANDIDATE.id,
    }
    if "{topic}" in route.path:
        topic, partition, offset = services.add_dead_letter(b"\x0a\x03A-1").rsplit("/", 2)
        params.update(topic=topic, partition=partition, offset=offset)
    path = route.path.format(**params)
    forms = {
        "review_decide": {"result": "APPROVED", "amount_yuan": "100000", "basis": "按第4项核定"},
        "notice_publish": {"title": ""},
        "objection_lodge": {"line_id": services.notice.lines[0].line.line_id, "reason": "金额有误"},
        "application_answer": {"request_number": "1", "answer": "已补充服务合同"},
        "tranche_cancel": {"tranche_id": "A-1/tranche-1", "reason": "企业迁出本区"},
        "recovery_open": {"application_id": "A-1", "amount_yuan": "10000", "reason": "发票不实"},
        "dead_letter_replay": {"reason": "规则已修正"},
        "dead_letter_discard": {"reason": "测试数据"},
        "policy_adopt": {"policy_version": CANDIDATE.policy.version, "reason": "区科委审定"},
        "objection_resolve": {
            "objection_id": services.notice.lines[0].line.line_id + "/objection-1",
            "resolution": "DISMISSED",
            "reasons": "经核实无误",
        },
    }
    if route.name == "applications":
        path += f"?credit_code={services.firm_a}"
    return path, forms.get(route.name, {})


def test_every_route_is_in_the_matrix_and_every_view_in_the_table(tmp_path):
    harness = make_harness(tmp_path)
    served = {r.name for r in harness.console.app().routes if getattr(r, "name", None) in ROUTES}
    assert served == set(ROUTES)


@pytest.mark.parametrize("route", PRIVATE, ids=lambda r: r.name)
def test_the_rpcs_of_a_route_admit_every_role_the_route_admits(route):
    policy = AccessPolicy.load()
    for role in route.roles:
        for rpc in route.rpcs_of(role):
            service, method = rpc.split(".")
            rule = policy.rule(f"subsidy.v1.{service}", method)
            assert rule is not None, rpc
            assert rule.allows_role(role), f"{route.name}: {rpc} refuses {role}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", PRIVATE, ids=lambda r: r.name)
def test_route_by_role(tmp_path, route, role):
    harness = make_harness(tmp_path)
    harness.sign_in(role)
    harness.services.applications["A-1"].state = 4  # under review: information may be answered
    path, form = request_for(route, harness.services, role)
    before = len(harness.services.calls)
    if route.method == "GET":
        reply = harness.client.get(path, follow_redirects=False)
    else:
        reply = harness.client.post(path, data={"csrf_token": harness.csrf(), **form}, follow_redirects=False)
    called = harness.services.calls[before:]
    if role in route.roles:
        assert reply.status_code in (200, 303), (reply.status_code, reply.text[:500])
        assert {rpc for rpc, _ in called if rpc != "Health.Check"} <= set(route.rpcs_of(role))
        if route.method == "POST" and route.rpcs:
            assert called, "an admitted form reaches its service"
    else:
        assert reply.status_code == 403, reply.text[:300]
        assert "无权访问此页面" in reply.text
        assert called == [], "a refused page calls no service"


def test_a_page_without_a_session_sends_to_sign_in(tmp_path):
    harness = make_harness(tmp_path)
    for route in PRIVATE:
        if route.method == "GET":
            path, _ = request_for(route, harness.services, "REVIEWER")
            reply = harness.client.get(path, follow_redirects=False)
            assert reply.status_code == 303 and reply.headers["location"].startswith("/signin"), route.name
    assert harness.services.calls == []


class TestEnterpriseSeesOnlyItsFirm:
    def test_its_own_firm(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("ENTERPRISE")
        own = harness.services.firm_a
        assert harness.client.get(f"/firms/{own}").status_code == 200
        assert harness.client.get("/applications/A-1").status_code == 200
        listed = harness.client.get("/applications")  # no code given: its own
        assert "A-1" in listed.text and "B-1" not in listed.text

    def test_another_firm_is_refused_before_any_call(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("ENTERPRISE")
        other = harness.services.firm_b
        before = len(harness.services.calls)
        assert harness.client.get(f"/firms/{other}").status_code == 403
        assert harness.client.get(f"/applications?credit_code={other}").status_code == 403
        assert harness.services.calls[before:] == []
        # An application of another firm is as if absent.
        reply = harness.client.get("/applications/B-1")
        assert reply.status_code == 404 and "乙公司" not in reply.text

    def test_an_objection_is_lodged_as_its_own_firm(self, tmp_path):
        harness = make_harness(tmp_path)
        harness.sign_in("ENTERPRISE")
        line = harness.services.notice.lines[0].line.line_id
        reply = harness.client.post(
            f"/notices/{harness.services.notice.notice_id}/objections",
            data={
                "csrf_token": harness.csrf(),
                "line_id": line,
                "reason": "异议",
                "credit_code": harness.services.firm_b,
            },
            follow_redirects=False,
        )
        assert reply.status_code == 303
        assert harness.services.lodged.credit_code == harness.services.firm_a
