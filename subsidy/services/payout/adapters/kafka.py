"""The three Kafka consumers of payout (subsidy.platform.consumer.KafkaRecordLoop,
kafka-python in a thread each):

- ``subsidy.decisions.v1``, group ``subsidy-payout``: the Decisions of one
  poll applied to the ledger in **one** transaction (the loop's batch scope,
  ``DecisionApplier.batch``: store.batch), each decision a savepoint in it
  (handlers.apply_decision's unit of work): one commit, one fsync, per poll
  instead of per decision. A decision's effects and its inbox row commit
  together, with the rest of the batch or not at all;
- ``subsidy.payments.v1``, group ``subsidy-payout-payments``: each
  PaymentConfirmed applied in one transaction of its own
  (handlers.apply_payment). Left per record on purpose: payments are few (one
  per tranche, from finance), and a payment transaction that holds one firm
  lock can never deadlock with the decisions batch, which holds many;
- ``subsidy.firms.v1``, group ``subsidy-payout-firms``: each FirmFacts
  (per firm the highest feed_sequence kept; a tombstone: unknown to the
  platform) in one transaction of its own (handlers.apply_firm_facts):
  facts that fail the release gate hold the firm's DUE tranches at once.
  A record that is not usable (bad key, not FirmFacts, key and credit code
  differ, no sequence, no date) goes to subsidy.firms.v1.dlq;
- ``subsidy.payments.v1`` also carries finance's RecoveryConfirmed, told
  by its ce_type header (ADR 0017): handlers.apply_recovery_confirmation;
- ``subsidy.notices.v1``, group ``subsidy-payout-notices``: each LinePayable
  (the grant becomes PAYABLE, its tranches are scheduled) and LineWithdrawn
  (the grant becomes WITHDRAWN, its cap reservation released) applied in one
  transaction of its own with its outbox rows (handlers.apply_notice_line);
  the other notice kinds (published, objections) are read and skipped. Per
  record for the reason payments are: a line is one firm, a notice a few
  dozen lines. A line the ledger cannot follow (unknown decision, PAYABLE
  after WITHDRAWN or the reverse, another firm's decision) is Rejected and
  dead-lettered to ``subsidy.notices.v1.dlq``.

Offsets are committed once per poll, after every record of it was applied
(at least once; the inbox and the payment ids make a redelivery harmless);
for decisions, after the batch transaction committed — a batch that fails
(database down, a serialization failure or deadlock on PostgreSQL) commits no
offset and is redone whole. A record that must not be applied (undecodable,
invalid, a payment that does not match its tranche: ``Rejected``) goes to
the topic's dead-letter topic as a subsidy.v1.DeadLetter and is counted; for
decisions, once the batch committed, so a redone batch does not dead-letter
twice (a DLQ failing part-way through a batch's letters can still repeat the
ones already sent). If the database or the DLQ is down, every partition of
the batch is rewound to its first unapplied record (for decisions: the
batch's first record) and retried with backoff.

Decisions' metrics and INFO logs are written once the batch committed, so a
redone batch is not counted twice; the relay is woken once per batch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import Any

from subsidy.contracts import cloudevents, events, topics
from subsidy.core import credit_code
from subsidy.core.dates import rfc3339
from subsidy.core.domain import Decision
from subsidy.platform import logs
from subsidy.platform.clock import Clock
from subsidy.platform.consumer import KafkaRecordLoop
from subsidy.services.payout import handlers, metrics
from subsidy.services.payout.adapters.store import SqlStore
from subsidy.services.payout.handlers import Applied
from subsidy.services.payout.model import PAYABLE_LINE, SOURCE, Rejected, utcnow

log = logging.getLogger("subsidy.services.payout.adapters.kafka")

#: Ledger reasons that mean the firm's history limited a grant (subsidy_payout_cap_hits_total).
CAP_REASONS = frozenset({"CAP_PARTIAL", "CAP_EXHAUSTED", "ALREADY_AWARDED"})


def record_loop(
    name: str,
    apply: Callable[[Any], str],
    bootstrap: str,
    *,
    topic: str,
    dlq_topic: str,
    group_id: str,
    session_timeout_ms: int | None = None,
    **kwargs: Any,
) -> KafkaRecordLoop:
    config = {}
    if session_timeout_ms is not None:
        config = {"session_timeout_ms": session_timeout_ms, "heartbeat_interval_ms": max(500, session_timeout_ms // 3)}
    return KafkaRecordLoop(
        name,
        apply,
        bootstrap,
        topics=[topic],
        group_id=group_id,
        dlq_topic=dlq_topic,
        source=SOURCE,
        rejects=(Rejected,),
        consumer_config=config,
        **kwargs,
    )


# -- what each consumer does with a record ------------------------------------------------


def _firm_of(record: Any) -> str:
    """The credit code of the decision a record holds; "" when it holds none."""
    try:
        code = handlers.parse_decision(record.value).credit_code
    except Exception:  # noqa: BLE001 - undecodable: the handler dead-letters it, with the reason
        return ""
    return code if credit_code.is_valid(code) else ""


class DecisionApplier:
    """subsidy.decisions.v1 → the ledger."""

    consumer_name = "payout"

    def __init__(
        self, store: SqlStore, on_written: Callable[[], None] = lambda: None, now: Callable[[], dt.datetime] = utcnow
    ):
        self.store = store
        self.on_written = on_written
        self.now = now
        #: Inside ``batch``: what to report once the batch committed (the consumer's thread only).
        self._reports: list[Callable[[], bool]] | None = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The loop's batch scope: one transaction for the decisions of a
        poll, then their metrics and logs, and one wake of the relay."""
        reports: list[Callable[[], bool]] = []
        self._reports = reports
        try:
            with self.store.batch():
                yield
        finally:
            self._reports = None
        wrote = False
        for report in reports:
            wrote = report() or wrote
        if wrote:
            self.on_written()

    def lock_firms(self, records: list[Any]) -> None:
        """The batch's prelude: lock every firm of the poll in credit-code
        order, the order the scheduler takes them in too, so neither a second
        replica nor the scheduler can deadlock with this batch (before, firms
        were locked in poll order, PostgreSQL broke the cycle and the batch
        was redone). The firm is the decision's own (its value, not the
        record's key, which a producer could set to anything); a record that
        does not decode locks nothing: it is dead-lettered."""
        codes = sorted({code for code in (_firm_of(r) for r in records) if code})
        if not codes:
            return
        at = rfc3339(self.now())
        with self.store:
            for code in codes:
                self.store.firms.lock(code, at)
            self.store.commit()

    def __call__(self, record: Any) -> str:
        decision = handlers.parse_decision(record.value)
        trace_id = cloudevents.trace_id_of(record.headers) or cloudevents.new_trace_id()
        with logs.trace(trace_id):
            applied = handlers.apply_decision(self.store, decision, trace_id, self.now())

        def report() -> bool:
            with logs.trace(trace_id):
                return self._report(decision, applied, record)

        if self._reports is not None:
            self._reports.append(report)
        elif report():
            self.on_written()
        return applied.result

    @staticmethod
    def _report(decision: Decision, applied: Applied, record: Any) -> bool:
        """Metrics and the log line of one committed decision; True when it wrote something."""
        metrics.DECISIONS.labels(applied.result).inc()
        where = dict(
            application_id=decision.application_id,
            decision_id=decision.decision_id,
            credit_code=decision.credit_code,
            clause=decision.clause,
            outcome=decision.outcome,
            partition=record.partition,
            offset=record.offset,
        )
        if applied.result == "replayed":
            log.info("decision replayed: already applied, nothing written", extra=logs.fields(**where))
            return False
        if applied.result in (handlers.HELD_FOR_REVIEW, handlers.HELD_SUPERSEDING):
            log.info(
                "decision held for review: not applied, nothing granted or reserved"
                + (
                    " (the grant keeps the decision it supersedes until then)"
                    if decision.supersedes_decision_id
                    else ""
                ),
                extra=logs.fields(**where, review_reasons=list(decision.review_reasons)),
            )
            return False
        if applied.result == handlers.KEPT:
            kept = applied.previous
            assert kept is not None
            log.warning(
                "superseding decision not applied: the grant is past its notice and keeps its amount",
                extra=logs.fields(
                    **where,
                    supersedes_decision_id=decision.supersedes_decision_id,
                    grant_decision_id=kept.decision_id,
                    grant_state=str(kept.state),
                    granted_fen=kept.granted_fen,
                    max_award_fen=decision.max_award_fen,
                ),
            )
            return True
        plan = applied.plan
        assert plan is not None  # only a replay has none
        if applied.result == "applied":
            metrics.GRANTS.labels(plan.clause, plan.outcome).inc()
            metrics.GRANTED_FEN.labels(plan.clause).inc(plan.granted_fen)
            metrics.GRANT_TRANSITIONS.labels("RESERVED").inc()
            if any(r.code in CAP_REASONS for r in plan.reasons):
                metrics.CAP_HITS.labels(plan.clause).inc()
            for reason in plan.reasons:
                metrics.LEDGER_LIMITS.labels(plan.clause, reason.code).inc()
        previous = {}
        if applied.result == handlers.ADJUSTED and applied.previous is not None:
            previous = dict(
                previous_decision_id=applied.previous.decision_id, previous_granted_fen=applied.previous.granted_fen
            )
        log.info(
            f"decision {applied.result}",
            extra=logs.fields(
                **where,
                **previous,
                granted_fen=plan.granted_fen,
                max_award_fen=plan.max_award_fen,
                reviewed=decision.review is not None,
                ledger_reasons=[r.code for r in plan.reasons],
            ),
        )
        return True


