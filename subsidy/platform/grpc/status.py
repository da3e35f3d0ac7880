"""gRPC rich error status: a google.rpc.Status carrying a google.rpc.BadRequest
(field-level errors) or a google.rpc.PreconditionFailure (which precondition
failed, by a type a client can branch on) in the ``grpc-status-details-bin``
trailer, the way every gRPC client library reads them (grpcio-status'
``rpc_status``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DETAILS_KEY = "grpc-status-details-bin"


def bad_request_details(code: int, message: str, violations: Iterable[tuple[str, str]]) -> bytes:
    """Serialized google.rpc.Status carrying one google.rpc.BadRequest."""
    detail = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(code=code, message=message, details=[packed]).SerializeToString()


def precondition_failure_details(code: int, message: str, violations: Iterable[tuple[str, str, str]]) -> bytes:
    """Serialized google.rpc.Status carrying one google.rpc.PreconditionFailure;
    each violation is (type, subject, description)."""
    detail = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(type=t, subject=s, description=d) for t, s, d in violations
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(code=code, message=message, details=[packed]).SerializeToString()


def precondition_types(trailing_metadata: Any) -> set[str]:
    """Client side: the PreconditionFailure violation types in an RpcError's trailers."""
    raw = dict(trailing_metadata or ()).get(DETAILS_KEY)
    if raw is None:
        return set()
    out: set[str] = set()
    for detail in status_pb2.Status.FromString(raw).details:
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            out |= {v.type for v in failure.violations}
    return out


def field_violations(trailing_metadata: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Client side: (Status, [(field, description)]) from an RpcError's trailers."""
    raw = dict(trailing_metadata or ()).get(DETAILS_KEY)
    if raw is None:
        return None, []
    status = status_pb2.Status.FromString(raw)
    out: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            out += [(v.field, v.description) for v in bad_request.field_violations]
    return status, out


def from_error(error: Any) -> Any:
    """The google.rpc.Status of a grpc.RpcError, or None."""
    return rpc_status.from_call(error)
