"""The eligibility use case: one record of ``subsidy.applications.v1`` in,
its decision out -- the same handler shape as every kafka-python consumer's
(subsidy/platform/consumer.py: a callable taking a record, returning an
outcome or raising ``RecordRejected``).

``Handler(policy, clock)(record)`` takes anything with ``topic``,
``partition``, ``offset``, ``key``, ``value`` and ``headers`` (a faust
Message in the service, a plain object in tests) and returns ``Decided``: a
``subsidy.v1.Decision`` for ``subsidy.decisions.v1``, keyed by the firm's
credit code, with CloudEvents headers carrying the same trace id as the
application (a new one if the application had none).

It raises ``Rejected`` (a ``RecordRejected``) for a record that must not be
decided: a tombstone, an empty value, bytes that are not an Application, an
application that breaks the contract -- and a bug in the rules
(``unexpected``), since a pure step that failed once fails again on the
same bytes, and retrying it would stall the partition. The caller turns a
rejection into a dead letter with the shared encoding
(subsidy/platform/dead_letters.py), and logs and counts it.

No I/O, no state, no clock of its own. Logging, metrics, producing and
acknowledging are the caller's (subsidy/services/eligibility/adapters/kafka.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from subsidy.contracts import cloudevents, codec, events, topics
from subsidy.contracts.codec import BadInput
from subsidy.contracts.events import MalformedEvent
from subsidy.core import eligibility as rules
from subsidy.core.domain import Application, Decision
from subsidy.core.policy import Policy
from subsidy.core.workflow import review as review_rules
from subsidy.core.workflow.settings import FILE_NAME as WORKFLOW_FILE
from subsidy.core.workflow.settings import WorkflowSettings, load_workflow
from subsidy.platform.dead_letters import RecordRejected, header_list

CONSUMER = "eligibility"
SOURCE = "/songjiang/subsidy/eligibility"

Headers = list[tuple[str, bytes]]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision to produce. ``decision`` is the domain value, for logs and metrics."""

    key: bytes
    value: bytes
    headers: Headers
    decision: Decision
    trace_id: str
    topic: str = topics.DECISIONS.name
    #: With shadow evaluation on (SUBSIDY_ELIGIBILITY_SHADOW_VERSION): the same
    #: application decided under the candidate version, for
    #: subsidy.decisions.shadow.v1 only; None when off, or when the candidate
    #: failed on it (``shadow_error``: the adopted decision still goes out).
    shadow: Decided | None = None
    shadow_error: str | None = None


class Rejected(RecordRejected):
    """A record not to decide. ``unexpected``: the record was fine as far as
    the contract goes but evaluating it failed (a bug; logged with its
    cause's traceback). ``application_id``: when the bytes were an
    Application, for the log line."""

    def __init__(self, error: str, *, application_id: str | None = None, unexpected: bool = False):
        super().__init__(error)
        self.error = error
        self.application_id = application_id
        self.unexpected = unexpected


def _application_pb2():
    from subsidy.v1 import application_pb2

    return application_pb2


