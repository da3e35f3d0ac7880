"""ReviewService's edge in-process (no Kafka, SQLite, authentication off):
random requests to every RPC, as any role and subject, get a clear status —
never INTERNAL or UNKNOWN — and a refused step leaves the audit trail as it
was."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health, health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security.servers import Loop

from subsidy.core.workflow.settings import load_workflow
from subsidy.platform.clock import FixedClock
from subsidy.platform.db import Database
from subsidy.platform.security import GrpcSecurity, SecurityConfig
from subsidy.services.review.adapters.grpc import ReviewServicer, build_server
from subsidy.services.review.adapters.store import SqlStore
from subsidy.v1 import review_pb2, review_pb2_grpc

from . import test_handlers as h

SERVICE = review_pb2.DESCRIPTOR.services_by_name["ReviewService"]
CLEAR = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
}


async def serve(store, clock):
    """ReviewService on a free port, authentication off (the caller names itself)."""
    hs = health.aio.HealthServicer()
    await hs.set("", health_pb2.HealthCheckResponse.SERVING)
    server, port = build_server(
        ReviewServicer(store, load_workflow(), clock),
        hs,
        "127.0.0.1:0",
        security=GrpcSecurity(SecurityConfig.from_env("review", {})),
    )
    await server.start()
    return server, port


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    loop = Loop()
    store = SqlStore(Database(f"sqlite:///{tmp_path_factory.mktemp('edge') / 'review.db'}", store="review"))
    store.create_schema()
    item_id = h.queued(store)
    h.published(store)

    server, port = loop.run(serve(store, FixedClock(dt.date(2025, 1, 27))))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, store, item_id
    channel.close()
    loop.run(server.stop(0))
    loop.close()
    store.db.close()


def call(channel, method, request, metadata):
    out = GetMessageClass(method.output_type)
    rpc = channel.unary_unary(
        f"/{SERVICE.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=out.FromString,
    )
    try:
        rpc(request, metadata=metadata, timeout=20)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


texts = st.one_of(
    st.just(""),
    st.text(max_size=40),
    st.sampled_from(["APPROVED", "REJECTED", "MORE_INFO_REQUESTED", "UPHELD", "DISMISSED", "OPEN"]),
)
numbers = st.one_of(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.just(0))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(list(SERVICE.methods)),
    role=st.sampled_from(["REVIEWER", "OPERATOR", "PORTAL", "ENTERPRISE", "", "nonsense"]),
    subject=st.sampled_from(["alice", "bob", "", "x" * 300]),
    data=st.data(),
)
def test_random_requests_get_a_clear_status(edge, method, role, subject, data):
    channel, store, item_id = edge
    request = GetMessageClass(method.input_type)()
    for field in request.DESCRIPTOR.fields:
        if field.is_repeated or field.message_type is not None:
            continue
        if field.type == field.TYPE_STRING:
            value = data.draw(st.one_of(texts, st.just(item_id)))
        elif field.type == field.TYPE_BOOL:
            value = data.draw(st.booleans())
        else:
            value = data.draw(numbers)
        setattr(request, field.name, value)
    before = h.handlers.audit_trail(store, item_id, 200, "")[0]
    code = call(channel, method, request, (("x-subsidy-subject", subject), ("x-subsidy-role", role)))
    assert code in CLEAR, (method.name, request, code)
    if code != grpc.StatusCode.OK:
        assert h.handlers.audit_trail(store, item_id, 200, "")[0] == before


def test_publish_notice_says_which_precondition_failed(tmp_path):
    """A client waits out "nothing to notice yet" and stops at anything else: the
    two come with different google.rpc.PreconditionFailure types (the soak once
    waited 90 s on a calendar refusal that looked like an empty pool)."""
    from subsidy.platform.grpc import status as rich_status
    from subsidy.services.review import model

    loop = Loop()
    store = SqlStore(Database(f"sqlite:///{tmp_path / 'review.db'}", store="review"))
    store.create_schema()
    clock = FixedClock(dt.date(2026, 12, 1))
    server, port = loop.run(serve(store, clock))
    alice = (("x-subsidy-subject", "alice"), ("x-subsidy-role", "REVIEWER"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = review_pb2_grpc.ReviewServiceStub(channel)

            def refused() -> grpc.RpcError:
                with pytest.raises(grpc.RpcError) as raised:
                    stub.PublishNotice(review_pb2.PublishNoticeRequest(), metadata=alice, timeout=20)
                return raised.value

            empty = refused()
            assert empty.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert rich_status.precondition_types(empty.trailing_metadata()) == {model.NOTICE_POOL_EMPTY}

            assert h.grant(store, "APP-LATE", 100_000) == "recorded"
            clock.set(dt.date(2026, 12, 28))  # five working days later is in 2027, unknown to chinesecalendar 1.11
            uncounted = refused()
            assert uncounted.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "working days of 2027 are not known" in uncounted.details()
            assert rich_status.precondition_types(uncounted.trailing_metadata()) == {model.CALENDAR_NOT_COVERED}
            status = rich_status.from_error(uncounted)
            assert status is not None and "2027" in str(status.details[0].value)
            # Nothing was published by the refused call: the grant still awaits a notice.
            clock.set(dt.date(2026, 12, 1))
            notice = stub.PublishNotice(review_pb2.PublishNoticeRequest(), metadata=alice, timeout=20).notice
            assert [line.line.application_id for line in notice.lines] == ["APP-LATE"]
    finally:
        loop.run(server.stop(0))
        loop.close()
        store.db.close()
