"""Unified social credit codes (统一社会信用代码), GB 32100-2015.

An 18-character code::

    9 1 310117 MA1J1234 5 X
    | | |      |        | └ 18: check character over positions 1-17 (GB 32100)
    | | |      └────────┴── 9-17: organisation code (GB 11714), its 9th char
    | | |                        being its own check character
    | | └ 3-8: administrative division code (310117 is Songjiang)
    | └ 2: organisation type within the registering department
    └ 1: registering department (9 = market regulation / 工商)

Both check characters are verified, so a typo anywhere is caught at the edge
before anything is stored or published.
"""

from __future__ import annotations

from functools import lru_cache

# GB 32100 code characters: digits and upper-case letters without I, O, Z, S, V.
CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CHAR_VALUE = {c: i for i, c in enumerate(CODE_CHARS)}
_WEIGHTS_18 = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# GB 11714 values letters A-Z as 10-35 (its own alphabet, not GB 32100's).
_WEIGHTS_ORG = (3, 7, 9, 10, 5, 8, 4, 2)

SONGJIANG_DIVISION = "310117"


class InvalidCreditCode(ValueError):
    """The text says which rule the code breaks."""


_ORG_VALUE = {c: int(c) if c.isdigit() else ord(c) - 55 for c in CODE_CHARS}


def organisation_check_char(body8: str) -> str:
    """GB 11714 check character for the 8-character organisation code body."""
    total = sum(_ORG_VALUE[c] * w for c, w in zip(body8, _WEIGHTS_ORG))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def credit_check_char(first17: str) -> str:
    """GB 32100 check character for the first 17 characters."""
    total = sum(_CHAR_VALUE[c] * w for c, w in zip(first17, _WEIGHTS_18))
    return CODE_CHARS[(31 - total % 31) % 31]


def validate(code: object) -> str:
    """Return the code if valid, else raise InvalidCreditCode saying why."""
    if not isinstance(code, str):
        raise InvalidCreditCode(f"must be a string, got {type(code).__name__}")
    if len(code) != 18:
        raise InvalidCreditCode(f"must be 18 characters, got {len(code)}: {code!r}")
    problem = _problem(code)
    if problem:
        raise InvalidCreditCode(problem)
    return code


# A firm's code recurs in every application it makes: remember the verdicts.
@lru_cache(maxsize=1 << 16)
def _problem(code: str) -> str | None:
    for position, char in enumerate(code, start=1):
        if char not in _CHAR_VALUE:
            return f"character {position} {char!r} is not allowed (digits and A-Z without I, O, Z, S, V): {code!r}"
    if not code[2:8].isdigit():
        return f"characters 3-8 must be a division code of 6 digits: {code!r}"
    expected_org = organisation_check_char(code[8:16])
    if code[16] != expected_org:
        return f"organisation-code check character (17th) is {code[16]!r}, expected {expected_org!r}: {code!r}"
    expected = credit_check_char(code[:17])
    if code[17] != expected:
        return f"check character (18th) is {code[17]!r}, expected {expected!r}: {code!r}"
    return None


def is_valid(code: object) -> bool:
    try:
        validate(code)
    except InvalidCreditCode:
        return False
    return True


def complete(prefix16: str) -> str:
    """Append both check characters to 16 characters (department, type,
    division, 8-character organisation body). For demo data and tests."""
    if len(prefix16) != 16:
        raise ValueError("need exactly 16 characters")
    first17 = prefix16 + organisation_check_char(prefix16[8:16])
    return first17 + credit_check_char(first17)
