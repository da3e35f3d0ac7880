"""The registry port read from our own topic: ``TopicRegistry`` materialises
the compacted ``subsidy.firms.v1`` (FirmFacts, key the credit code, written
by registry-sync) in memory, so a service reads the platform's current facts
without asking the platform and without a second copy that drifts.

- One kafka-python consumer on its own thread, **no consumer group** (no
  offsets committed, no group ACL): it assigns itself every partition,
  reads from the beginning (the compacted topic is the whole truth) and
  then follows the end.
- Per credit code, the record with the highest ``feed_sequence`` wins (a
  relay's repeated delivery of an older record never goes backwards; an
  equal one, later on the partition, replaces it). A tombstone removes the firm.
- A record that cannot be used (not FirmFacts, a key that is not its credit
  code, facts the contract's validator refuses) is skipped, logged at ERROR
  and counted in ``subsidy_topic_registry_rejected_total``: registry-sync
  dead-letters at its side what it could not use, so a bad record here is
  a bug to see, never a silent drop.
- ``firm`` answers only once the reader has caught up with the end offsets
  it saw at start (until then ``RegistryUnavailable``, as the HTTP registry
  when the platform is down); ``wait_ready`` blocks for that.

``registry_from_source`` is the adapter choice every service can offer:
``SUBSIDY_REGISTRY_SOURCE`` = ``file`` (default: demo/registry.json or
``SUBSIDY_REGISTRY_FILE``), ``http`` (``SUBSIDY_REGISTRY_URL``) or
``topic`` (this class). Unset, a service's behaviour is what it was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from subsidy.contracts import events as contract_events
from subsidy.contracts import topics as contract_topics
from subsidy.contracts.codec import BadInput, parse_firm
from subsidy.platform import metrics as shared
from subsidy.platform.registry import Contacts, FileRegistry, FirmRecord, HttpRegistry, RegistryUnavailable
from subsidy.platform.security import kafka as kafka_security

log = logging.getLogger("subsidy.platform.topic_registry")

REJECTED = shared.metric(
    Counter,
    "subsidy_topic_registry_rejected",
    "Records of subsidy.firms.v1 a TopicRegistry could not use (skipped and logged), by reason.",
    ("reason",),
)
FIRMS = shared.metric(Gauge, "subsidy_topic_registry_firms", "Firms a TopicRegistry holds (from subsidy.firms.v1).")

SOURCES = ("file", "http", "topic")


class TopicRegistry:
    """See the module doc. ``start()`` … ``stop()``; ``firm(code)`` is the Registry port."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str = contract_topics.FIRMS.name,
        consumer_factory: Callable[[], Any] | None = None,
        poll_timeout_ms: int = 500,
        retry_s: float = 2.0,
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer_factory = consumer_factory or self._new_consumer
        self.poll_timeout_ms = poll_timeout_ms
        self.retry_s = retry_s
        self._facts: dict[str, Any] = {}  # credit code -> FirmFacts
        self._records: dict[str, FirmRecord] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def __repr__(self) -> str:
        return f"TopicRegistry({self.topic!r}, firms={len(self._records)}, ready={self.ready})"

    # -- lifecycle ------------------------------------------------------------------------------

    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id="subsidy-topic-registry",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=15000,
            **kafka_security.client_config(),
        )

    def start(self) -> TopicRegistry:
        self._thread = threading.Thread(target=self._run, name="topic-registry", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- the port -------------------------------------------------------------------------------

    def firm(self, credit_code: str) -> FirmRecord | None:
        if not self._ready.is_set():
            raise RegistryUnavailable(
                f"the firm facts topic {self.topic} is not read to its end yet"
                + (f" ({self.error})" if self.error else "")
                + "; nothing was stored, try again later"
            )
        with self._lock:
            return self._records.get(credit_code)

    def facts(self, credit_code: str) -> Any:
        """The firm's whole FirmFacts message (recognitions, revenues, ...), or None."""
        with self._lock:
            return self._facts.get(credit_code)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    # -- the fold -------------------------------------------------------------------------------

    def apply(self, key: bytes | None, value: bytes | None) -> str:
        """Fold one record; what happened: kept, older, removed, or rejected:<reason>."""
        code = key.decode("utf-8", "replace") if key else ""
        if not code:
            return self._reject("no_key", code, "a record without a key")
        try:
            facts = contract_events.firm_facts(value)
        except contract_events.MalformedEvent as exc:
            return self._reject("undecodable", code, str(exc))
        if facts is None:  # a tombstone
            with self._lock:
                self._facts.pop(code, None)
                self._records.pop(code, None)
                FIRMS.set(len(self._records))
            return "removed"
        if facts.credit_code != code:
            return self._reject("key_mismatch", code, f"the key is not the facts' credit code {facts.credit_code!r}")
        try:
            record = to_record(facts)
        except BadInput as exc:
            return self._reject("invalid", code, str(exc))
        with self._lock:
            current = self._facts.get(code)
            if current is not None and current.feed_sequence > facts.feed_sequence:
                return "older"
            self._facts[code] = facts
            self._records[code] = record
            FIRMS.set(len(self._records))
        return "kept"

    def _reject(self, reason: str, code: str, detail: str) -> str:
        REJECTED.labels(reason).inc()
        log.error(
            "firm facts record skipped", extra={"fields": {"credit_code": code[:64], "reason": reason, "error": detail}}
        )
        return f"rejected:{reason}"

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = self._consumer_factory()
                self._follow(consumer)
            except Exception as exc:  # noqa: BLE001 - Kafka down: say so, retry
                self.error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("firm facts reader failed, retrying", extra={"fields": {"error": self.error}})
                self._stop.wait(self.retry_s)
            finally:
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:
                        log.debug("closing the firm facts reader failed", exc_info=True)

    def _follow(self, consumer: Any) -> None:
        from kafka import TopicPartition

        partitions = None
        deadline = time.monotonic() + 30
        while not partitions:
            partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                break
            if self._stop.is_set():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} not found")
            self._stop.wait(0.5)
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if not self._ready.is_set():
            consumer.seek_to_beginning(*assigned)
            # Caught up once every partition's position reaches the end it had at start.
            end = {tp: off for tp, off in consumer.end_offsets(assigned).items()}
        else:
            end = {}
        self.error = None
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=self.poll_timeout_ms)
            for records in batches.values():
                for record in records:
                    self.apply(record.key, record.value)
            if not self._ready.is_set() and all(consumer.position(tp) >= off for tp, off in end.items()):
                self._ready.set()
                log.info("firm facts read to the end", extra={"fields": {"firms": len(self)}})