def process(
    record: Any,
    *,
    policy: Policy,
    now: dt.datetime,
    workflow: WorkflowSettings | None = None,
    shadow_policy: Policy | None = None,
    router: Callable[[Application], Policy] | None = None,
) -> Decided:
    """Decide one application record; raises ``Rejected``. With ``workflow``
    (policy/workflow.yaml), the decision says whether people must review it
    before money moves (review_required, review_reasons: the core rule
    subsidy.core.workflow.review.stamp, with the settings in force on the
    submission day). The calculator's own output never carries these. With
    ``shadow_policy`` (a candidate version), the result also carries the
    shadow decision, for subsidy.decisions.shadow.v1. With ``router`` (set
    once a version is adopted, subsidy/core/adoption.py), the application is
    decided under the adopted version in force for its clause on its day."""
    try:
        message = events.application(record.value)
    except MalformedEvent as exc:
        raise Rejected(str(exc)) from None
    try:
        application = codec.application_from_proto(message)
    except BadInput as exc:
        raise Rejected(f"invalid application: {exc}", application_id=message.application_id[:64] or None) from None
    except Exception as exc:
        raise Rejected(
            f"validating failed unexpectedly: {type(exc).__name__}: {exc}",
            unexpected=True,
            application_id=message.application_id[:64] or None,
        ) from exc
    try:
        decision = rules.evaluate(application, router(application) if router is not None else policy)
        if workflow is not None:
            decision = review_rules.stamp(decision, workflow.on(decision.submitted_on))
        decision_bytes = codec.decision_to_proto(decision).SerializeToString()
    except Exception as exc:
        raise Rejected(
            f"evaluating failed unexpectedly: {type(exc).__name__}: {exc}",
            unexpected=True,
            application_id=application.application_id,
        ) from exc
    trace_id = cloudevents.trace_id_of(header_list(record.headers)) or cloudevents.new_trace_id()
    shadow: Decided | None = None
    shadow_error: str | None = None
    if shadow_policy is not None:
        # A failure of the candidate is the candidate's: reported, and the
        # adopted decision goes out all the same.
        try:
            shadowed = rules.evaluate(application, shadow_policy)
            if workflow is not None:
                shadowed = review_rules.stamp(shadowed, workflow.on(shadowed.submitted_on))
            shadow = Decided(
                key=shadowed.credit_code.encode(),
                value=codec.decision_to_proto(shadowed).SerializeToString(),
                headers=cloudevents.headers(
                    shadowed.decision_id, cloudevents.TYPE_DECISION_SHADOWED, SOURCE, trace_id, time=now
                ),
                decision=shadowed,
                trace_id=trace_id,
                topic=topics.SHADOW_DECISIONS.name,
            )
        except Exception as exc:  # noqa: BLE001 - the candidate's bug must not stop the adopted decision
            shadow_error = f"{type(exc).__name__}: {exc}"
    return Decided(
        key=decision.credit_code.encode(),
        value=decision_bytes,
        headers=cloudevents.headers(decision.decision_id, cloudevents.TYPE_DECISION_MADE, SOURCE, trace_id, time=now),
        decision=decision,
        trace_id=trace_id,
        shadow=shadow,
        shadow_error=shadow_error,
    )


def redecided(decision: Decision, *, now: dt.datetime, workflow: WorkflowSettings | None = None) -> Decided:
    """A re-decision at a policy version's adoption (subsidy.core.adoption.redecide)
    as a record for subsidy.decisions.v1: stamped for review like any
    decision (the settings in force on its submission day), keyed by the
    credit code, CloudEvents type ``decision.superseded`` when it supersedes
    a decision (``made`` otherwise), under its derived id: a second
    publication is the same event, which every consumer dedupes."""
    if workflow is not None:
        decision = review_rules.stamp(decision, workflow.on(decision.submitted_on))
    kind = cloudevents.TYPE_DECISION_SUPERSEDED if decision.supersedes_decision_id else cloudevents.TYPE_DECISION_MADE
    trace_id = cloudevents.new_trace_id()
    return Decided(
        key=decision.credit_code.encode(),
        value=codec.decision_to_proto(decision).SerializeToString(),
        headers=cloudevents.headers(decision.decision_id, kind, SOURCE, trace_id, time=now),
        decision=decision,
        trace_id=trace_id,
    )


class Handler:
    """``process`` as a record handler: the policy in force and the clock
    given once, then one record in, one ``Decided`` out (or ``Rejected``)."""

    def __init__(
        self,
        policy: Policy,
        clock: Callable[[], dt.datetime] = utc_now,
        workflow: WorkflowSettings | None = None,
        shadow_policy: Policy | None = None,
    ):
        self.policy = policy
        self.shadow_policy = shadow_policy
        #: Set by an adoption (subsidy/services/eligibility/adoption.py); None: ``policy`` decides all.
        self.router: Callable[[Application], Policy] | None = None
        self.clock = clock
        # The review settings live beside the policy (policy/workflow.yaml); a
        # missing or malformed file stops the service at start, naming the field.
        self.workflow = workflow if workflow is not None else load_workflow(policy.directory / WORKFLOW_FILE)

    def __call__(self, record: Any) -> Decided:
        return process(
            record,
            policy=self.policy,
            now=self.clock(),
            workflow=self.workflow,
            shadow_policy=self.shadow_policy,
            router=self.router,
        )