class PaymentApplier:
    """subsidy.payments.v1 → tranche PAID; a record typed RecoveryConfirmed
    (its ce_type header, ADR 0017) → the recovery's recovered amount."""

    consumer_name = "payout-payments"

    def __init__(
        self, store: SqlStore, on_written: Callable[[], None] = lambda: None, now: Callable[[], dt.datetime] = utcnow
    ):
        self.store = store
        self.on_written = on_written
        self.now = now

    def __call__(self, record: Any) -> str:
        if handlers.is_recovery_confirmed(record.headers):
            return self._recovery(record)
        try:
            payment = handlers.parse_payment(record.value)
            result, tranche = handlers.apply_payment(self.store, payment, self.now())
        except Rejected:
            metrics.PAYMENTS.labels("dead_letter").inc()
            raise
        metrics.PAYMENTS.labels(result).inc()
        where = logs.fields(
            payment_id=payment.payment_id,
            tranche_id=payment.tranche_id,
            credit_code=payment.credit_code,
            amount_fen=payment.amount_fen,
            partition=record.partition,
            offset=record.offset,
        )
        if result == "applied":
            metrics.TRANSITIONS.labels("PAID").inc()
            metrics.TRANCHES_PAID.inc()
            log.info("payment applied: tranche paid", extra=where)
            self.on_written()
        else:
            log.info("payment repeated: already applied, ignored", extra=where)
        return result

    def _recovery(self, record: Any) -> str:
        try:
            confirmation = handlers.parse_recovery_confirmed(record.value)
            result, recovery, released = handlers.apply_recovery_confirmation(self.store, confirmation, self.now())
        except Rejected as exc:
            metrics.RECOVERY_CONFIRMATIONS.labels("dead_letter").inc()
            log.warning(
                "recovery confirmation rejected: dead-lettered",
                extra=logs.fields(partition=record.partition, offset=record.offset, reason=str(exc)[:300]),
            )
            raise
        metrics.RECOVERY_CONFIRMATIONS.labels(result).inc()
        where = dict(
            confirmation_id=confirmation.confirmation_id,
            recovery_id=confirmation.recovery_id,
            credit_code=confirmation.credit_code,
            amount_fen=confirmation.amount_fen,
            partition=record.partition,
            offset=record.offset,
        )
        if result == "applied":
            assert recovery is not None
            metrics.RECOVERED_FEN.inc(confirmation.amount_fen)
            log.info(
                "recovery confirmed",
                extra=logs.fields(
                    **where, recovered_fen=recovery.recovered_fen, status=recovery.status, released_fen=released
                ),
            )
            self.on_written()
        else:
            log.info("recovery confirmation repeated: already applied, ignored", extra=logs.fields(**where))
        return result


