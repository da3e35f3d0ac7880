"""The services over gRPC, called as the signed-in person: every call
carries ``authorization: Bearer <the person's token>``, so each service's
own access policy (subsidy/platform/security/access.yaml) decides. A
refused call becomes one of the console's errors (model.py), in Chinese."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsidy.platform.grpc import balancing
from subsidy.services.console.model import (
    Conflict,
    ConsoleError,
    Forbidden,
    FormError,
    NotFound,
    Person,
    SignedOut,
    Unavailable,
)
from subsidy.v1 import (
    intake_pb2,
    intake_pb2_grpc,
    operations_pb2,
    operations_pb2_grpc,
    payout_pb2,
    payout_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    proposal_pb2,
    proposal_pb2_grpc,
    review_pb2,
    review_pb2_grpc,
)

TIMEOUT_SECONDS = 15.0

#: The Chinese label of a request field a service names in INVALID_ARGUMENT.
FIELD_LABELS = {
    "amount_fen": ("amount_yuan", "核定金额（元）"),
    "basis": ("basis", "核定依据"),
    "reasons": ("reasons", "理由"),
    "missing": ("missing", "须补充的材料"),
    "answer": ("answer", "答复"),
    "request_number": ("request_number", "补充材料要求的序号"),
    "reason": ("reason", "理由"),
    "application_id": ("application_id", "申请编号"),
    "tranche_ids": ("tranche_id", "拨付笔次"),
    "line_id": ("line_id", "公示行"),
    "credit_code": ("credit_code", "统一社会信用代码"),
    "resolution": ("resolution", "处理结论"),
    "due_from": ("due_from", "应付日期（起）"),
    "due_to": ("due_to", "应付日期（止）"),
    "page_token": ("page_token", "页码"),
    "from_year": ("from_year", "预算年度（起）"),
    "to_year": ("to_year", "预算年度（止）"),
    "letter_id": ("letter_id", "死信编号"),
    "topic": ("topic", "死信主题"),
    "state": ("state", "处理状态"),
    "firm_name": ("firm_name", "企业名称"),
    "clause": ("clause", "条款"),
    "filter": ("recoveries", "追回状态"),
    "version_id": ("version_id", "政策版本"),
    "policy_version": ("policy_version", "政策版本标识"),
    "subject": ("", "审核人员身份（令牌主体）"),
}


def translate(exc: grpc.RpcError, what: str) -> ConsoleError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return SignedOut("登录已失效，请重新登录。")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return Forbidden(f"{what}：服务拒绝了此操作（{details}）。")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"{what}：未找到（{details}）。")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return Conflict(f"{what}：当前状态下不能进行此操作（{details}）。")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        name, _, problem = details.partition(":")
        field, label = FIELD_LABELS.get(name.strip().split("[")[0], ("", name.strip() or "输入"))
        return FormError(field, label, f"服务不接受：{problem.strip() or details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"{what}：服务暂时不可用，请稍后再试。")
    return Unavailable(f"{what}：服务出错（{code.name}）。")


ADOPTING = "采纳政策版本"
ADOPTION_STATE = "政策版本采纳状态"
#: What eligibility's FAILED_PRECONDITION refusals of AdoptVersion mean
#: (subsidy/core/adoption.py, subsidy/core/versions.py check_adoptable),
#: said in Chinese before the service's own words.
ADOPTION_PRECONDITIONS = (
    ("was adopted at", "该版本已经采纳，不能再次采纳"),
    ("changed since you reviewed them", "该版本的文件在您审阅之后已经改变：请刷新本页，审阅现在的版本后再提交"),
    ("only a candidate is adopted", "只有候选版本可以采纳"),
    ("overlaps adopted version", "生效日期与已采纳的版本重叠"),
    ("is not after its base", "生效日期须晚于其基础版本的生效日期"),
    ("still claimed by", "仍有未完结的申请适用该版本停止执行的条款"),
    ("no policy versions register", "资格审查服务没有政策版本登记表"),
    # eligibility reads the open applications from intake itself (ADR 0021); short of all of them, nothing happens
    (
        "nothing proposed or adopted",
        "资格审查服务未能从申请受理服务读取全部尚未过公示期的申请，未提议也未采纳，未作任何记录",
    ),
)


def adoption_refusal(exc: grpc.RpcError) -> ConsoleError:
    """A refused AdoptVersion step in Chinese: four eyes (the same reviewer
    approving their own proposal), the version's state, the request, and an
    adoption whose re-decisions could not be published (adopted all the
    same: saying "try again later" would be wrong, a second call is refused)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code == grpc.StatusCode.PERMISSION_DENIED and details.startswith("four-eyes"):
        return Forbidden(
            f"{ADOPTING}：四眼原则——该版本的采纳是您本人提议的，须由另一位审核人员（不同账号）批准；"
            f"本次提交未被采纳（{details}）。"
        )
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        meaning = next((zh for en, zh in ADOPTION_PRECONDITIONS if en in details), "当前状态下不能采纳")
        return Conflict(f"{ADOPTING}：{meaning}（{details}）。")
    if code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("subject:"):
        return FormError(
            "",
            "审核人员身份（令牌主体）",
            f"资格审查服务未能从登录令牌中识别出审核人员，须开启令牌校验后才能通过管理台采纳（{details}）。",
        )
    if code == grpc.StatusCode.UNAVAILABLE and "is adopted, but" in details:
        return Unavailable(
            f"{ADOPTING}：该版本已经采纳，但重新决定暂未能发布到 subsidy.decisions.v1，账本暂按原决定；"
            f"重新决定已随采纳记录保存，系统会自动重试发布，无需再次提交；如长时间未发布，请通知运维人员（{details}）。"
        )
    if code == grpc.StatusCode.UNAVAILABLE and "nothing proposed or adopted" in details:
        return Unavailable(
            f"{ADOPTING}：资格审查服务暂时无法从申请受理服务读取尚未过公示期的申请，未提议也未采纳，"
            f"请稍后再试（{details}）。"
        )
    if code == grpc.StatusCode.UNAVAILABLE and "nothing adopted" in details:
        return Unavailable(f"{ADOPTING}：采纳审计记录暂时无法写入，未采纳任何版本，请稍后再试（{details}）。")
    return translate(exc, ADOPTING)


