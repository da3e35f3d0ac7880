"""第11条 (二级节点): a secondary identifier-resolution node connected to the
national top-level node — 30万, once per node."""

from __future__ import annotations

from typing import ClassVar

from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, ClaimFields, Clause, Inputs, flagged_award
from subsidy.core.domain import value


@value
class IdentifierNodeClaim:
    KEY: ClassVar[str] = "identifier_node"
    CLAUSE: ClassVar[str] = "11.node"
    node_id: str = ""
    connected_to_national_top_node: bool = False


CLAUSE = Clause(
    claim=IdentifierNodeClaim,
    proto_field_number=21,
    parameters={**ELIGIBLE_KINDS, "award_fen": "fen", **SCHEDULE},
    rule=flagged_award(
        "connected_to_national_top_node",
        "NODE_NOT_CONNECTED",
        "二级节点未完成与国家顶级节点对接",
        "标识解析二级节点完成与国家顶级节点对接",
    ),
    fields=ClaimFields(identifiers=("node_id",)),
    inputs=Inputs(data_platform=("node_id", "connected_to_national_top_node")),
)
