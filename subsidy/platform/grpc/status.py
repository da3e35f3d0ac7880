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


def _status(code: int, message: str, detail: Any) -> bytes:
    """Serialized google.rpc.Status carrying ``detail`` (one google.rpc error detail)."""
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(code=code, message=message, details=[packed]).SerializeToString()


def _details(trailing_metadata: Any, kind: Any) -> tuple[Any, list[Any]]:
    """Client side: (Status, its details of message type ``kind``) from an RpcError's trailers."""
    raw = dict(trailing_metadata or ()).get(DETAILS_KEY)
    if raw is None:
        return None, []
    status = status_pb2.Status.FromString(raw)
    found = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            unpacked = kind()
            detail.Unpack(unpacked)
            found.append(unpacked)
    return status, found


def bad_request_details(code: int, message: str, violations: Iterable[tuple[str, str]]) -> bytes:
    """Serialized google.rpc.Status carrying one google.rpc.BadRequest."""
    return _status(
        code,
        message,
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations
            ]
        ),
    )


def precondition_failure_details(code: int, message: str, violations: Iterable[tuple[str, str, str]]) -> bytes:
    """Serialized google.rpc.Status carrying one google.rpc.PreconditionFailure;
    each violation is (type, subject, description)."""
    return _status(
        code,
        message,
        error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(type=t, subject=s, description=d)
                for t, s, d in violations
            ]
        ),
    )


def precondition_types(trailing_metadata: Any) -> set[str]:
    """Client side: the PreconditionFailure violation types in an RpcError's trailers."""
    _, failures = _details(trailing_metadata, error_details_pb2.PreconditionFailure)
    return {v.type for failure in failures for v in failure.violations}


def field_violations(trailing_metadata: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Client side: (Status, [(field, description)]) from an RpcError's trailers."""
    status, bad_requests = _details(trailing_metadata, error_details_pb2.BadRequest)
    return status, [(v.field, v.description) for b in bad_requests for v in b.field_violations]


def from_error(error: Any) -> Any:
    """The google.rpc.Status of a grpc.RpcError, or None."""
    return rpc_status.from_call(error)