class FirmFactsApplier:
    """subsidy.firms.v1 → payout's copy of each firm's latest facts (what the
    release gate reads); facts that fail the gate hold the firm's DUE
    tranches at once. ``on_written`` wakes the relay and the scheduler (a
    restored firm's held tranches are released by the scheduler)."""

    consumer_name = "payout-firms"

    def __init__(
        self,
        store: SqlStore,
        clock: Clock,
        grace_days: handlers.GraceDays,
        on_written: Callable[[], None] = lambda: None,
        now: Callable[[], dt.datetime] = utcnow,
    ):
        self.store = store
        self.clock = clock
        self.grace_days = grace_days
        self.on_written = on_written
        self.now = now

    def __call__(self, record: Any) -> str:
        today = self.clock.today()
        try:
            standing, name = handlers.parse_firm_facts(record.key, record.value)
            applied = handlers.apply_firm_facts(self.store, standing, name, today, self.now(), self.grace_days)
        except Rejected as exc:
            metrics.FIRM_FACTS.labels("dead_letter").inc()
            log.warning(
                "firm facts rejected: dead-lettered",
                extra=logs.fields(partition=record.partition, offset=record.offset, reason=str(exc)[:300]),
            )
            raise
        metrics.FIRM_FACTS.labels(applied.result).inc()
        where = dict(
            credit_code=standing.credit_code,
            known=standing.known,
            feed_sequence=standing.feed_sequence,
            as_of=standing.as_of.isoformat() if standing.as_of else "",
            gate="pass" if applied.gate.passes else "fail",
            gate_codes=list(applied.gate.codes),
            partition=record.partition,
            offset=record.offset,
        )
        if applied.result != "applied":
            log.info(f"firm facts {applied.result}: nothing written", extra=logs.fields(**where))
            return applied.result
        if standing.as_of is not None and standing.as_of > today:
            log.warning(
                "firm facts dated after payout's today: applied as the latest known (clock skew?)",
                extra=logs.fields(**where, today=today.isoformat()),
            )
        if applied.held:
            metrics.TRANSITIONS.labels("HELD").inc(len(applied.held))
            log.warning(
                "firm no longer meets the scope: due tranches held",
                extra=logs.fields(**where, tranche_ids=[t.tranche_id for t in applied.held[:20]]),
            )
        else:
            log.info("firm facts applied", extra=logs.fields(**where))
        self.on_written()
        return applied.result


