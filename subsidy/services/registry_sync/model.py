"""registry-sync's values and rules, no I/O: a feed change as the data
platform sends it (docs/data-platform.md), its validation (every refusal
names the field), and the fold of changes into a firm's whole facts.

A firm's facts are kept as a plain JSON-able dict of FirmFacts' fields
(proto/subsidy/v1/firm_facts.proto) minus ``synced_at``, so the store can
keep them as text and ``facts_to_proto`` can publish them; ``fold`` never
mutates its input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from subsidy.contracts.codec import BadInput, parse_date, parse_firm
from subsidy.core import credit_code as credit_codes

#: What a change may say (docs/data-platform.md, "Kinds of change").
KINDS = (
    "FIRM",  # the firm's whole facts: a firm new to the feed, or a correction of everything
    "PROFILE",  # name, kinds, introduced_on (any of them)
    "REGISTRATION",  # 工商登记 in or out of the district
    "TAX_REGISTRATION",  # 税务登记 in or out of the district
    "LEGAL_PERSON",  # 独立法人 or not
    "CONTACTS",
    "RECOGNITION_AWARDED",
    "RECOGNITION_WITHDRAWN",
    "REVENUE",  # annual revenue from tax data, fen
    "IDENTIFIER_USAGE",  # identifier registrations and resolutions in a year
)

#: Recognition kinds (firm_facts.proto Recognition.kind).
RECOGNITION_KINDS = (
    "PLATFORM_RATING",
    "LIANGHUA_GRADE",
    "DCMM_LEVEL",
    "SCENARIO",
    "WORKSHOP",
    "FACTORY",
    "PARK_RATING",
    "IDENTIFIER_NODE",
    "INNOVATION_CARRIER",
)

#: A change may be dated ahead (held until its day), but not absurdly so.
MAX_DAYS_AHEAD = 366
MAX_TEXT = 200
MAX_FEN = 10**15  # a firm's annual revenue in fen: far above any real one, far below int64
MIN_YEAR = 2000


class BadChange(ValueError):
    """A change registry-sync cannot use; ``field`` names what is wrong (for the dead letter)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_text(obj: Any, field: str) -> None:
    """BadChange when a string anywhere in ``obj`` (a key or a value) holds a
    lone UTF-16 surrogate: JSON's ``\\udXXX`` escapes decode to one, which is
    no Unicode text and cannot be written as UTF-8 (protobuf, the outbox).
    Iterative: a document nested as deep as the JSON parser allows is walked
    without recursion."""
    stack: list[tuple[Any, str]] = [(obj, field)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                raise BadChange(where, "holds a lone UTF-16 surrogate (\\udXXX): not Unicode text")
        elif isinstance(item, dict):
            for key, value in item.items():
                stack.append((key, where))
                stack.append((value, f"{where}.{key}" if isinstance(key, str) and key.isascii() else where))
        elif isinstance(item, list):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(item))


@dataclasses.dataclass(frozen=True)
class Change:
    """One validated change of the feed."""

    sequence: int
    credit_code: str
    kind: str
    effective_on: dt.date
    data: Mapping[str, Any]  # normalised: JSON-able, validated for the kind

    def to_json(self) -> str:
        return json.dumps(
            {
                "sequence": self.sequence,
                "credit_code": self.credit_code,
                "kind": self.kind,
                "effective_on": self.effective_on.isoformat(),
                "data": dict(self.data),
            },
            ensure_ascii=False,
            sort_keys=True,
        )


def sequence_of(obj: Any) -> int | None:
    """The change's sequence if it has a usable one (for a dead letter's id), else None."""
    if isinstance(obj, dict):
        seq = obj.get("sequence")
        if type(seq) is int and seq > 0:
            return seq
    return None


def credit_code_of(obj: Any) -> str:
    """The change's credit code as sent (for a dead letter's key), "" if none is a string."""
    code = obj.get("credit_code") if isinstance(obj, dict) else None
    return code[:64] if isinstance(code, str) else ""


def _int(value: Any, field: str, low: int, high: int) -> int:
    if type(value) is not int:  # bool and float refused: money and counts are whole numbers
        raise BadChange(field, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise BadChange(field, f"must be between {low} and {high}, got {value}")
    return value


def _str(value: Any, field: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadChange(field, f"must be a string, got {value!r}")
    if len(value) > limit:
        raise BadChange(field, f"is longer than {limit} characters")
    if required and not value.strip():
        raise BadChange(field, "is required")
    return value


def _bool(value: Any, field: str) -> bool:
    if value is not True and value is not False:
        raise BadChange(field, f"must be true or false, got {value!r}")
    return value


def _date(value: Any, field: str, *, required: bool = True) -> dt.date | None:
    try:
        day = parse_date(value, field)
    except BadInput as exc:
        raise BadChange(field, exc.problem) from None
    if day is None and required:
        raise BadChange(field, "is required (YYYY-MM-DD)")
    return day


def _object(value: Any, field: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadChange(field, f"must be an object, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise BadChange(f"{field}.{unknown[0]}", "unknown field")
    return value


def _contacts(value: Any, field: str) -> dict[str, str]:
    obj = _object(value if value is not None else {}, field, frozenset({"email", "phone", "webhook_url"}))
    return {k: _str(obj.get(k), f"{field}.{k}") for k in ("email", "phone", "webhook_url")}


def _recognition(value: Any, field: str, effective_on: dt.date) -> dict[str, str]:
    obj = _object(value, field, frozenset({"kind", "level", "reference", "awarded_on", "issuer"}))
    kind = obj.get("kind")
    if kind not in RECOGNITION_KINDS:
        raise BadChange(f"{field}.kind", f"must be one of {', '.join(RECOGNITION_KINDS)}, got {kind!r}")
    awarded = _date(obj.get("awarded_on"), f"{field}.awarded_on")
    assert awarded is not None
    if awarded > effective_on:
        raise BadChange(
            f"{field}.awarded_on",
            f"{awarded} is after the change's effective_on {effective_on}: a fact from the future",
        )
    return {
        "kind": kind,
        "level": _str(obj.get("level"), f"{field}.level", required=True),
        "reference": _str(obj.get("reference"), f"{field}.reference", required=True),
        "awarded_on": awarded.isoformat(),
        "issuer": _str(obj.get("issuer"), f"{field}.issuer"),
    }


def _revenue(value: Any, field: str, effective_on: dt.date) -> dict[str, int]:
    obj = _object(value, field, frozenset({"year", "revenue_fen"}))
    year = _int(obj.get("year"), f"{field}.year", MIN_YEAR, effective_on.year)
    return {"year": year, "revenue_fen": _int(obj.get("revenue_fen"), f"{field}.revenue_fen", 0, MAX_FEN)}


def _usage(value: Any, field: str, effective_on: dt.date) -> dict[str, int]:
    obj = _object(value, field, frozenset({"year", "registrations", "resolutions"}))
    return {
        "year": _int(obj.get("year"), f"{field}.year", MIN_YEAR, effective_on.year),
        "registrations": _int(obj.get("registrations"), f"{field}.registrations", 0, MAX_FEN),
        "resolutions": _int(obj.get("resolutions"), f"{field}.resolutions", 0, MAX_FEN),
    }


_FIRM_FIELDS = frozenset(
    {
        "credit_code",
        "name",
        "kinds",
        "registered_in_district",
        "tax_registered_in_district",
        "independent_legal_person",
        "introduced_on",
        "contacts",
        "recognitions",
        "revenues",
        "identifier_usage",
    }
)


def parse_firm_facts(value: Any, field: str, credit_code: str, effective_on: dt.date) -> dict[str, Any]:
    """A whole firm (FIRM change data, or a snapshot entry) as facts, without
    ``as_of`` and ``feed_sequence`` (the caller sets them)."""
    obj = _object(value, field, _FIRM_FIELDS | {"as_of", "feed_sequence"})
    code = obj.get("credit_code", credit_code)
    if code != credit_code:
        raise BadChange(f"{field}.credit_code", f"{code!r} is not the change's credit code {credit_code}")
    basic = {k: obj[k] for k in ("name", "kinds", "introduced_on", *_FLAGS) if k in obj}
    try:
        firm = parse_firm({"credit_code": credit_code, **basic}, field)
    except BadInput as exc:
        raise BadChange(exc.path, exc.problem) from None
    if firm.introduced_on is not None and firm.introduced_on > effective_on:
        raise BadChange(f"{field}.introduced_on", f"{firm.introduced_on} is after effective_on {effective_on}")
    for flag in _FLAGS:
        if flag not in obj:
            raise BadChange(f"{field}.{flag}", "is required (true or false)")
    lists: dict[str, list[Any]] = {}
    parsers: tuple[tuple[str, Any], ...] = (
        ("recognitions", _recognition),
        ("revenues", _revenue),
        ("identifier_usage", _usage),
    )
    for name, parse in parsers:
        raw = obj.get(name) or []
        if not isinstance(raw, list):
            raise BadChange(f"{field}.{name}", "must be a list")
        if len(raw) > 500:
            raise BadChange(f"{field}.{name}", "has more than 500 entries")
        lists[name] = [parse(item, f"{field}.{name}[{i}]", effective_on) for i, item in enumerate(raw)]
    facts = empty_facts(credit_code)
    facts.update(
        name=_str(firm.name, f"{field}.name", required=True),
        kinds=list(firm.kinds),
        registered_in_district=firm.registered_in_district,
        tax_registered_in_district=firm.tax_registered_in_district,
        independent_legal_person=firm.independent_legal_person,
        introduced_on=firm.introduced_on.isoformat() if firm.introduced_on else "",
        contacts=_contacts(obj.get("contacts"), f"{field}.contacts"),
    )
    for rec in lists["recognitions"]:
        facts = _award(facts, rec)
    for rev in lists["revenues"]:
        facts = _by_year(facts, "revenues", rev)
    for use in lists["identifier_usage"]:
        facts = _by_year(facts, "identifier_usage", use)
    return facts


_FLAGS = ("registered_in_district", "tax_registered_in_district", "independent_legal_person")


def _data(kind: str, raw: Any, code: str, effective_on: dt.date) -> dict[str, Any]:
    field = "data"
    if kind == "FIRM":
        return parse_firm_facts(raw, field, code, effective_on)
    if kind in ("REGISTRATION", "TAX_REGISTRATION"):
        obj = _object(raw, field, frozenset({"in_district"}))
        return {"in_district": _bool(obj.get("in_district"), f"{field}.in_district")}
    if kind == "LEGAL_PERSON":
        obj = _object(raw, field, frozenset({"independent"}))
        return {"independent": _bool(obj.get("independent"), f"{field}.independent")}
    if kind == "CONTACTS":
        return _contacts(raw, field)
    if kind == "PROFILE":
        obj = _object(raw, field, frozenset({"name", "kinds", "introduced_on"}))
        if not obj:
            raise BadChange(field, "a PROFILE change names at least one of name, kinds, introduced_on")
        out: dict[str, Any] = {}
        if "name" in obj:
            out["name"] = _str(obj["name"], f"{field}.name", required=True)
        if "kinds" in obj:
            try:
                out["kinds"] = list(parse_firm({"credit_code": code, "kinds": obj["kinds"]}, field).kinds)
            except BadInput as exc:
                raise BadChange(exc.path, exc.problem) from None
        if "introduced_on" in obj:
            day = _date(obj["introduced_on"], f"{field}.introduced_on", required=False)
            out["introduced_on"] = day.isoformat() if day else ""
        return out
    if kind == "RECOGNITION_AWARDED":
        return _recognition(raw, field, effective_on)
    if kind == "RECOGNITION_WITHDRAWN":
        obj = _object(raw, field, frozenset({"kind", "reference"}))
        rec_kind = obj.get("kind")
        if rec_kind not in RECOGNITION_KINDS:
            raise BadChange(f"{field}.kind", f"must be one of {', '.join(RECOGNITION_KINDS)}, got {rec_kind!r}")
        return {"kind": rec_kind, "reference": _str(obj.get("reference"), f"{field}.reference", required=True)}
    if kind == "REVENUE":
        return _revenue(raw, field, effective_on)
    if kind == "IDENTIFIER_USAGE":
        return _usage(raw, field, effective_on)
    raise BadChange("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")  # pragma: no cover - checked before


_CHANGE_FIELDS = frozenset({"sequence", "credit_code", "kind", "effective_on", "recorded_at", "data"})


def parse_change(obj: Any, today: dt.date) -> Change:
    """A change of the feed, validated; BadChange names the field otherwise.
    ``today`` (Songjiang, the injected clock) bounds how far ahead it may be dated."""
    if not isinstance(obj, dict):
        raise BadChange("change", f"must be a JSON object, got {type(obj).__name__}")
    check_text(obj, "change")
    unknown = sorted(set(obj) - _CHANGE_FIELDS)
    if unknown:
        raise BadChange(unknown[0], "unknown field")
    sequence = obj.get("sequence")
    if type(sequence) is not int or sequence <= 0:
        raise BadChange("sequence", f"must be a positive whole number, got {sequence!r}")
    code = obj.get("credit_code")
    if not isinstance(code, str) or not code:
        raise BadChange("credit_code", "is required")
    try:
        credit_codes.validate(code)
    except credit_codes.InvalidCreditCode as exc:
        raise BadChange("credit_code", f"not a valid unified social credit code: {exc}") from None
    kind = obj.get("kind")
    if kind not in KINDS:
        raise BadChange("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    effective_on = _date(obj.get("effective_on"), "effective_on")
    assert effective_on is not None
    if (effective_on - today).days > MAX_DAYS_AHEAD:
        raise BadChange("effective_on", f"{effective_on} is more than {MAX_DAYS_AHEAD} days after today ({today})")
    if "data" not in obj:
        raise BadChange("data", "is required")
    return Change(sequence, code, kind, effective_on, _data(kind, obj["data"], code, effective_on))


# ------------------------------------------------------------------------------- the fold


def empty_facts(credit_code: str) -> dict[str, Any]:
    return {
        "credit_code": credit_code,
        "name": "",
        "as_of": "",
        "registered_in_district": False,
        "tax_registered_in_district": False,
        "independent_legal_person": False,
        "kinds": [],
        "introduced_on": "",
        "recognitions": [],
        "revenues": [],
        "identifier_usage": [],
        "contacts": {"email": "", "phone": "", "webhook_url": ""},
        "feed_sequence": 0,
    }


def _award(facts: dict[str, Any], rec: Mapping[str, str]) -> dict[str, Any]:
    kept = [r for r in facts["recognitions"] if (r["kind"], r["reference"]) != (rec["kind"], rec["reference"])]
    kept.append(dict(rec))
    kept.sort(key=lambda r: (r["kind"], r["awarded_on"], r["reference"]))
    return {**facts, "recognitions": kept}


def _by_year(facts: dict[str, Any], name: str, entry: Mapping[str, int]) -> dict[str, Any]:
    kept = [e for e in facts[name] if e["year"] != entry["year"]]
    kept.append(dict(entry))
    kept.sort(key=lambda e: e["year"])
    return {**facts, name: kept}


def fold(facts: Mapping[str, Any] | None, change: Change) -> dict[str, Any]:
    """The firm's facts after ``change`` (a new dict). ``facts`` None: the
    firm is new, which only a FIRM change may say (``UnknownFirm`` otherwise)."""
    if facts is None:
        if change.kind != "FIRM":
            raise BadChange(
                "credit_code",
                f"unknown firm {change.credit_code}: the feed has not introduced it (no FIRM change or "
                "snapshot entry before this change)",
            )
        facts = empty_facts(change.credit_code)
    d = change.data
    out = dict(facts)
    if change.kind == "FIRM":
        out = {**dict(d), "recognitions": list(d["recognitions"]), "contacts": dict(d["contacts"])}
    elif change.kind == "REGISTRATION":
        out["registered_in_district"] = d["in_district"]
    elif change.kind == "TAX_REGISTRATION":
        out["tax_registered_in_district"] = d["in_district"]
    elif change.kind == "LEGAL_PERSON":
        out["independent_legal_person"] = d["independent"]
    elif change.kind == "CONTACTS":
        out["contacts"] = dict(d)
    elif change.kind == "PROFILE":
        out.update(d)
    elif change.kind == "RECOGNITION_AWARDED":
        out = _award(out, d)
    elif change.kind == "RECOGNITION_WITHDRAWN":
        out["recognitions"] = [
            r for r in out["recognitions"] if (r["kind"], r["reference"]) != (d["kind"], d["reference"])
        ]
    elif change.kind == "REVENUE":
        out = _by_year(out, "revenues", d)
    elif change.kind == "IDENTIFIER_USAGE":
        out = _by_year(out, "identifier_usage", d)
    out["credit_code"] = change.credit_code
    previous_as_of = str(facts.get("as_of") or "")
    out["as_of"] = max(previous_as_of, change.effective_on.isoformat())
    out["feed_sequence"] = max(int(facts.get("feed_sequence") or 0), change.sequence)
    return out


def canonical(facts: Mapping[str, Any]) -> str:
    """The facts as stored and compared: sorted keys, no spaces."""
    return json.dumps(facts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
