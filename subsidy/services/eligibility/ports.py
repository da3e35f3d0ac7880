"""What eligibility's adoption use case (adoption.py) needs from outside,
besides the audit trail (``adoption.Log``): the applications an adoption
re-decides and the awards it reports on. Adapter: adapters/intake.py (intake's
ListApplications over gRPC, ADR 0021); the unit tests use an in-memory fake.
"""

from __future__ import annotations

from typing import Protocol

from subsidy.services.eligibility.model import Caller, OpenWorkFound


class OpenWork(Protocol):
    def find(self, caller: Caller) -> OpenWorkFound:
        """Every application whose grant is not yet past its public notice,
        and every award past it, as the source shows them now, read on
        ``caller``'s behalf. Raises ``OpenWorkUnavailable`` when they cannot
        all be found (never a part of them)."""