class NoticeLineApplier:
    """subsidy.notices.v1 → grant PAYABLE (tranches scheduled) or WITHDRAWN."""

    consumer_name = "payout-notices"

    def __init__(
        self, store: SqlStore, on_written: Callable[[], None] = lambda: None, now: Callable[[], dt.datetime] = utcnow
    ):
        self.store = store
        self.on_written = on_written
        self.now = now

    def __call__(self, record: Any) -> str:
        try:
            line = handlers.parse_notice_line(record.value)
            if line is None:
                metrics.NOTICE_LINES.labels("other", "skipped").inc()
                return "skipped"
            result, grant, tranches = handlers.apply_notice_line(self.store, line, self.now())
        except Rejected as exc:
            metrics.NOTICE_LINES.labels(_line_kind(record.value), "dead_letter").inc()
            log.warning(
                "notice line rejected: dead-lettered",
                extra=logs.fields(partition=record.partition, offset=record.offset, reason=str(exc)[:300]),
            )
            raise
        metrics.NOTICE_LINES.labels(line.kind, result).inc()
        where = logs.fields(
            event_id=line.event_id,
            decision_id=line.decision_id,
            application_id=line.application_id,
            credit_code=line.credit_code,
            notice_id=line.notice_id,
            state=grant.state.value,
            partition=record.partition,
            offset=record.offset,
        )
        if result != "applied":
            log.info("notice line repeated: the grant is already in that state, nothing written", extra=where)
            return result
        metrics.GRANT_TRANSITIONS.labels(grant.state.value).inc()
        if line.kind == PAYABLE_LINE:
            metrics.TRANSITIONS.labels("SCHEDULED").inc(len(tranches))
            for tranche in tranches:
                metrics.SCHEDULED_FEN.labels(tranche.clause, str(tranche.budget_year)).inc(tranche.amount_fen)
            log.info(
                "grant payable: tranches scheduled",
                extra=logs.fields(**where["fields"], tranches=len(tranches), granted_fen=grant.granted_fen),
            )
        else:
            log.info(
                "grant withdrawn: cap reservation released",
                extra=logs.fields(**where["fields"], released_fen=sum(fen for _, fen in grant.uses)),
            )
        self.on_written()
        return result


