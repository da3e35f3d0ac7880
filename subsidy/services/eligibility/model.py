"""Eligibility's own values and errors for adopting a policy version (ADR
0021): who adopts, and what an adoption finds open and past its notice. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from subsidy.core.domain import Application


@dataclass(frozen=True, slots=True)
class Caller:
    """The reviewer calling AdoptVersion. ``authorization``: the call's own
    ``authorization`` metadata (``Bearer <token>``), forwarded to the source
    of the open work so that its access policy decides on the reviewer's
    behalf; empty with authentication off."""

    subject: str
    role: str
    authorization: str = ""

    def __repr__(self) -> str:  # the token is never logged
        return f"Caller(subject={self.subject!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True)
class NoticedAward:
    """An award past its public notice (its grant PAYABLE): it keeps its
    amount; the adoption report says what the new version would have given."""

    application: Application
    granted_fen: int
    #: The policy version of the decision that holds the grant.
    policy_version: str


@dataclass(frozen=True, slots=True)
class OpenWorkFound:
    """What the source showed at adoption time: the applications not yet past
    their public notice (a RESERVED grant: in notice or not yet on one), and
    the awards past it."""

    open_applications: tuple[Application, ...]
    noticed_awards: tuple[NoticedAward, ...]
    #: Where they were read (for the logs and the refusals), e.g. ``intake at subsidy-intake:50051``.
    source: str = ""


class OpenWorkUnavailable(Exception):
    """The open work cannot be found now: nothing may be adopted (an adoption
    without it would leave applications out). ``retryable``: the source is
    unreachable or overloaded (UNAVAILABLE) rather than refusing for good
    (FAILED_PRECONDITION: the caller's credentials, or a record it cannot read)."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable
