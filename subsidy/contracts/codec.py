"""The edge: the JSON contract and protobuf messages to and from domain values.

``parse_application`` is the single validator of an application, whatever it
came in as: a JSON object (calculator, tests), or a protobuf message (gRPC,
Kafka), which is first turned into the same plain form. It follows the proto3
JSON mapping (snake_case or lowerCamelCase names, 64-bit integers as numbers
or strings, null as absent) and adds what the contract requires on top: real
dates, valid credit codes, identifiers by their grammar (``parse_identifier``),
enumerated values from their lists, amounts >= 0, exactly one claim, bounded
sizes. Any violation raises ``BadInput`` naming
the field, and nothing is built.

Which claims exist, and what is particular about each claim's fields (which
are required, which are identifiers or int32, which are credit codes), comes
from the clause modules (``subsidy.core.clauses``); this module checks, when
it is imported, that each declared claim is in the ``Application.claim``
oneof of the generated protobuf code with the declared number and the same
fields, and stops with ``ClauseError`` naming the clause if not.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from subsidy.core import clauses, domain
from subsidy.core import credit_code as credit_codes
from subsidy.core.clauses import CLAIM_BY_KEY, ClauseError
from subsidy.core.domain import Application, Decision, Entitlement, Firm, Reason

MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 256
MAX_KINDS = len(domain.FIRM_KINDS)
MAX_REVENUE_YEARS = 50
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

# Claim fields that must be given (a protobuf default would be meaningless),
# by claim key, as each clause module declares them (ClaimFields.required).
REQUIRED_FIELDS = {c.key: c.fields.required for c in clauses.ALL if c.fields.required}
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
# The grammar of an identifier: ``application_id`` and every claim field a
# clause lists in ``ClaimFields.identifiers`` (platform_id, certificate_id, ...).
# 1 to MAX_ID_CHARS characters, ASCII letters, digits and ``- _ . : /``,
# starting with a letter or a digit. Ids travel into e-mail headers, CSV
# exports, log lines and ledger scopes: no spaces, no control characters, no
# leading ``= + - @``. Defined here once; the JSON and the protobuf paths
# both read through parse_application (docs/contract.md, "Identifiers").
ID_CHARACTERS = "letters A-Z a-z, digits 0-9 and - _ . : /"
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
_INT_RE = re.compile(r"-?\d+\Z")


class BadInput(ValueError):
    """An application that breaks the contract. ``path`` names the field."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


# ---------------------------------------------------------------- converters


def _bool(value: Any, path: str) -> bool:
    if value is None:
        return False
    if value is True or value is False:
        return value
    raise BadInput(path, f"must be true or false, got {value!r}")


def _int(value: Any, path: str, maximum: int = INT64_MAX) -> int:
    if value is None:
        return 0
    if type(value) is int:
        number = value
    elif isinstance(value, str) and _INT_RE.match(value) or isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise BadInput(path, f"must be a whole number, got {value!r}")
    if number < 0:
        raise BadInput(path, f"must not be negative, got {number}")
    if number > maximum:
        raise BadInput(path, f"is too large ({number} > {maximum})")
    return number