#: The channels' load balancing (SUBSIDY_CONSOLE_GRPC_BALANCING).
ROUND_ROBIN, PICK_FIRST = "round_robin", "pick_first"


class GrpcServices:
    """The ``Services`` port over gRPC channels made once per process.

    With ``round_robin`` (the default) every channel's target is a
    ``dns:///`` name and its calls go round robin over every address the
    name resolves to (subsidy/platform/grpc/balancing.py): given intake's
    headless Service (``subsidy-intake-headless:50051``, one record per ready
    pod) the console's calls spread over intake's pods instead of staying on
    the one pod its connection reached; a ClusterIP name resolves to one
    address and behaves as before. ``pick_first`` is gRPC's default."""

    def __init__(
        self,
        intake: str,
        review: str,
        payout: str,
        health_targets: tuple[tuple[str, str], ...] = (),
        ca_file: str = "",
        operations: str = "127.0.0.1:50058",
        eligibility: str = "127.0.0.1:50052",
        load_balancing: str = ROUND_ROBIN,
    ):
        if load_balancing not in (ROUND_ROBIN, PICK_FIRST):
            raise ValueError(f"load_balancing: {ROUND_ROBIN} or {PICK_FIRST}, not {load_balancing!r}")
        self.load_balancing = load_balancing
        self.addresses = {
            "intake": intake,
            "review": review,
            "payout": payout,
            "operations": operations,
            "eligibility": eligibility,
        }
        self.health_targets = health_targets or tuple(self.addresses.items())
        self._credentials = None
        if ca_file:
            with open(ca_file, "rb") as f:
                self._credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            target, options = address, []
            if self.load_balancing == ROUND_ROBIN:
                target, options = balancing.balanced_target(address), balancing.channel_options()
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(target, self._credentials, options=options)
            else:
                channel = grpc.aio.insecure_channel(target, options=options)
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    @property
    def _review(self) -> Any:
        return review_pb2_grpc.ReviewServiceStub(self._channel(self.addresses["review"]))

    @property
    def _intake(self) -> Any:
        return intake_pb2_grpc.IntakeServiceStub(self._channel(self.addresses["intake"]))

    @property
    def _payout(self) -> Any:
        return payout_pb2_grpc.PayoutServiceStub(self._channel(self.addresses["payout"]))

    @property
    def _proposals(self) -> Any:
        return proposal_pb2_grpc.ProposalServiceStub(self._channel(self.addresses["intake"]))

    @property
    def _policy(self) -> Any:
        return policy_service_pb2_grpc.PolicyServiceStub(self._channel(self.addresses["eligibility"]))

    @property
    def _operations(self) -> Any:
        return operations_pb2_grpc.OperationsServiceStub(self._channel(self.addresses["operations"]))

    @staticmethod
    async def _call(
        method: Any,
        request: Any,
        person: Person,
        what: str,
        refusal: Callable[[grpc.RpcError, str], ConsoleError] = translate,
    ) -> Any:
        try:
            return await method(
                request, metadata=(("authorization", f"Bearer {person.token}"),), timeout=TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            raise refusal(exc, what) from None

    # review
    async def list_queue(self, person: Person, request: Any) -> Any:
        return await self._call(self._review.ListQueue, request, person, "审核队列")

    async def get_item(self, person: Person, item_id: str) -> Any:
        return await self._call(self._review.GetItem, review_pb2.GetItemRequest(item_id=item_id), person, "审核事项")

    async def claim_item(self, person: Person, item_id: str) -> Any:
        return await self._call(self._review.ClaimItem, review_pb2.ClaimItemRequest(item_id=item_id), person, "领取")

    async def decide(self, person: Person, request: Any) -> Any:
        return await self._call(self._review.Decide, request, person, "审核结论")

    async def second_approve(self, person: Person, request: Any) -> Any:
        return await self._call(self._review.SecondApprove, request, person, "复核")

    async def audit_trail(self, person: Person, target: str) -> list[Any]:
        entries: list[Any] = []
        token = ""
        for _ in range(50):
            request = review_pb2.ListAuditTrailRequest(target=target, page_size=200, page_token=token)
            reply = await self._call(self._review.ListAuditTrail, request, person, "审计记录")
            entries.extend(reply.entries)
            token = reply.next_page_token
            if not token:
                break
        return entries

    async def answer_information(self, person: Person, request: Any) -> Any:
        return await self._call(self._review.AnswerInformation, request, person, "答复补充材料要求")

    async def publish_notice(self, person: Person, title: str) -> Any:
        request = review_pb2.PublishNoticeRequest(title=title)
        return await self._call(self._review.PublishNotice, request, person, "发布公示")

    async def get_notice(self, person: Person, notice_id: str) -> Any:
        request = review_pb2.GetNoticeRequest(notice_id=notice_id)
        return await self._call(self._review.GetNotice, request, person, "公示")

    async def list_notices(self, person: Person, page_token: str) -> Any:
        request = review_pb2.ListNoticesRequest(page_size=50, page_token=page_token)
        return await self._call(self._review.ListNotices, request, person, "公示列表")

    async def lodge_objection(self, person: Person, request: Any) -> Any:
        return await self._call(self._review.LodgeObjection, request, person, "提出异议")

    async def resolve_objection(self, person: Person, request: Any) -> Any:
        return await self._call(self._review.ResolveObjection, request, person, "处理异议")

    # intake
    async def list_applications(
        self,
        person: Person,
        credit_code: str,
        page_token: str,
        *,
        firm_name: str = "",
        clause: str = "",
        state: int = 0,
        page_size: int = 100,
    ) -> Any:
        request = intake_pb2.ListApplicationsRequest(
            credit_code=credit_code,
            page_size=page_size,
            page_token=page_token,
            firm_name=firm_name,
            clause=clause,
            state=state,  # type: ignore[arg-type]
        )
        return await self._call(self._intake.ListApplications, request, person, "申请列表")

    async def get_application(self, person: Person, application_id: str) -> Any:
        request = intake_pb2.GetApplicationRequest(application_id=application_id)
        return await self._call(self._intake.GetApplication, request, person, "申请")

    async def list_proposals(
        self, person: Person, credit_code: str, page_token: str, *, state: int = 0, page_size: int = 100
    ) -> Any:
        request = proposal_pb2.ListProposalsRequest(
            credit_code=credit_code,
            page_size=page_size,
            page_token=page_token,
            state=state,  # type: ignore[arg-type]
        )
        return await self._call(self._proposals.ListProposals, request, person, "免申即享")

    # payout
    async def get_ledger(self, person: Person, credit_code: str) -> Any:
        request = payout_pb2.GetLedgerRequest(credit_code=credit_code)
        return await self._call(self._payout.GetLedger, request, person, "企业台账")

    async def cancel_tranche(self, person: Person, tranche_id: str, reason: str) -> Any:
        request = payout_pb2.CancelTrancheRequest(tranche_id=tranche_id, reason=reason)
        return await self._call(self._payout.CancelTranche, request, person, "取消拨付")

    async def open_recovery(self, person: Person, request: Any) -> Any:
        return await self._call(self._payout.OpenRecovery, request, person, "追回")

    async def get_outlay(self, person: Person, from_year: int, to_year: int) -> Any:
        request = payout_pb2.GetOutlayRequest(from_year=from_year, to_year=to_year)
        return await self._call(self._payout.GetOutlay, request, person, "预算执行")

    async def list_recoveries(self, person: Person, recovery_filter: int, page_token: str) -> Any:
        request = payout_pb2.ListRecoveriesRequest(
            filter=recovery_filter,  # type: ignore[arg-type]
            page_size=100,
            page_token=page_token,
        )
        return await self._call(self._payout.ListRecoveries, request, person, "追回列表")

    async def shadow_difference(self, person: Person) -> Any:
        request = policy_service_pb2.GetShadowDifferenceRequest()
        return await self._call(self._policy.GetShadowDifference, request, person, "影子评估")

    async def adopt_version(self, person: Person, request: Any) -> Any:
        """One reviewer's step (propose, or approve another's proposal), as
        the person: eligibility tells which from its audit trail."""
        return await self._call(
            self._policy.AdoptVersion, request, person, ADOPTING, lambda exc, _: adoption_refusal(exc)
        )

    async def list_versions(self, person: Person) -> Any:
        """The adoption state as eligibility sees it now: the register with
        its trail applied, pending proposals, adoptions, the trail's events."""
        request = policy_service_pb2.ListVersionsRequest()
        return await self._call(self._policy.ListVersions, request, person, ADOPTION_STATE)

    async def list_tranches(
        self, person: Person, due_from: str, due_to: str, statuses: list[int], page_token: str
    ) -> Any:
        request = payout_pb2.ListTranchesRequest(
            due_from=due_from, due_to=due_to, statuses=statuses, page_size=500, page_token=page_token
        )
        return await self._call(self._payout.ListTranches, request, person, "拨付计划")

    # operations
    async def health(self) -> list[tuple[str, str, str]]:
        async def one(name: str, address: str) -> tuple[str, str, str]:
            stub = health_pb2_grpc.HealthStub(self._channel(address))
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                status = f"UNREACHABLE ({exc.code().name})"
            return name, address, status

        return list(await asyncio.gather(*(one(n, a) for n, a in self.health_targets)))

    # operations: the dead letters
    async def dead_letter_topics(self, person: Person) -> Any:
        request = operations_pb2.ListDeadLetterTopicsRequest()
        return await self._call(self._operations.ListDeadLetterTopics, request, person, "死信主题")

    async def list_dead_letters(self, person: Person, topic: str, state: str, page_token: str) -> Any:
        request = operations_pb2.ListDeadLettersRequest(topic=topic, state=state, page_size=50, page_token=page_token)
        return await self._call(self._operations.ListDeadLetters, request, person, "死信列表")

    async def get_dead_letter(self, person: Person, letter_id: str) -> Any:
        request = operations_pb2.GetDeadLetterRequest(letter_id=letter_id)
        return await self._call(self._operations.GetDeadLetter, request, person, "死信")

    async def replay_dead_letter(self, person: Person, letter_id: str, reason: str) -> Any:
        request = operations_pb2.ReplayDeadLetterRequest(letter_id=letter_id, reason=reason)
        return await self._call(self._operations.ReplayDeadLetter, request, person, "重放死信")

    async def discard_dead_letter(self, person: Person, letter_id: str, reason: str) -> Any:
        request = operations_pb2.DiscardDeadLetterRequest(letter_id=letter_id, reason=reason)
        return await self._call(self._operations.DiscardDeadLetter, request, person, "丢弃死信")
