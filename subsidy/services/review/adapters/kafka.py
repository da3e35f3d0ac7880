"""The Kafka consumers of review (subsidy.platform.consumer.KafkaRecordLoop,
kafka-python in a thread each), each record applied in one transaction of its
own and idempotent, so a redelivery changes nothing:

- ``subsidy.decisions.v1``, group ``subsidy-review``: a decision with
  review_required becomes a review item (derived id from the decision id);
  every other decision, the reviewed ones this service publishes included,
  is ignored;
- ``subsidy.payouts.v1``, group ``subsidy-review-payouts``: GrantRecorded
  feeds the firm's ledger for GetItem and, with an amount, the pool of
  approved awards the next notice lists (computed and reviewed decisions
  alike: payout records both);
- ``subsidy.applications.v1``, group ``subsidy-review-applications``: the
  application, for GetItem and the firm's name on the notice list.

A record that cannot be decoded (``Rejected``) goes to the topic's
dead-letter topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from subsidy.contracts import cloudevents, topics
from subsidy.core.workflow.settings import WorkflowSettings
from subsidy.platform import logs
from subsidy.platform.clock import Clock
from subsidy.platform.consumer import KafkaRecordLoop
from subsidy.services.review import handlers, metrics
from subsidy.services.review.adapters.store import SqlStore
from subsidy.services.review.model import SOURCE, Rejected

log = logging.getLogger("subsidy.services.review.adapters.kafka")


def _loop(
    name: str, handler: Callable[[Any], str], bootstrap: str, topic: str, dlq: str, group: str, **kwargs: Any
) -> KafkaRecordLoop:
    session_timeout_ms = kwargs.pop("session_timeout_ms", None)
    config = {}
    if session_timeout_ms is not None:
        config = {"session_timeout_ms": session_timeout_ms, "heartbeat_interval_ms": max(500, session_timeout_ms // 3)}
    return KafkaRecordLoop(
        name,
        handler,
        bootstrap,
        topics=[topic],
        group_id=group,
        dlq_topic=dlq,
        source=SOURCE,
        rejects=(Rejected,),
        consumer_config=config,
        **kwargs,
    )


class DecisionQueuer:
    consumer_name = "review"

    def __init__(self, store: SqlStore, workflow: WorkflowSettings, clock: Clock, on_written: Callable[[], None]):
        self.store = store
        self.workflow = workflow
        self.clock = clock
        self.on_written = on_written

    def __call__(self, record: Any) -> str:
        decision = handlers.parse_decision(record.value)
        trace_id = cloudevents.trace_id_of(record.headers) or cloudevents.new_trace_id()
        with logs.trace(trace_id):
            result = handlers.queue_decision(
                self.store, decision, self.workflow, self.clock.today(), self.clock.now(), trace_id
            )
            metrics.DECISIONS.labels(result).inc()
            if result == "queued":
                log.info(
                    "decision queued for review",
                    extra=logs.fields(
                        decision_id=decision.decision_id,
                        credit_code=decision.credit_code,
                        clause=decision.clause,
                        review_reasons=list(decision.review_reasons),
                    ),
                )
                self.on_written()
        return result


def decisions_consumer(
    store: SqlStore,
    workflow: WorkflowSettings,
    clock: Clock,
    bootstrap: str,
    group: str,
    on_written: Callable[[], None],
    **kw: Any,
) -> KafkaRecordLoop:
    return _loop(
        DecisionQueuer.consumer_name,
        DecisionQueuer(store, workflow, clock, on_written),
        bootstrap,
        topics.DECISIONS.name,
        topics.DECISIONS_DLQ.name,
        group,
        **kw,
    )


def payouts_consumer(store: SqlStore, clock: Clock, bootstrap: str, group: str, **kw: Any) -> KafkaRecordLoop:
    def apply(record: Any) -> str:
        return handlers.record_payout_event(store, record.value, clock.now())

    return _loop("review-payouts", apply, bootstrap, topics.PAYOUTS.name, topics.PAYOUTS_DLQ.name, group, **kw)


def applications_consumer(store: SqlStore, clock: Clock, bootstrap: str, group: str, **kw: Any) -> KafkaRecordLoop:
    def apply(record: Any) -> str:
        return handlers.record_application(store, record.value, clock.now())

    return _loop(
        "review-applications", apply, bootstrap, topics.APPLICATIONS.name, topics.APPLICATIONS_DLQ.name, group, **kw
    )
