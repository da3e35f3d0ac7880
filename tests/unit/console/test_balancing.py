"""The console's channels balance per call (issue 16, item 6): on two real
gRPC servers standing for two intake pods (two loopback addresses, one
port; the target names both as a headless Service's DNS name would), the
console's ListApplications calls land on both with round_robin, its default,
and on one with pick_first. Also: the target the console dials for a
headless Service name, and the setting's refusals."""

from __future__ import annotations

import asyncio
import collections
import socket

import grpc
import pytest

from subsidy.services.console.adapters import grpc as console_grpc
from subsidy.services.console.config import Settings, SettingsError
from subsidy.services.console.model import Person
from subsidy.v1 import intake_pb2

PERSON = Person(subject="op-1", role="OPERATOR", name="运维", token="t", expires_at=4102444800.0)


async def pod(host: str, port: int, name: str) -> grpc.aio.Server:
    """An "intake pod": ListApplications answers with its own name."""

    async def list_applications(request, context):
        assert ("authorization", "Bearer t") in tuple(context.invocation_metadata())
        return intake_pb2.ListApplicationsResponse(next_page_token=name)

    handler = grpc.method_handlers_generic_handler(
        "subsidy.v1.IntakeService",
        {
            "ListApplications": grpc.unary_unary_rpc_method_handler(
                list_applications,
                request_deserializer=intake_pb2.ListApplicationsRequest.FromString,
                response_serializer=intake_pb2.ListApplicationsResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(handlers=[handler])
    assert server.add_insecure_port(f"{host}:{port}") == port
    await server.start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def who_answers(load_balancing: str | None, calls: int = 20) -> collections.Counter:
    port = free_port()
    servers = [await pod("127.0.0.1", port, "pod-a"), await pod("127.0.0.2", port, "pod-b")]
    target = f"ipv4:127.0.0.1:{port},127.0.0.2:{port}"
    options = {} if load_balancing is None else {"load_balancing": load_balancing}
    services = console_grpc.GrpcServices(target, "127.0.0.1:1", "127.0.0.1:1", **options)
    try:
        counts: collections.Counter = collections.Counter()
        for _ in range(calls):
            reply = await services.list_applications(PERSON, "", "")
            counts[reply.next_page_token] += 1
        return counts
    finally:
        await services.close()
        for server in servers:
            await server.stop(None)


def test_by_default_the_calls_go_round_robin_over_every_pod():
    counts = asyncio.run(who_answers(None))
    # The second subchannel may still be connecting for the first call or two.
    assert set(counts) == {"pod-a", "pod-b"} and min(counts.values()) >= 8, counts


def test_pick_first_keeps_every_call_on_one_pod():
    counts = asyncio.run(who_answers(console_grpc.PICK_FIRST))
    assert len(counts) == 1 and sum(counts.values()) == 20, counts


def test_a_headless_service_name_is_dialled_as_a_dns_target(monkeypatch):
    dialled = []
    real = grpc.aio.insecure_channel

    def recording(target, options=None, **kwargs):  # the real channel, its arguments noted
        dialled.append((target, dict(options or [])))
        return real(target, options=options, **kwargs)

    monkeypatch.setattr(grpc.aio, "insecure_channel", recording)

    async def dial() -> None:
        services = console_grpc.GrpcServices("subsidy-intake-headless:50051", "subsidy-review:50055", "p:1")
        services._channel(services.addresses["intake"])
        services._channel(services.addresses["review"])
        await services.close()

    asyncio.run(dial())
    assert [t for t, _ in dialled] == ["dns:///subsidy-intake-headless:50051", "dns:///subsidy-review:50055"]
    for _, options in dialled:
        assert '"round_robin"' in options["grpc.service_config"]


def test_an_unknown_policy_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="load_balancing"):
        console_grpc.GrpcServices("a:1", "b:1", "c:1", load_balancing="random")
    env = {
        "SUBSIDY_CONSOLE_SESSION_SECRET": "s" * 40,
        "SUBSIDY_CONSOLE_AUTH_JWKS_FILE": "/x/jwks.json",
        "SUBSIDY_CONSOLE_AUTH_AUDIENCE": "a",
        "SUBSIDY_CONSOLE_AUTH_ISSUER": "https://id",
        "SUBSIDY_CONSOLE_OIDC_ISSUER": "https://id",
        "SUBSIDY_CONSOLE_OIDC_CLIENT_ID": "c",
        "SUBSIDY_CONSOLE_OIDC_CLIENT_SECRET": "s",
    }
    assert Settings.from_env(env).grpc_balancing == "round_robin"
    assert Settings.from_env({**env, "SUBSIDY_CONSOLE_GRPC_BALANCING": "pick_first"}).grpc_balancing == "pick_first"
    with pytest.raises(SettingsError, match="SUBSIDY_CONSOLE_GRPC_BALANCING"):
        Settings.from_env({**env, "SUBSIDY_CONSOLE_GRPC_BALANCING": "random"})