def parse_date(value: Any, path: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadInput(path, f"must be a date written YYYY-MM-DD, got {value!r}")
    day = _iso_date(value)
    if day is None:
        if not _DATE_RE.match(value):
            raise BadInput(path, f"must be a date written YYYY-MM-DD, got {value!r}")
        raise BadInput(path, f"is not a real date: {value}")
    return day


# The same few hundred dates recur across applications.
@functools.lru_cache(maxsize=1 << 14)
def _iso_date(text: str) -> dt.date | None:
    if not _DATE_RE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _text(value: Any, path: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInput(path, f"must be a string, got {value!r}")
    if len(value) > limit:
        raise BadInput(path, f"is longer than {limit} characters")
    return value


def parse_identifier(value: Any, path: str) -> str:
    """An identifier as the grammar above allows it ("" when not given)."""
    text = _text(value, path, MAX_ID_CHARS)
    if text and _ID_RE.fullmatch(text) is None:
        if not _ID_RE.match(text):
            where = f"must start with a letter or a digit, got {text[0]!r}"
        else:
            bad = next(c for c in text if not (c.isascii() and (c.isalnum() or c in "-_.:/")))
            where = f"contains {bad!r} at position {text.index(bad)}"
        raise BadInput(path, f"is not an identifier ({ID_CHARACTERS}, starting with a letter or a digit): {where}")
    return text


def _enum(choices: tuple, value: Any, path: str) -> Any:
    if value is None or value == "":
        return None
    if type(value) is bool or value not in choices:
        listed = ", ".join(str(c) for c in choices)
        raise BadInput(path, f"unknown value {value!r}; expected one of {listed}")
    return value


def _revenue_by_year(value: Any, path: str) -> dict[int, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(path, "must be an object of year to amount in fen")
    if len(value) > MAX_REVENUE_YEARS:
        raise BadInput(path, f"has more than {MAX_REVENUE_YEARS} years")
    revenue = {}
    for year, amount in value.items():
        if not (isinstance(year, str) and len(year) == 4 and year.isdigit()):
            raise BadInput(path, f"key {year!r} is not a four-digit year")
        revenue[int(year)] = _int(amount, f"{path}.{year}")
    return revenue


def _converter(name: str, hint: Any, declared: clauses.ClaimFields) -> Callable[[Any, str], Any]:
    """The converter for one claim field, from its type hint and what its
    clause declares about it."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _converter(name, non_none[0], declared)
    if hint is bool:
        return _bool
    # partial, not lambda: one Python call per field instead of two.
    if hint is int:
        maximum = INT32_MAX if name in declared.int32 else INT64_MAX
        return functools.partial(_int, maximum=maximum)
    if hint is str:
        if name in declared.identifiers:
            return parse_identifier
        return functools.partial(_text, limit=MAX_TEXT_CHARS)
    if hint is dt.date:
        return parse_date
    if origin is Literal:
        return functools.partial(_enum, args)
    if origin in (collections.abc.Mapping, dict):
        return _revenue_by_year
    raise TypeError(f"no converter for field {name}: {hint!r}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How to read one JSON object, found at ``path``, into a dataclass."""

    cls: type
    path: str
    # json name -> (field, the field's path in error messages, converter);
    # the paths are spelled out once here rather than for every value read.
    converters: dict[str, tuple[str, str, Callable[[Any, str], Any]]]
    required: tuple[str, ...]
    credit_codes: tuple[str, ...]

    @classmethod
    def of(cls, clause: clauses.Clause) -> _Spec:
        target, path, declared = clause.claim, clause.key, clause.fields
        hints = typing.get_type_hints(target)
        converters = {}
        for f in dataclasses.fields(target):
            entry = (f.name, f"{path}.{f.name}", _converter(f.name, hints[f.name], declared))
            converters[f.name] = entry
            converters.setdefault(_camel(f.name), entry)
        return cls(target, path, converters, declared.required, declared.credit_codes)

    def read(self, obj: Any) -> Any:
        if not isinstance(obj, dict):
            raise BadInput(self.path, f"must be an object, got {_kind(obj)}")
        values = {}
        for key, raw in obj.items():
            entry = self.converters.get(key)
            if entry is None:
                raise BadInput(f"{self.path}.{key}", "unknown field")
            name, field_path, conv = entry
            if name in values:
                raise BadInput(field_path, "given twice (snake_case and lowerCamelCase)")
            values[name] = conv(raw, field_path)
        for name in self.required:
            if values.get(name) in (None, ""):
                raise BadInput(f"{self.path}.{name}", "is required")
        for name in self.credit_codes:
            code = values.get(name)
            if code:
                try:
                    credit_codes.validate(code)
                except credit_codes.InvalidCreditCode as exc:
                    raise BadInput(f"{self.path}.{name}", f"not a valid unified social credit code: {exc}") from None
        return self.cls(**values)


_CLAIM_SPECS = {clause.key: _Spec.of(clause) for clause in clauses.ALL}
_CLAIM_NAMES = {**{k: k for k in CLAIM_BY_KEY}, **{_camel(k): k for k in CLAIM_BY_KEY}}
_APP_FIELDS = {"application_id", "submitted_on", "firm", "decided_on"}
_APP_NAMES = {**{k: k for k in _APP_FIELDS}, **{_camel(k): k for k in _APP_FIELDS}}
_FIRM_FIELDS = {f.name for f in dataclasses.fields(Firm)}
_FIRM_NAMES = {**{k: k for k in _FIRM_FIELDS}, **{_camel(k): k for k in _FIRM_FIELDS}}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), repr(value))


def parse_firm(obj: Any, path: str = "firm") -> Firm:
    if not isinstance(obj, dict):
        raise BadInput(path, f"must be an object, got {_kind(obj)}")
    if obj.keys() <= _FIRM_FIELDS:
        # All names snake_case and known: nothing to rename, nothing given twice.
        given = obj
    else:
        given = {}
        for key, raw in obj.items():
            name = _FIRM_NAMES.get(key)
            if name is None:
                raise BadInput(f"{path}.{key}", "unknown field")
            if name in given:
                raise BadInput(f"{path}.{name}", "given twice (snake_case and lowerCamelCase)")
            given[name] = raw
    code = given.get("credit_code")
    if code in (None, ""):
        raise BadInput(f"{path}.credit_code", "is required")
    try:
        credit_codes.validate(code)
    except credit_codes.InvalidCreditCode as exc:
        raise BadInput(f"{path}.credit_code", f"not a valid unified social credit code: {exc}") from None
    kinds = _firm_kinds(given.get("kinds"), path)
    # Field paths are spelled out only when a value is refused; a firm that
    # passes (nearly all of them) costs no string building.
    name = given.get("name")
    if type(name) is not str or len(name) > MAX_TEXT_CHARS:
        name = _text(name, f"{path}.name", MAX_TEXT_CHARS)
    flags = []
    for flag in _FIRM_FLAGS:
        value = given.get(flag)
        if value is not True and value is not False:
            value = _bool(value, f"{path}.{flag}")
        flags.append(value)
    introduced = given.get("introduced_on")
    if introduced is not None:
        introduced = parse_date(introduced, f"{path}.introduced_on")
    return Firm(code, name, kinds, *flags, introduced)


_FIRM_FLAGS = ("registered_in_district", "tax_registered_in_district", "independent_legal_person")
_FIRM_KIND_SET = frozenset(domain.FIRM_KINDS)


def _firm_kinds(raw: Any, path: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadInput(f"{path}.kinds", "must be a list")
    if len(raw) > MAX_KINDS:
        raise BadInput(f"{path}.kinds", f"has more than {MAX_KINDS} entries")
    kinds = tuple(raw)
    try:
        all_known = _FIRM_KIND_SET.issuperset(kinds)
    except TypeError:  # an unhashable entry (a list or an object): refused below
        all_known = False
    if all_known:
        return kinds
    # Some entry is unknown or empty: check one by one, so the first fault is named.
    kinds = tuple(_enum(domain.FIRM_KINDS, k, f"{path}.kinds[{i}]") for i, k in enumerate(raw))
    if None in kinds:
        raise BadInput(f"{path}.kinds", "has an empty entry")
    return kinds


def _top_level(obj: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """The application's own fields by snake_case name, and the claims given."""
    top: dict[str, Any] = {}
    claims: list[tuple[str, Any]] = []
    for key, raw in obj.items():
        name = _APP_NAMES.get(key)
        if name is not None:
            if name in top:
                raise BadInput(name, "given twice (snake_case and lowerCamelCase)")
            top[name] = raw
            continue
        claim_key = _CLAIM_NAMES.get(key)
        if claim_key is None:
            raise BadInput(key, "unknown field")
        if raw is not None:
            claims.append((claim_key, raw))
    return top, claims


def parse_application(obj: Any) -> Application:
    """Validate one application in its JSON form; raise BadInput on any fault."""
    if not isinstance(obj, dict):
        raise BadInput("", f"an application must be a JSON object, got {_kind(obj)}")
    others = obj.keys() - _APP_FIELDS
    if len(others) == 1 and (key := others.pop()) in CLAIM_BY_KEY and obj[key] is not None:
        # The usual form: snake_case names and one claim, nothing to rename or refuse.
        top, claims = obj, [(key, obj[key])]
    else:
        top, claims = _top_level(obj)
    if len(claims) != 1:
        listed = ", ".join(CLAIM_BY_KEY)
        if not claims:
            raise BadInput("claim", f"no claim given; exactly one of: {listed}")
        raise BadInput("claim", f"exactly one claim allowed, got {len(claims)}: {', '.join(k for k, _ in claims)}")
    application_id = parse_identifier(top.get("application_id"), "application_id")
    if not application_id:
        raise BadInput("application_id", "is required")
    submitted_on = parse_date(top.get("submitted_on"), "submitted_on")
    if submitted_on is None:
        raise BadInput("submitted_on", "is required")
    if top.get("firm") is None:
        raise BadInput("firm", "is required")
    firm = parse_firm(top["firm"])
    claim_key, claim_raw = claims[0]
    claim = _CLAIM_SPECS[claim_key].read(claim_raw)
    return Application(
        application_id=application_id,
        submitted_on=submitted_on,
        firm=firm,
        claim=claim,
        decided_on=parse_date(top.get("decided_on"), "decided_on"),
    )


# ----------------------------------------------------------- to JSON (contract)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def application_to_json(app: Application) -> dict[str, Any]:
    """The contract's JSON form; empty values are left out, as proto3 JSON does."""
    firm = {
        f.name: _plain(getattr(app.firm, f.name))
        for f in dataclasses.fields(Firm)
        if getattr(app.firm, f.name) not in (None, "", (), False)
    }
    claim = {
        f.name: _plain(getattr(app.claim, f.name))
        for f in dataclasses.fields(app.claim)
        if getattr(app.claim, f.name) not in (None, "", 0, False, {})
    }
    out: dict[str, Any] = {
        "application_id": app.application_id,
        "submitted_on": app.submitted_on.isoformat(),
        "firm": firm,
    }
    if app.decided_on is not None:
        out["decided_on"] = app.decided_on.isoformat()
    out[app.claim.KEY] = claim
    return out


def reason_to_json(reason: Reason) -> dict[str, str]:
    return {"code": reason.code, "clause": reason.clause, "message": reason.message}


# ------------------------------------------------------------------- protobuf


@functools.cache
def _pb():
    # Not imported at the top: without `make proto` the JSON side still works,
    # and the first use of a message says what is missing.
    try:
        from subsidy.v1 import application_pb2, decision_pb2
    except ImportError as exc:  # pragma: no cover - exercised by a fresh checkout
        raise RuntimeError("generated protobuf code is missing: run `make proto`") from exc
    check_claims_in_proto(application_pb2.Application.DESCRIPTOR)
    return application_pb2, decision_pb2


_PROTO_FILE = "proto/subsidy/v1/application.proto"
# A claim field's kind (subsidy.core.clauses.claim_field_kinds) -> the proto
# scalar types that carry it as the contract says (docs/contract.md).
_PROTO_TYPES = {
    "bool": {"bool"},
    "int": {"int64", "int32"},
    "str": {"string"},
    "date": {"string"},  # ISO text, validated here
    "enum": {"string", "int32"},  # spelled as in the contract
    "map": {"map"},
}
_TYPE_NAMES = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    8: "bool",
    9: "string",
    11: "message",
    12: "bytes",
    13: "uint32",
    14: "enum",
    17: "sint32",
    18: "sint64",
}


def check_claims_in_proto(application: Any) -> None:
    """Each clause's claim is a field of the ``Application.claim`` oneof (the
    descriptor given) with its declared number, its message has the claim's
    fields in the same order and of fitting types, and the oneof holds no
    other claim; otherwise raise ClauseError naming the clause and the part."""
    oneof = application.oneofs_by_name["claim"].fields
    by_name = {fd.name: fd for fd in oneof}
    for clause in clauses.ALL:
        where = f"{clauses.where(clause)}: claim not in proto"
        fd = by_name.get(clause.key)
        declaration = f"`{clause.claim.__name__} {clause.key} = {clause.proto_field_number};`"
        if fd is None or fd.message_type is None:
            raise ClauseError(
                f"{where}: the Application.claim oneof in {_PROTO_FILE} has no message field {clause.key!r}; "
                f"add {declaration} and a message {clause.claim.__name__} with the claim's fields, then `make proto`"
            )
        if fd.number != clause.proto_field_number:
            raise ClauseError(
                f"{where}: {clause.key} is field {fd.number} of the oneof, the module declares "
                f"proto_field_number={clause.proto_field_number}"
            )
        kinds = clauses.claim_field_kinds(clause.claim)
        proto_fields = [f.name for f in fd.message_type.fields]
        if proto_fields != list(kinds):
            raise ClauseError(
                f"{where}: message {fd.message_type.name} has fields {proto_fields}, "
                f"the claim {clause.claim.__name__} has {list(kinds)} (same names, same order)"
            )
        for f in fd.message_type.fields:
            is_map = f.message_type is not None and f.message_type.GetOptions().map_entry
            proto_type = "map" if is_map else _TYPE_NAMES.get(f.type, str(f.type))
            if proto_type not in _PROTO_TYPES[kinds[f.name]] or (proto_type != "map" and f.is_repeated):
                raise ClauseError(
                    f"{where}: {fd.message_type.name}.{f.name} is {'repeated ' if f.is_repeated else ''}{proto_type} "
                    f"in proto, the claim field holds {kinds[f.name]}"
                )
            if proto_type == "int32" and kinds[f.name] == "int" and f.name not in clause.fields.int32:
                raise ClauseError(
                    f"{where}: {fd.message_type.name}.{f.name} is int32 in proto: "
                    f"list it in ClaimFields(int32=...) so larger values are refused at the edge"
                )
    unknown = [name for name in by_name if name not in clauses.BY_KEY]
    if unknown:
        raise ClauseError(
            f"{_PROTO_FILE}: Application.claim field(s) {', '.join(unknown)} have no clause module "
            f"under subsidy/core/clauses/ (a module named <claim key>.py declaring CLAUSE)"
        )


def _message_to_plain(message: Any) -> dict[str, Any]:
    """Set fields of a protobuf message as a dict, as its JSON form would hold them."""
    out: dict[str, Any] = {}
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            out[fd.name] = dict(value)
        elif fd.message_type is not None:
            out[fd.name] = [_message_to_plain(v) for v in value] if fd.is_repeated else _message_to_plain(value)
        elif fd.is_repeated:
            out[fd.name] = list(value)
        else:
            out[fd.name] = value
    return out


def application_from_proto(message: Any) -> Application:
    """Validate a protobuf Application exactly as its JSON form would be."""
    plain = _message_to_plain(message)
    chosen = message.WhichOneof("claim")
    if chosen is not None and chosen not in plain:
        # An empty claim message is still the claim the applicant chose.
        plain[chosen] = {}
    return parse_application(plain)


def application_to_proto(app: Application) -> Any:
    """The subsidy.v1.Application of a validated application, built field by
    field (no JSON detour: intake converts every submission, and
    ``json_format.ParseDict`` was half of its CPU). Serialized
    deterministically it is byte for byte what the JSON form parsed into a
    message gives (tests/unit/test_codec.py checks both ways)."""
    application_pb2, _ = _pb()
    firm = app.firm
    claim = app.claim
    claim_type, fields = _claim_builders()[type(claim)]
    values = {}
    for name, kind in fields:
        value = getattr(claim, name)
        if value is None:
            continue
        if kind is _DATE:
            value = value.isoformat()
        elif kind is _YEAR_MAP:
            value = {str(year): amount for year, amount in value.items()}
        values[name] = value
    return application_pb2.Application(
        application_id=app.application_id,
        submitted_on=app.submitted_on.isoformat(),
        firm=application_pb2.Firm(
            credit_code=firm.credit_code,
            name=firm.name,
            kinds=firm.kinds,
            registered_in_district=firm.registered_in_district,
            tax_registered_in_district=firm.tax_registered_in_district,
            independent_legal_person=firm.independent_legal_person,
            introduced_on=firm.introduced_on.isoformat() if firm.introduced_on is not None else "",
        ),
        decided_on=app.decided_on.isoformat() if app.decided_on is not None else "",
        # Set even when empty: an empty claim is still the claim chosen (the oneof).
        **{claim.KEY: claim_type(**values)},
    )


_DATE, _YEAR_MAP, _SCALAR = "date", "year map", "scalar"


@functools.cache
def _claim_builders() -> dict[type, tuple[type, tuple[tuple[str, str], ...]]]:
    """Claim dataclass -> (its protobuf message class, ((field, kind), ...)).
    Built once, from the type hints, as the JSON reader's specs are."""
    application_pb2, _ = _pb()
    claim_fields = application_pb2.Application.DESCRIPTOR.oneofs_by_name["claim"].fields
    messages = {fd.name: getattr(application_pb2, fd.message_type.name) for fd in claim_fields}
    builders = {}
    for key, cls in CLAIM_BY_KEY.items():
        hints = typing.get_type_hints(cls)
        fields = []
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if hint is dt.date or dt.date in args:
                kind = _DATE
            elif typing.get_origin(hint) in (collections.abc.Mapping, dict):
                kind = _YEAR_MAP
            else:
                kind = _SCALAR
            fields.append((f.name, kind))
        builders[cls] = (messages[key], tuple(fields))
    return builders


_LIMIT_TO_PROTO = {
    domain.LimitKind.CUMULATIVE_CAP: "LIMIT_KIND_CUMULATIVE_CAP",
    domain.LimitKind.ONCE: "LIMIT_KIND_ONCE",
}
_LIMIT_FROM_PROTO = {v: k for k, v in _LIMIT_TO_PROTO.items()}


def decision_to_proto(decision: Decision) -> Any:
    _, decision_pb2 = _pb()
    return decision_pb2.Decision(
        decision_id=decision.decision_id,
        application_id=decision.application_id,
        credit_code=decision.credit_code,
        clause=decision.clause,
        outcome=decision.outcome,
        max_award_fen=decision.max_award_fen,
        reasons=[decision_pb2.Reason(code=r.code, clause=r.clause, message=r.message) for r in decision.reasons],
        policy_version=decision.policy_version,
        decision_year=decision.decision_year,
        entitlements=[
            decision_pb2.Entitlement(
                scope=e.scope,
                limit=decision_pb2.LimitKind.Value(_LIMIT_TO_PROTO[e.limit]),
                amount_fen=e.amount_fen,
                cap_fen=e.cap_fen,
            )
            for e in decision.entitlements
        ],
        tranche_shares_percent=list(decision.tranche_shares_percent),
        submitted_on=decision.submitted_on.isoformat(),
        review_required=decision.review_required,
        review_reasons=list(decision.review_reasons),
        review=None
        if decision.review is None
        else decision_pb2.ReviewRecord(
            supersedes_decision_id=decision.review.supersedes_decision_id,
            item_id=decision.review.item_id,
            reviewers=list(decision.review.reviewers),
            basis=decision.review.basis,
            result=decision.review.result,
            decided_at=decision.review.decided_at,
        ),
        supersedes_decision_id=decision.supersedes_decision_id,
    )


def decision_from_proto(message: Any) -> Decision:
    _, decision_pb2 = _pb()
    if message.outcome not in domain.OUTCOMES:
        raise BadInput("outcome", f"unknown value {message.outcome!r}")
    submitted_on = parse_date(message.submitted_on, "submitted_on")
    if submitted_on is None:
        raise BadInput("submitted_on", "is required")
    entitlements = []
    for i, e in enumerate(message.entitlements):
        limit_name = decision_pb2.LimitKind.Name(e.limit) if e.limit in decision_pb2.LimitKind.values() else None
        if limit_name not in _LIMIT_FROM_PROTO:
            raise BadInput(f"entitlements[{i}].limit", f"unknown value {e.limit!r}")
        entitlements.append(Entitlement(e.scope, _LIMIT_FROM_PROTO[limit_name], e.amount_fen, e.cap_fen))
    return Decision(
        decision_id=message.decision_id,
        application_id=message.application_id,
        credit_code=message.credit_code,
        clause=message.clause,
        outcome=message.outcome,
        max_award_fen=message.max_award_fen,
        reasons=tuple(Reason(r.code, r.clause, r.message) for r in message.reasons),
        policy_version=message.policy_version,
        decision_year=message.decision_year,
        submitted_on=submitted_on,
        entitlements=tuple(entitlements),
        tranche_shares_percent=tuple(message.tranche_shares_percent),
        review_required=message.review_required,
        review_reasons=tuple(message.review_reasons),
        review=domain.ReviewRecord(
            supersedes_decision_id=message.review.supersedes_decision_id,
            item_id=message.review.item_id,
            reviewers=tuple(message.review.reviewers),
            basis=message.review.basis,
            result=message.review.result,
            decided_at=message.review.decided_at,
        )
        if message.HasField("review")
        else None,
        supersedes_decision_id=message.supersedes_decision_id,
    )


def message_to_json(message: Any) -> dict[str, Any]:
    """Protobuf JSON mapping with field names preserved, all fields printed,
    and 64-bit integers as JSON numbers (the contract shows numbers; fen
    amounts stay far below 2**53)."""
    from google.protobuf import json_format

    obj = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _int64_as_numbers(message.DESCRIPTOR, obj)


_INT64_TYPES = {3, 4, 6, 16, 18}  # TYPE_INT64, UINT64, FIXED64, SFIXED64, SINT64


def _int64_as_numbers(descriptor: Any, obj: dict[str, Any]) -> dict[str, Any]:
    for fd in descriptor.fields:
        if fd.name not in obj:
            continue
        value = obj[fd.name]
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            if value_fd.type in _INT64_TYPES:
                obj[fd.name] = {k: int(v) for k, v in value.items()}
        elif fd.message_type is not None:
            if isinstance(value, list):
                obj[fd.name] = [_int64_as_numbers(fd.message_type, v) for v in value]
            else:
                obj[fd.name] = _int64_as_numbers(fd.message_type, value)
        elif fd.type in _INT64_TYPES:
            obj[fd.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return obj


def decision_to_json(decision: Decision) -> dict[str, Any]:
    """The decision exactly as its protobuf JSON mapping prints it, less the
    review fields while they are unset: the calculator's JSON
    (../shared/policy/contract.md) is the rules' answer, and review is what
    people do after it."""
    obj = message_to_json(decision_to_proto(decision))
    if not decision.review_required and not decision.review_reasons:
        obj.pop("review_required", None)
        obj.pop("review_reasons", None)
    if decision.review is None:
        obj.pop("review", None)
    if not decision.supersedes_decision_id:
        obj.pop("supersedes_decision_id", None)
    return obj


# Checked now, not at the first message: a clause missing from the proto
# stops every process that imports the codec at start-up. Without generated
# code (before `make proto`) the JSON side still works and _pb() says so later.
try:
    import subsidy.v1.application_pb2  # noqa: F401
except ImportError:  # pragma: no cover - a fresh checkout
    pass
else:
    _pb()