def to_record(facts: Any) -> FirmRecord:
    """A FirmFacts message as the Registry port's FirmRecord (validated by the contract's validator)."""
    firm = parse_firm(
        {
            "credit_code": facts.credit_code,
            "name": facts.name,
            "kinds": list(facts.kinds),
            "registered_in_district": facts.registered_in_district,
            "tax_registered_in_district": facts.tax_registered_in_district,
            "independent_legal_person": facts.independent_legal_person,
            "introduced_on": facts.introduced_on or None,
        },
        "firm_facts",
    )
    c = facts.contacts
    return FirmRecord(firm, Contacts(c.email, c.phone, c.webhook_url))


def registry_from_source(
    source: str,
    *,
    url: str = "",
    file: str = "demo/registry.json",
    bootstrap: str = "",
    timeout_s: float = 2.0,
    attempts: int = 3,
) -> Any:
    """The Registry adapter ``source`` names (``SUBSIDY_REGISTRY_SOURCE``): ``topic``
    (a started TopicRegistry), ``http`` or ``file``; empty: http when a URL is given, else file
    (what the services did before)."""
    source = (source or ("http" if url else "file")).strip().lower()
    if source not in SOURCES:
        raise ValueError(f"SUBSIDY_REGISTRY_SOURCE: one of {', '.join(SOURCES)}, got {source!r}")
    if source == "topic":
        if not bootstrap:
            raise ValueError("SUBSIDY_REGISTRY_SOURCE=topic needs KAFKA_BOOTSTRAP_SERVERS")
        return TopicRegistry(bootstrap).start()
    if source == "http":
        if not url:
            raise ValueError("SUBSIDY_REGISTRY_SOURCE=http needs SUBSIDY_REGISTRY_URL")
        return HttpRegistry(url, timeout=timeout_s, attempts=attempts)
    return FileRegistry(file)
