"""区财政 as the dev stack plays it: payment confirmations on subsidy.payments.v1,
exactly as docs/finance-events.md tells finance to send them (binary
PaymentConfirmed, key the firm's credit code, CloudEvents headers with the
payment id as ce_id). Used by `make run` and the fault suite."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The CloudEvents type of a payment confirmation (docs/finance-events.md).
PAYMENT_CONFIRMED_TYPE = "cn.gov.songjiang.finance.payment.confirmed.v1"


def confirm_payments(bootstrap: str, payments: Iterable[Any], source: str) -> None:
    """Produce each PaymentConfirmed in order, acknowledged by the broker before the next."""
    from kafka import KafkaProducer

    from subsidy.contracts import cloudevents, topics
    from subsidy.platform.security import kafka as kafka_security

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10, **kafka_security.client_config())
    try:
        for p in payments:
            headers = cloudevents.headers(p.payment_id, PAYMENT_CONFIRMED_TYPE, source, cloudevents.new_trace_id())
            producer.send(
                topics.PAYMENTS.name, key=p.credit_code.encode(), value=p.SerializeToString(), headers=headers
            ).get(timeout=60)
    finally:
        producer.close(timeout=10)
