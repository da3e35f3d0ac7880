"""PolicyService over a real grpc.aio server on 127.0.0.1 (the GrpcServer
mode.Service the worker runs), with health checking and reflection."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from eligibility_support import POLICY, demo_applications
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from subsidy.contracts import codec
from subsidy.core import domain
from subsidy.core import eligibility as rules
from subsidy.services.eligibility.adapters.grpc import SERVICE_NAME, GrpcServer, list_clauses_response
from subsidy.v1 import policy_service_pb2, policy_service_pb2_grpc

DEMO = demo_applications()
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def with_server(scenario, ready=lambda: True):
    """Run ``scenario(stub, channel, server)`` against a started GrpcServer."""

    async def main():
        server = GrpcServer("127.0.0.1:0", POLICY, ready=ready, grace_seconds=1.0, poll_seconds=0.05)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                return await scenario(policy_service_pb2_grpc.PolicyServiceStub(channel), channel, server)
        finally:
            await server.stop()

    return asyncio.run(main())


def test_evaluate_returns_the_decision_the_rules_give():
    app = DEMO[4]

    async def scenario(stub, channel, server):
        request = policy_service_pb2.EvaluateRequest(application=codec.application_to_proto(app))
        return await stub.Evaluate(request, timeout=5)

    response = with_server(scenario)
    assert response.decision == codec.decision_to_proto(rules.evaluate(app, POLICY))


def test_evaluate_uses_the_parameters_in_force_on_the_evaluation_date():
    app = DEMO[0]

    async def scenario(stub, channel, server):
        request = policy_service_pb2.EvaluateRequest(
            application=codec.application_to_proto(app), evaluation_date="2021-06-01"
        )
        return await stub.Evaluate(request, timeout=5)

    decision = with_server(scenario).decision
    assert decision.outcome == "INELIGIBLE"
    assert [r.code for r in decision.reasons] == ["POLICY_NOT_IN_FORCE"]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda m: setattr(m.firm, "credit_code", "913101170BCJ72CC84"),
            "firm.credit_code: not a valid unified social credit code",
        ),
        (lambda m: setattr(m, "submitted_on", "2023-02-30"), "submitted_on: is not a real date: 2023-02-30"),
        (lambda m: m.ClearField("firm"), "firm: is required"),
    ],
)
def test_evaluate_refuses_a_bad_application_with_invalid_argument_naming_the_field(change, message):
    proto = codec.application_to_proto(DEMO[0])
    change(proto)

    async def scenario(stub, channel, server):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Evaluate(policy_service_pb2.EvaluateRequest(application=proto), timeout=5)
        return caught.value

    error = with_server(scenario)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(message)


def test_evaluate_refuses_a_missing_application_and_a_bad_evaluation_date():
    async def scenario(stub, channel, server):
        errors = []
        for request in (
            policy_service_pb2.EvaluateRequest(),
            policy_service_pb2.EvaluateRequest(
                application=codec.application_to_proto(DEMO[0]), evaluation_date="01/02/2023"
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Evaluate(request, timeout=5)
            errors.append((caught.value.code(), caught.value.details()))
        return errors

    (c1, d1), (c2, d2) = with_server(scenario)
    assert c1 == c2 == grpc.StatusCode.INVALID_ARGUMENT
    assert d1 == "application: is required"
    assert d2.startswith("evaluation_date: must be a date written YYYY-MM-DD")


def test_list_clauses_names_every_clause_with_its_dated_parameters_and_citations():
    async def scenario(stub, channel, server):
        return await stub.ListClauses(policy_service_pb2.ListClausesRequest(), timeout=5)

    response = with_server(scenario)
    assert response.policy_name == POLICY.name
    assert response.policy_version == POLICY.version
    assert response.effective_from == POLICY.effective_from.isoformat()
    assert [c.clause for c in response.clauses] == list(domain.CLAUSES)
    rent = next(c for c in response.clauses if c.clause == "1.rent")
    cp = POLICY.clauses["1.rent"]
    assert rent.claim == "rent" and rent.limit == cp.ledger.limit and list(rent.scope_by) == list(cp.ledger.scope_by)
    cap = next(p for p in rent.parameters if p.name == "cap_fen")
    assert [json.loads(v.value_json) for v in cap.values] == [v.value for v in cp.parameters["cap_fen"].values]
    assert all(v.cites and v.applies_from for p in rent.parameters for v in p.values)
    # Every value is JSON text, including sets of kinds and tables.
    for clause in response.clauses:
        for parameter in clause.parameters:
            for value in parameter.values:
                json.loads(value.value_json)
    assert response == list_clauses_response(POLICY)


def test_health_is_serving_only_while_ready_and_not_serving_once_shutting_down():
    state = {"ready": False}

    async def scenario(stub, channel, server):
        health = health_pb2_grpc.HealthStub(channel)

        async def status(service=""):
            return (await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)).status

        seen = [await status(), await status(SERVICE_NAME)]
        state["ready"] = True
        await asyncio.sleep(0.3)
        seen += [await status(), await status(SERVICE_NAME)]
        await server.enter_shutdown()
        seen += [await status()]
        return seen

    assert with_server(scenario, ready=lambda: state["ready"]) == [
        NOT_SERVING,
        NOT_SERVING,
        SERVING,
        SERVING,
        NOT_SERVING,
    ]


def test_reflection_lists_the_policy_service_and_health():
    async def scenario(stub, channel, server):
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for response in reflect.ServerReflectionInfo(requests(), timeout=5):
            return {s.name for s in response.list_services_response.service}

    names = with_server(scenario)
    assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_the_server_is_the_shared_builders_with_its_interceptors_once_per_method(monkeypatch):
    from subsidy.platform.grpc import server as grpc_server
    from subsidy.platform.metrics import GRPC_HANDLED

    built = []
    build = grpc_server.build_server

    def recording_build(*args, **kwargs):
        built.append((args, kwargs))
        return build(*args, **kwargs)

    monkeypatch.setattr(grpc_server, "build_server", recording_build)

    async def scenario(stub, channel, server):
        first = await stub.ListClauses(policy_service_pb2.ListClausesRequest(), timeout=5)
        second = await stub.ListClauses(policy_service_pb2.ListClausesRequest(), timeout=5)
        garbage = channel.unary_unary(
            f"/{SERVICE_NAME}/Evaluate", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        try:
            await garbage(b"\xff\xff\xff", timeout=5)
            refused = None
        except grpc.aio.AioRpcError as exc:
            refused = exc.code()
        return first, second, refused

    counted = GRPC_HANDLED.labels(SERVICE_NAME, "ListClauses", "OK")
    before = counted._value.get()
    first, second, refused = with_server(scenario)
    assert first == second == list_clauses_response(POLICY)
    assert len(built) == 1 and built[0][0][0] == "eligibility"
    assert counted._value.get() == before + 2, "GrpcMetricsInterceptor counted every call"
    assert refused == grpc.StatusCode.INVALID_ARGUMENT, "MalformedRequests refused the undecodable request"
