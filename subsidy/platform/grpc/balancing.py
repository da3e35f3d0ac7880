"""Client-side balancing across a service's pods (issue 16, item 6).

A gRPC channel is one long-lived HTTP/2 connection: behind a ClusterIP
Service, kube-proxy balances *connections*, so every call of a client lands
on the one pod its connection reached, however many intake replicas the HPA
starts. The remedy without an L7 proxy: the headless Service
``subsidy-intake-headless`` (deploy/k8s/base/services/intake.yaml: one DNS A
record per ready pod) as a ``dns:///`` target, and the ``round_robin`` load
balancing policy in the channel's service config, so the client holds one
subchannel per pod and spreads its calls over them.

    channel = grpc.aio.secure_channel(
        balanced_target("subsidy-intake-headless:50051"), credentials, options=channel_options()
    )

New pods are found when the client re-resolves the name: when a subchannel
drops, and at most every ``dns_min_time_between_resolutions_ms``; servers
that close connections after a maximum age make every client re-resolve
(docs/operations.md#grpc-balancing).
"""

from __future__ import annotations

import json
from typing import Any

#: The channel's service config: round robin over every address the name resolves to.
SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def balanced_target(address: str) -> str:
    """``host:port`` as a ``dns:///`` target (every A record, not the first);
    a target that already names a resolver scheme (``dns:``, ``ipv4:``,
    ``unix:`` …) is returned as it is."""
    if not address:
        raise ValueError("address: empty")
    if ":///" in address or address.split(":", 1)[0] in ("dns", "ipv4", "ipv6", "unix", "unix-abstract"):
        return address
    return f"dns:///{address}"


def channel_options(resolve_every_ms: int = 30_000) -> list[tuple[str, Any]]:
    """Channel options for round robin: the service config, and how often
    the DNS name may be re-resolved (new pods are picked up then)."""
    return [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.dns_min_time_between_resolutions_ms", resolve_every_ms),
    ]
