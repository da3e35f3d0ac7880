"""Client-side round robin (subsidy/platform/grpc/balancing.py), on real
gRPC servers: two "pods" on two loopback addresses with the same port, a
client whose target resolves to both. With balancing.channel_options() the
calls are spread over both; with gRPC's default (pick_first), which is what
a plain channel to a ClusterIP Service amounts to, every call lands on one."""

from __future__ import annotations

import collections
import socket
from concurrent import futures

import grpc
import pytest

from subsidy.platform.grpc import balancing


def serve(host: str, port: int, name: bytes) -> grpc.Server:
    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Am": grpc.unary_unary_rpc_method_handler(lambda request, context: name)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    assert server.add_insecure_port(f"{host}:{port}") == port
    server.start()
    return server


@pytest.fixture
def two_pods():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = [serve("127.0.0.1", port, b"pod-a"), serve("127.0.0.2", port, b"pod-b")]
    yield f"ipv4:127.0.0.1:{port},127.0.0.2:{port}"
    for server in servers:
        server.stop(0)


def answers(target: str, options: list, calls: int = 20) -> collections.Counter:
    with grpc.insecure_channel(target, options=options) as channel:
        who = channel.unary_unary("/test.Who/Am")
        grpc.channel_ready_future(channel).result(timeout=10)
        return collections.Counter(who(b"", timeout=5) for _ in range(calls))


def test_round_robin_spreads_the_calls_over_every_address(two_pods):
    # The second subchannel may still be connecting for the first call or two.
    counts = answers(two_pods, balancing.channel_options())
    assert set(counts) == {b"pod-a", b"pod-b"} and min(counts.values()) >= 8, counts


def test_the_default_policy_sends_every_call_to_one_pod(two_pods):
    counts = answers(two_pods, [])
    assert len(counts) == 1 and sum(counts.values()) == 20


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("subsidy-intake-headless:50051", "dns:///subsidy-intake-headless:50051"),
        ("dns:///subsidy-intake-headless:50051", "dns:///subsidy-intake-headless:50051"),
        ("ipv4:10.0.0.1:50051,10.0.0.2:50051", "ipv4:10.0.0.1:50051,10.0.0.2:50051"),
        ("127.0.0.1:50051", "dns:///127.0.0.1:50051"),
    ],
)
def test_balanced_target(address, target):
    assert balancing.balanced_target(address) == target


def test_an_empty_address_is_refused():
    with pytest.raises(ValueError, match="address: empty"):
        balancing.balanced_target("")
