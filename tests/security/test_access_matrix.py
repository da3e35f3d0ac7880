"""Role x method: every RPC of every served gRPC service (from the proto
descriptors, health and reflection included) against the access policy
(subsidy/platform/security/access.yaml), on the real servers with JWT authentication.
A new RPC without a policy entry fails ``test_every_rpc_has_a_rule``."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from security.conftest import ENTERPRISE_CODE
from subsidy.platform.security.policy import ROLES, AccessPolicy
from subsidy.v1 import intake_pb2, operations_pb2, payout_pb2, policy_service_pb2, proposal_pb2, review_pb2

POLICY = AccessPolicy.load()

SERVERS = {
    "intake": [
        intake_pb2.DESCRIPTOR.services_by_name["IntakeService"],
        proposal_pb2.DESCRIPTOR.services_by_name["ProposalService"],
    ],
    "eligibility": [policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"]],
    "payout": [payout_pb2.DESCRIPTOR.services_by_name["PayoutService"]],
    "review": [review_pb2.DESCRIPTOR.services_by_name["ReviewService"]],
    "operations": [operations_pb2.DESCRIPTOR.services_by_name["OperationsService"]],
}
COMMON = [
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
]

METHODS = [
    (server, method)
    for server, services in SERVERS.items()
    for service in services + COMMON
    for method in service.methods
]
CALLERS = list(ROLES) + [None]  # None: no credentials


def _id(value):
    if isinstance(value, tuple):
        return f"{value[0]}:{value[1].full_name}"
    return value or "anonymous"


def _request(method, role):
    cls = GetMessageClass(method.input_type)
    request = cls()
    rule = POLICY.rule(method.containing_service.full_name, method.name)
    if role == "ENTERPRISE" and rule is not None and rule.enterprise_field:
        *path, last = rule.enterprise_field.split(".")
        target = request
        for part in path:
            target = getattr(target, part)
        setattr(target, last, ENTERPRISE_CODE)
    if method.full_name == "grpc.health.v1.Health.Watch":
        request.service = ""
    if method.containing_service.full_name.startswith("grpc.reflection"):
        request.list_services = ""
    return request


def _invoke(channel, method, request, metadata):
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_cls = GetMessageClass(method.output_type)
    kwargs = dict(request_serializer=lambda m: m.SerializeToString(), response_deserializer=response_cls.FromString)
    if not method.client_streaming and not method.server_streaming:
        channel.unary_unary(path, **kwargs)(request, metadata=metadata, timeout=10)
    elif not method.client_streaming:
        stream = channel.unary_stream(path, **kwargs)(request, metadata=metadata, timeout=10)
        next(iter(stream))
        stream.cancel()
    else:
        stream = channel.stream_stream(path, **kwargs)(iter([request]), metadata=metadata, timeout=10)
        next(iter(stream))
        stream.cancel()


def test_every_rpc_has_a_rule():
    missing = [
        f"{m.containing_service.full_name}/{m.name}"
        for _, m in METHODS
        if POLICY.rule(m.containing_service.full_name, m.name) is None
    ]
    assert not missing, f"no access rule in {POLICY.source} for {missing}"


def test_the_policy_names_only_rpcs_that_exist():
    known = {(m.containing_service.full_name, m.name) for _, m in METHODS}
    services = {s for s, _ in known} | {"grpc.reflection.v1.ServerReflection"}
    for service, methods in POLICY.rules.items():
        assert service in services, service
        for method in methods:
            assert method == "*" or (service, method) in known, f"{service}/{method}"


@pytest.mark.parametrize("caller", CALLERS, ids=_id)
@pytest.mark.parametrize("server_method", METHODS, ids=_id)
def test_role_method_matrix(jwt_servers, signers, server_method, caller):
    server, method = server_method
    rule = POLICY.rule(method.containing_service.full_name, method.name)
    assert rule is not None
    metadata = ()
    if caller is not None:
        token = signers["rsa"].token(caller, ENTERPRISE_CODE if caller == "ENTERPRISE" else "")
        metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(jwt_servers.address(server)) as channel:
        try:
            _invoke(channel, method, _request(method, caller), metadata)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
    if rule.public:
        expected_allowed = True
    elif caller is None:
        assert code == grpc.StatusCode.UNAUTHENTICATED
        return
    else:
        expected_allowed = rule.allows_role(caller)
    if expected_allowed:
        assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), code
    else:
        assert code == grpc.StatusCode.PERMISSION_DENIED
