"""Client of the gateway's REST API, used by producers, the trainer and the CLI alike."""

from __future__ import annotations

from shared.api import (
    CheckpointRead,
    ClaimRequest,
    EpisodePage,
    FinishReport,
    GeneratorStatus,
    JudgeRead,
    JudgeRegistration,
    MetricSeries,
    RewindCommand,
    RollbackCommand,
    RunList,
    RunRead,
    RunStatus,
    StepReport,
    SwapCommand,
    SwapResult,
)
from shared.clients.http import ServiceClient
from shared.config import RunConfig
from shared.evaluation.api import EvalCreate, EvalRead
from shared.schemas import PolicyVersion
from shared.synthesis import SynthesisRead


class GatewayClient(ServiceClient):
    async def create_run(self, config: RunConfig) -> RunRead:
        """Only the fields the config sets: the deployment's run defaults fill the rest (e.g. the model
        its generator serves), as they do for a config posted by hand."""
        response = await self.request("POST", "/v1/runs", json=config.model_dump(mode="json", exclude_unset=True))
        return RunRead.model_validate(response.json())

    async def get_run(self, run_id: str) -> RunRead:
        return RunRead.model_validate((await self.request("GET", f"/v1/runs/{run_id}")).json())

    async def list_runs(
        self, status: RunStatus | None = None, limit: int = 50, offset: int = 0, name: str | None = None
    ) -> RunList:
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status.value
        if name:
            params["name"] = name
        return RunList.model_validate((await self.request("GET", "/v1/runs", params=params)).json())

    async def claim_run(self, trainer: str) -> RunRead | None:
        response = await self.request("POST", "/v1/runs/claim", json=ClaimRequest(trainer=trainer).model_dump())
        return None if response.status_code == 204 else RunRead.model_validate(response.json())

    async def report_step(self, run_id: str, report: StepReport) -> RunRead:
        response = await self.request("POST", f"/v1/runs/{run_id}/steps", json=report.model_dump(mode="json"))
        return RunRead.model_validate(response.json())

    async def rewind_run(self, run_id: str, command: RewindCommand) -> RunRead:
        response = await self.request("POST", f"/v1/runs/{run_id}/rewind", json=command.model_dump(mode="json"))
        return RunRead.model_validate(response.json())

    async def delete_checkpoint(self, run_id: str, version: int) -> None:
        """Forget a pruned version; 409 (a ServiceError) when the generator or an eval still serves or names it."""
        await self.request("DELETE", f"/v1/runs/{run_id}/checkpoints/{version}")

    async def finish_run(self, run_id: str, report: FinishReport) -> RunRead:
        response = await self.request("POST", f"/v1/runs/{run_id}/finish", json=report.model_dump(mode="json"))
        return RunRead.model_validate(response.json())

    async def synthesis(self, run_id: str) -> SynthesisRead:
        return SynthesisRead.model_validate((await self.request("GET", f"/v1/runs/{run_id}/synthesis")).json())

    async def checkpoints(self, run_id: str) -> list[CheckpointRead]:
        response = await self.request("GET", f"/v1/runs/{run_id}/checkpoints")
        return [CheckpointRead.model_validate(c) for c in response.json()]

    async def served(self) -> PolicyVersion:
        return PolicyVersion.model_validate((await self.request("GET", "/v1/generator/weights")).json())

    async def stop_run(self, run_id: str) -> RunRead:
        return RunRead.model_validate((await self.request("POST", f"/v1/runs/{run_id}/stop")).json())

    async def pause_run(self, run_id: str) -> RunRead:
        return RunRead.model_validate((await self.request("POST", f"/v1/runs/{run_id}/pause")).json())

    async def resume_run(self, run_id: str) -> RunRead:
        return RunRead.model_validate((await self.request("POST", f"/v1/runs/{run_id}/resume")).json())

    async def delete_run(self, run_id: str) -> None:
        await self.request("DELETE", f"/v1/runs/{run_id}")

    async def metrics(self, run_id: str, names: list[str] | None = None, after_step: int = 0) -> MetricSeries:
        params: dict[str, str | int | list[str]] = {"after_step": after_step}
        if names:
            params["name"] = names
        response = await self.request("GET", f"/v1/runs/{run_id}/metrics", params=params)
        return MetricSeries.model_validate(response.json())

    async def episodes(self, run_id: str, limit: int = 10, before: str | None = None) -> EpisodePage:
        params: dict[str, str | int] = {"limit": limit} if before is None else {"limit": limit, "before": before}
        response = await self.request("GET", f"/v1/runs/{run_id}/episodes", params=params)
        return EpisodePage.model_validate(response.json())

    async def rollback(self, run_id: str, version: int | None = None, timeout_s: float = 300.0) -> SwapResult:
        body = RollbackCommand(version=version).model_dump(mode="json")
        response = await self.request("POST", f"/v1/runs/{run_id}/rollback", json=body, timeout=timeout_s)
        return SwapResult.model_validate(response.json())

    async def register_judge(self, registration: JudgeRegistration) -> JudgeRead:
        response = await self.request("POST", "/v1/judges", json=registration.model_dump(mode="json"))
        return JudgeRead.model_validate(response.json())

    async def judges(self) -> list[JudgeRead]:
        return [JudgeRead.model_validate(j) for j in (await self.request("GET", "/v1/judges")).json()]

    async def generator(self) -> GeneratorStatus:
        return GeneratorStatus.model_validate((await self.request("GET", "/v1/generator")).json())

    async def swap(self, command: SwapCommand, timeout_s: float = 300.0) -> SwapResult:
        response = await self.request(
            "POST", "/v1/generator/weights", json=command.model_dump(mode="json"), timeout=timeout_s
        )
        return SwapResult.model_validate(response.json())

    async def create_eval(self, request: EvalCreate) -> EvalRead:
        response = await self.request("POST", "/v1/evals", json=request.model_dump(mode="json"))
        return EvalRead.model_validate(response.json())

    async def get_eval(self, eval_id: str) -> EvalRead:
        return EvalRead.model_validate((await self.request("GET", f"/v1/evals/{eval_id}")).json())
