"""The access policy (access.yaml, or SUBSIDY_AUTH_POLICY_FILE): which roles
may call which RPC, and how an ENTERPRISE call is tied to its credit code."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

ROLES = ("ENTERPRISE", "PORTAL", "REVIEWER", "FINANCE", "OPERATOR")
DEFAULT_POLICY_FILE = Path(__file__).with_name("access.yaml")


class PolicyError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Rule:
    roles: frozenset[str] = frozenset()
    public: bool = False
    enterprise_field: str = ""  # dotted request field equal to the caller's credit code
    enterprise_servicer: bool = False  # the servicer checks the loaded record

    def allows_role(self, role: str) -> bool:
        return self.public or role in self.roles


@dataclasses.dataclass(frozen=True)
class AccessPolicy:
    rules: dict[str, dict[str, Rule]]  # service -> method ("*" for all) -> rule
    source: str = ""

    def rule(self, service: str, method: str) -> Rule | None:
        methods = self.rules.get(service)
        if methods is None:
            return None
        return methods.get(method) or methods.get("*")

    @classmethod
    def load(cls, path: str | Path | None = None) -> AccessPolicy:
        path = Path(path) if path else DEFAULT_POLICY_FILE
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"access policy {path}: {exc}") from None
        return cls.from_data(data, str(path))

    @classmethod
    def from_data(cls, data: Any, source: str = "") -> AccessPolicy:
        if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
            raise PolicyError(f"access policy {source}: needs a 'services' mapping")
        rules: dict[str, dict[str, Rule]] = {}
        for service, methods in data["services"].items():
            if not isinstance(methods, dict):
                raise PolicyError(f"access policy {source}: {service}: needs a mapping of methods")
            rules[service] = {}
            for method, spec in methods.items():
                where = f"access policy {source}: {service}/{method}"
                if not isinstance(spec, dict):
                    raise PolicyError(f"{where}: needs a mapping")
                unknown = set(spec) - {"roles", "public", "enterprise"}
                if unknown:
                    raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")
                roles = frozenset(spec.get("roles") or ())
                bad = roles - set(ROLES)
                if bad:
                    raise PolicyError(f"{where}: unknown roles {sorted(bad)}")
                enterprise = spec.get("enterprise")
                field, servicer = "", False
                if enterprise == "servicer":
                    servicer = True
                elif enterprise == "any":  # not firm-specific data (the 名录, the policy)
                    pass
                elif isinstance(enterprise, dict) and isinstance(enterprise.get("field"), str):
                    field = enterprise["field"]
                elif enterprise is not None:
                    raise PolicyError(f"{where}: enterprise is 'servicer', 'any' or {{field: <request field>}}")
                if "ENTERPRISE" in roles and not (field or servicer or enterprise == "any"):
                    raise PolicyError(
                        f"{where}: ENTERPRISE is allowed, so 'enterprise' must say how the call "
                        "is tied to the caller's credit code"
                    )
                rules[service][str(method)] = Rule(
                    roles=roles,
                    public=bool(spec.get("public", False)),
                    enterprise_field=field,
                    enterprise_servicer=servicer,
                )
        return cls(rules=rules, source=source)


def field_value(message: Any, dotted: str) -> str:
    """``application.firm.credit_code`` of a protobuf message ("" when unset)."""
    value = message
    for part in dotted.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            return ""
    return value if isinstance(value, str) else ""