def _line_kind(value: Any) -> str:
    """The metric label of a rejected record: payable, withdrawn or other (a
    record the contract's decoder refuses: that may be why it was rejected)."""
    try:
        kind = events.notice_event(value).WhichOneof("event")
    except events.MalformedEvent:
        return "other"
    return {"line_payable": "payable", "line_withdrawn": "withdrawn"}.get(kind, "other")


def decisions_consumer(
    store: SqlStore, bootstrap: str, group_id: str, on_written: Callable[[], None], **kwargs: Any
) -> KafkaRecordLoop:
    applier = DecisionApplier(store, on_written)
    return record_loop(
        DecisionApplier.consumer_name,
        applier,
        bootstrap,
        topic=topics.DECISIONS.name,
        dlq_topic=topics.DECISIONS_DLQ.name,
        group_id=group_id,
        batch_scope=applier.batch,
        batch_prelude=applier.lock_firms,
        **kwargs,
    )


def payments_consumer(
    store: SqlStore, bootstrap: str, group_id: str, on_written: Callable[[], None], **kwargs: Any
) -> KafkaRecordLoop:
    return record_loop(
        PaymentApplier.consumer_name,
        PaymentApplier(store, on_written),
        bootstrap,
        topic=topics.PAYMENTS.name,
        dlq_topic=topics.PAYMENTS_DLQ.name,
        group_id=group_id,
        **kwargs,
    )


def notices_consumer(
    store: SqlStore, bootstrap: str, group_id: str, on_written: Callable[[], None], **kwargs: Any
) -> KafkaRecordLoop:
    return record_loop(
        NoticeLineApplier.consumer_name,
        NoticeLineApplier(store, on_written),
        bootstrap,
        topic=topics.NOTICES.name,
        dlq_topic=topics.NOTICES_DLQ.name,
        group_id=group_id,
        **kwargs,
    )


def firms_consumer(
    store: SqlStore,
    bootstrap: str,
    group_id: str,
    clock: Clock,
    grace_days: handlers.GraceDays,
    on_written: Callable[[], None],
    **kwargs: Any,
) -> KafkaRecordLoop:
    """subsidy.firms.v1 (compacted; read from the earliest offset by a new
    group, so payout learns every firm's latest facts), dead letters to
    subsidy.firms.v1.dlq."""
    return record_loop(
        FirmFactsApplier.consumer_name,
        FirmFactsApplier(store, clock, grace_days, on_written),
        bootstrap,
        topic=topics.FIRMS.name,
        dlq_topic=topics.FIRMS_DLQ.name,
        group_id=group_id,
        **kwargs,
    )
