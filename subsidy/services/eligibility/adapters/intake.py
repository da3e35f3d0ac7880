"""``ports.OpenWork`` over intake's read side (ADR 0021).

Intake's status projection knows, for every application, the application as
accepted (with the registry's firm facts), the decision that holds it and the
grant as payout's events left it: RESERVED (not yet past its public notice:
in notice or not yet on one) or PAYABLE (past it). ``IntakeOpenWork.find``
reads them with ``IntakeService.ListApplications`` across firms, every page:
first state RESERVED (the applications an adoption re-decides), then PAYABLE
(the awards it reports on). In that order a grant turning PAYABLE during the
read is seen at least once; seen in both, it counts as noticed (the ledger
would keep its amount anyway: payout's ``supersede``, KEPT).

The calls carry the adopting reviewer's own ``authorization`` metadata, so
intake's access policy decides exactly as for the reviewer calling it
(REVIEWER may list every firm's applications, access.yaml); eligibility has
no identity of its own towards intake. With a CA file the channel is TLS,
intake's certificate verified against it (the namespace CA on Kubernetes).

Anything short of the whole set is ``OpenWorkUnavailable``: intake
unreachable, slow or overloaded (retryable), refusing the caller, or holding
a record that does not decode (not retryable, naming the application and the
field): an adoption acting on part of the open applications would leave the
rest under the old version, unseen.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import grpc

from subsidy.contracts import codec
from subsidy.contracts.codec import BadInput
from subsidy.core.domain import Application
from subsidy.platform.grpc import balancing
from subsidy.services.eligibility.model import Caller, NoticedAward, OpenWorkFound, OpenWorkUnavailable
from subsidy.v1 import intake_pb2, intake_pb2_grpc

log = logging.getLogger("subsidy.eligibility.intake")

#: ListApplications' largest page (intake's search.MAX_PAGE_SIZE).
PAGE_SIZE = 100

#: Worth calling again later: the source is down, slow or shedding load.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


class IntakeOpenWork:
    """The open applications and the noticed awards as intake shows them.
    Nothing is connected before the first ``find``; the channel is then kept."""

    def __init__(self, address: str, *, ca_file: str = "", timeout_seconds: float = 10.0, page_size: int = PAGE_SIZE):
        if not address:
            raise ValueError("address: intake's gRPC host:port is required")
        self.address = address
        self.timeout_seconds = timeout_seconds
        self.page_size = page_size
        self._credentials = None
        if ca_file:
            with open(ca_file, "rb") as f:
                self._credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        return f"intake at {self.address}"

    def _stub(self) -> Any:
        with self._lock:
            if self._channel is None:
                target, options = balancing.balanced_target(self.address), balancing.channel_options()
                if self._credentials is not None:
                    self._channel = grpc.secure_channel(target, self._credentials, options=options)
                else:
                    self._channel = grpc.insecure_channel(target, options=options)
            return intake_pb2_grpc.IntakeServiceStub(self._channel)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    def find(self, caller: Caller) -> OpenWorkFound:
        metadata = (("authorization", caller.authorization),) if caller.authorization else ()
        reserved = self._list(intake_pb2.APPLICATION_STATE_RESERVED, metadata)
        payable = self._list(intake_pb2.APPLICATION_STATE_PAYABLE, metadata)
        noticed_ids = {s.application.application_id for s in payable}
        # By application id (intake lists newest first): the re-decisions and
        # the report read in the same order whatever the paging.
        found = OpenWorkFound(
            open_applications=tuple(
                sorted(
                    (_application(s) for s in reserved if s.application.application_id not in noticed_ids),
                    key=lambda a: a.application_id,
                )
            ),
            noticed_awards=tuple(sorted((_noticed(s) for s in payable), key=lambda n: n.application.application_id)),
            source=self.source,
        )
        log.info(
            "%s: %d application(s) not yet past their public notice, %d award(s) past it",
            self.source,
            len(found.open_applications),
            len(found.noticed_awards),
        )
        return found

    def _list(self, state: int, metadata: tuple[tuple[str, str], ...]) -> list[Any]:
        """Every application in ``state`` across firms, page after page."""
        stub = self._stub()
        statuses: list[Any] = []
        token = ""
        while True:
            request = intake_pb2.ListApplicationsRequest(state=state, page_size=self.page_size, page_token=token)
            try:
                page = stub.ListApplications(request, metadata=metadata, timeout=self.timeout_seconds)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                details = (exc.details() if hasattr(exc, "details") else "") or ""
                raise OpenWorkUnavailable(
                    f"the applications not yet past their public notice cannot be read from {self.source} "
                    f"(ListApplications {intake_pb2.ApplicationState.Name(state)}: {code.name}: {details})",
                    retryable=code in RETRYABLE,
                ) from None
            statuses.extend(page.applications)
            if not page.next_page_token:
                return statuses
            if page.next_page_token == token:
                raise OpenWorkUnavailable(
                    f"{self.source} answered the same page token twice (ListApplications "
                    f"{intake_pb2.ApplicationState.Name(state)}): the listing does not advance",
                    retryable=False,
                )
            token = page.next_page_token


def _application(status: Any) -> Application:
    try:
        return codec.application_from_proto(status.application)
    except BadInput as exc:
        raise OpenWorkUnavailable(
            f"intake's application {status.application.application_id!r} cannot be read "
            f"({exc}): an adoption acts on every open application, so none is adopted until it is put right",
            retryable=False,
        ) from None


def _noticed(status: Any) -> NoticedAward:
    application = _application(status)
    grant = status.grant
    if grant.granted_fen < 0:
        raise OpenWorkUnavailable(
            f"intake's application {application.application_id!r}: grant.granted_fen: must be >= 0, "
            f"got {grant.granted_fen}",
            retryable=False,
        )
    # A grant recorded before its events named their version: the decision's.
    return NoticedAward(application, grant.granted_fen, grant.policy_version or status.decision.policy_version)
