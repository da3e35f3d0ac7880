"""The console's route table (``routes.yaml``): which roles may open each
page or send each form. Loaded once at start; a malformed table refuses to
start, naming the route."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from subsidy.services.console.model import ROLES, Forbidden, Person

ROUTES_FILE = Path(__file__).with_name("routes.yaml")
FIRM_BINDINGS = ("path", "record", "query", "any")


@dataclasses.dataclass(frozen=True)
class Route:
    name: str
    path: str
    method: str
    roles: frozenset[str] | None  # None: public
    rpcs: tuple[str, ...] = ()
    firm: str = ""
    rpcs_by_role: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def rpcs_of(self, role: str) -> tuple[str, ...]:
        return self.rpcs + dict(self.rpcs_by_role).get(role, ())

    @property
    def public(self) -> bool:
        return self.roles is None

    def admits(self, person: Person) -> bool:
        return self.roles is None or person.role in self.roles

    def check(self, person: Person) -> None:
        if not self.admits(person):
            raise Forbidden(f"“{person.role_name}”无权访问此页面。")


def load_routes(path: Path = ROUTES_FILE) -> dict[str, Route]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, Route] = {}
    for name, spec in (data.get("routes") or {}).items():
        where = f"{path.name}: route {name}"
        method = str(spec.get("method", "")).upper()
        if method not in ("GET", "POST") or not str(spec.get("path", "")).startswith("/"):
            raise ValueError(f"{where}: needs a path starting with / and method GET or POST")
        raw_roles = spec.get("roles")
        roles: frozenset[str] | None
        if raw_roles == "public":
            roles = None
        else:
            roles = frozenset(raw_roles or ())
            unknown = roles - set(ROLES)
            if not roles or unknown:
                raise ValueError(f"{where}: roles is 'public' or a list of {', '.join(ROLES)}")
        firm = str(spec.get("firm", ""))
        if roles is not None and "ENTERPRISE" in roles and firm not in FIRM_BINDINGS:
            raise ValueError(f"{where}: ENTERPRISE allowed, so firm must be one of {', '.join(FIRM_BINDINGS)}")
        by_role = tuple((str(r), tuple(m)) for r, m in (spec.get("rpcs_by_role") or {}).items())
        if roles is not None and any(r not in roles for r, _ in by_role):
            raise ValueError(f"{where}: rpcs_by_role names a role the route does not admit")
        out[name] = Route(name, spec["path"], method, roles, tuple(spec.get("rpcs") or ()), firm, by_role)
    return out
