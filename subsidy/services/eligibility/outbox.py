"""What an adoption owes ``subsidy.decisions.v1``, published until the broker
has it (issue 14): the adoption trail as an outbox.

The ``adopted`` event carries the open applications' re-decisions
(adoption.py, ``record_form``), so the adoption and what it must publish are
one fact of the trail. Once the broker has acknowledged them, a
``redecisions_published`` event says so (``AdoptionDesk.record_published``);
until then the trail owes them (``AdoptionState.owed``,
subsidy/core/adoption.py).

``RedecisionOutbox`` publishes what is owed:

- ``publish_adopted``: right after the approval, from the AdoptVersion call
  (trigger ``adoption``); when it fails the call answers UNAVAILABLE and the
  re-decisions stay owed;
- ``settle``: at start-up and every ``retry_seconds`` after (trigger
  ``retry``; the loop is ``GrpcServer._settle_redecisions``), the trail read
  to its end first, on whichever instance runs it. Two instances may both
  publish the same re-decisions, and a kill between the publication and its
  record publishes them again after the restart: harmless, their ids are
  derived (``<application>@<policy_version>``) and every consumer of the
  decisions topic skips an id it has applied.

Every attempt is counted (``subsidy_policy_redecision_publications_total{trigger,
result}``), every failure logged at error level; the backlog is the gauge
``subsidy_policy_redecisions_owed`` (alert ``SubsidyPolicyRedecisionsOwed``,
docs/operations.md). Nothing owed is ever dropped: a recorded re-decision
that does not decode stays owed, counted as a failure and logged at every
attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from subsidy.contracts.codec import BadInput
from subsidy.core.domain import Decision
from subsidy.platform import logs
from subsidy.services.eligibility.adoption import AdoptionDesk
from subsidy.services.eligibility.metrics import Metrics

log = logging.getLogger("subsidy.eligibility.redecisions")

#: Produces re-decisions on subsidy.decisions.v1 and returns them as published
#: (stamped for review) once the broker has acknowledged every one
#: (kafka.Eligibility.publish_redecisions).
Publish = Callable[[Sequence[Decision]], Awaitable[list[Decision]]]

ADOPTION = "adoption"
RETRY = "retry"


class RedecisionOutbox:
    def __init__(self, desk: AdoptionDesk, publish: Publish, metrics: Metrics, *, retry_seconds: float = 5.0):
        self.desk = desk
        self.publish = publish
        self.metrics = metrics
        #: How often what is owed is published again (SUBSIDY_ELIGIBILITY_REDECISIONS_RETRY_SECONDS).
        self.retry_seconds = retry_seconds
        # One publication at a time per instance: the approving call and the
        # retry do not publish the same re-decisions side by side.
        self._lock = asyncio.Lock()

    async def publish_adopted(self, version_id: str, decisions: Sequence[Decision]) -> list[Decision]:
        """The approval's re-decisions, published now; raises what the
        publisher raised (they stay owed, the retry publishes them)."""
        async with self._lock:
            return await self._publish(version_id, decisions, ADOPTION)

    async def settle(self) -> int:
        """Publish everything the trail owes (read to its end first, as this
        instance can); returns how many re-decisions the broker acknowledged."""
        async with self._lock:
            try:
                await asyncio.to_thread(self.desk.refresh)
            except Exception as exc:  # noqa: BLE001 - the follow loop says it too; publish what is known
                log.error("re-decisions owed: the adoption trail cannot be read (%s); publishing what is known", exc)
            try:
                owed = self.desk.owed()
            except BadInput as exc:
                self.metrics.redecision_publications.labels(RETRY, "failed").inc()
                log.error("re-decisions owed cannot be published: the trail holds one that does not decode: %s", exc)
                self._gauge()
                return 0
            acknowledged = 0
            for item in owed:
                try:
                    acknowledged += len(await self._publish(item.version_id, item.decisions, RETRY))
                except Exception:  # noqa: BLE001, S112 - counted and logged by _publish; still owed
                    continue
            self._gauge()
            return acknowledged

    async def _publish(self, version_id: str, decisions: Sequence[Decision], trigger: str) -> list[Decision]:
        fields = logs.fields(version_id=version_id, trigger=trigger, redecisions=len(decisions))
        try:
            published = await self.publish(decisions)
        except Exception as exc:
            self.metrics.redecision_publications.labels(trigger, "failed").inc()
            log.error(
                "%d re-decision(s) of the adoption of %s could not be published on subsidy.decisions.v1 (%s: %s); "
                "they stay owed and are retried every %g s",
                len(decisions),
                version_id,
                type(exc).__name__,
                exc,
                self.retry_seconds,
                extra=fields,
            )
            self._gauge()
            raise
        self.metrics.redecision_publications.labels(trigger, "published").inc()
        try:
            await asyncio.to_thread(self.desk.record_published, version_id, [d.decision_id for d in published])
        except OSError as exc:
            # On the broker, not yet in the trail: owed still, published again (same ids) at the next attempt.
            log.error(
                "%d re-decision(s) of the adoption of %s are published, but the trail cannot record it (%s); "
                "they will be published again (same ids: harmless)",
                len(published),
                version_id,
                exc,
                extra=fields,
            )
        else:
            log.info(
                "%d re-decision(s) of the adoption of %s published and recorded in the trail",
                len(published),
                version_id,
                extra=fields,
            )
        self._gauge()
        return published

    def _gauge(self) -> None:
        self.metrics.redecisions_owed.set(self.desk.owed_count())
