"""Secure by default (issue 16): a gRPC server that listens beyond loopback
refuses to start without TLS or with authentication off unless
SUBSIDY_DEV_MODE=1; the plaintext health-only port kubelet probes use while
TLS is on, and its liveness name, which does not follow Kafka or the database
(subsidy/platform/security/config.py, subsidy/platform/grpc/server.py)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from subsidy.platform.grpc import server as grpc_server
from subsidy.platform.security import GrpcSecurity
from subsidy.platform.security.config import (
    SecurityConfig,
    SecurityConfigError,
    check_exposure,
    is_loopback_address,
)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.0.0.2:0", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("unix:/tmp/s.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.1.2.3:50051", False),
        ("intake.subsidy.svc:50051", False),
    ],
)
def test_loopback_addresses(address, loopback):
    assert is_loopback_address(address) is loopback


def test_beyond_loopback_needs_tls_and_authentication():
    with pytest.raises(SecurityConfigError, match=r"without TLS .* and authentication"):
        check_exposure(SecurityConfig(service="intake"), "0.0.0.0:50051")
    with pytest.raises(SecurityConfigError, match="without authentication"):
        check_exposure(SecurityConfig(tls_cert_file="c", tls_key_file="k"), "0.0.0.0:50051")
    with pytest.raises(SecurityConfigError, match="without TLS"):
        check_exposure(SecurityConfig(auth_mode="jwt"), "[::]:50051")
    check_exposure(SecurityConfig(tls_cert_file="c", tls_key_file="k", auth_mode="jwt"), "0.0.0.0:50051")
    check_exposure(SecurityConfig(), "127.0.0.1:0")  # make run and the tests


def test_the_dev_flag_is_explicit_and_global():
    assert SecurityConfig.from_env("intake", {"SUBSIDY_DEV_MODE": "1"}).dev_mode
    for value in ("", "0", "true", "yes"):
        assert not SecurityConfig.from_env("intake", {"SUBSIDY_DEV_MODE": value}).dev_mode
    check_exposure(SecurityConfig.from_env("intake", {"SUBSIDY_DEV_MODE": "1"}), "0.0.0.0:50051")
    # Not per service: SUBSIDY_INTAKE_DEV_MODE is no flag at all.
    assert not SecurityConfig.from_env("intake", {"SUBSIDY_INTAKE_DEV_MODE": "1"}).dev_mode


def test_build_server_refuses_an_open_address_with_authentication_off():
    security = GrpcSecurity.from_env("payout", {})
    with pytest.raises(SecurityConfigError, match="refusing to listen on 0.0.0.0:0"):
        grpc_server.build_server(
            "payout",
            "0.0.0.0:0",
            health.aio.HealthServicer(),
            max_receive_bytes=1024,
            max_send_bytes=1024,
            security=security,
        )


def test_the_health_address_is_per_service_or_shared():
    env = {"SUBSIDY_HEALTH_ADDRESS": "0.0.0.0:8081", "SUBSIDY_NOTIFY_HEALTH_ADDRESS": "0.0.0.0:8082"}
    assert SecurityConfig.from_env("intake", env).health_address == "0.0.0.0:8081"
    assert SecurityConfig.from_env("notify", env).health_address == "0.0.0.0:8082"
    assert SecurityConfig.from_env("intake", {}).health_address == ""


async def _check(port: int, name: str) -> tuple[str, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return ("error", exc.code().name)
        return ("status", health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def test_health_port_liveness_and_readiness():
    async def scenario() -> None:
        servicer = health.aio.HealthServicer()
        await servicer.set("", grpc_server.NOT_SERVING)
        await servicer.set("subsidy.v1.PayoutService", grpc_server.NOT_SERVING)
        security = GrpcSecurity.from_env("payout", {"SUBSIDY_HEALTH_ADDRESS": "127.0.0.1:0"})
        servers, main_port = grpc_server.build_server(
            "payout", "127.0.0.1:0", servicer, max_receive_bytes=1024, max_send_bytes=1024, security=security
        )
        assert isinstance(servers, grpc_server.Servers)
        probe = servers.probe_port
        assert probe and probe != main_port
        await servers.start()
        try:
            # Kafka or the database down: not ready, but alive (no restart).
            assert await _check(probe, "subsidy.v1.PayoutService") == ("status", "NOT_SERVING")
            assert await _check(probe, grpc_server.LIVENESS) == ("status", "SERVING")
            assert await _check(probe, "no.such.Service") == ("error", "NOT_FOUND")
            await servicer.set("subsidy.v1.PayoutService", grpc_server.SERVING)
            assert await _check(probe, "subsidy.v1.PayoutService") == ("status", "SERVING")
            # The same answers as the main port, which has no liveness name of its own.
            assert await _check(main_port, "subsidy.v1.PayoutService") == ("status", "SERVING")
            assert await _check(main_port, grpc_server.LIVENESS) == ("error", "NOT_FOUND")
            # The probe port serves health and nothing else (no reflection, no service).
            async with grpc.aio.insecure_channel(f"127.0.0.1:{probe}") as channel:
                call = channel.unary_unary("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(b"", timeout=5)
                assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await servers.stop(None)
        assert await _check(probe, grpc_server.LIVENESS) == ("error", "UNAVAILABLE")

    asyncio.run(scenario())


def test_without_a_health_address_the_server_is_the_plain_one():
    async def scenario() -> object:
        server, _ = grpc_server.build_server(
            "payout",
            "127.0.0.1:0",
            health.aio.HealthServicer(),
            max_receive_bytes=1024,
            max_send_bytes=1024,
            security=GrpcSecurity.from_env("payout", {}),
        )
        await server.stop(None)
        return server

    assert isinstance(asyncio.run(scenario()), grpc.aio.Server)
