"""``GET /metrics``: Prometheus exposition of every recent run's progress, training and synthesis.

Built from SQL and Redis at scrape time into a fresh registry, so any gateway replica answers
the same and nothing is lost when one restarts.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.gateway import evals, store
from services.gateway.deps import RedisDep, SessionDep
from shared.api import RunStatus
from shared.observability import metrics_response
from shared.streams import EpisodeStream
from shared.synthesis import SynthesisLedger

router = APIRouter(tags=["metrics"])
RECENT_RUNS = 100


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, session: SessionDep, redis: RedisDep) -> Response:
    """This gateway's own request metrics, then every recent run's state, built fresh."""
    registry = CollectorRegistry()
    run_labels = ["run_id", "name", "status"]
    step = Gauge("pop_run_step", "Updates the trainer has made.", run_labels, registry=registry)
    version = Gauge("pop_run_policy_version", "Newest policy version of the run.", run_labels, registry=registry)
    score = Gauge("pop_run_mean_score", "Mean judge score of the latest step (0-2).", ["run_id"], registry=registry)
    step_metric = Gauge(
        "pop_step_metric", "Latest step's trainer and diversity metrics.", ["run_id", "metric"], registry=registry
    )
    draws = Counter("pop_synthesis_draws", "Documents drawn.", ["run_id"], registry=registry)
    groups = Counter("pop_synthesis_groups", "Groups made, by task type.", ["run_id", "task_type"], registry=registry)
    filtered = Counter("pop_synthesis_filtered", "Rejections, by reason.", ["run_id", "reason"], registry=registry)
    diversity = Gauge(
        "pop_synthesis_diversity", "Diversity of recent accepted tasks.", ["run_id", "metric"], registry=registry
    )
    backlog = Gauge("pop_stream_backlog", "Groups not yet read by the trainer.", ["run_id"], registry=registry)
    pending = Gauge("pop_stream_pending", "Groups read but not yet trained (acked).", ["run_id"], registry=registry)
    rows, _ = await store.list_runs(session, None, RECENT_RUNS, 0)
    for run in rows:
        labels = (run.id, run.name, run.status)
        step.labels(*labels).set(run.step)
        version.labels(*labels).set(run.policy_version)
        if run.steps:
            latest = run.steps[-1]
            if latest.mean_score is not None:
                score.labels(run.id).set(latest.mean_score)
            for name, value in latest.metrics.items():
                step_metric.labels(run.id, name).set(value)
        if run.status == RunStatus.running.value:
            stream = EpisodeStream(redis, run.id)
            backlog.labels(run.id).set(await stream.backlog())
            pending.labels(run.id).set(await stream.pending())
        ledger = await SynthesisLedger(redis, run.id).read()
        draws.labels(run.id).inc(ledger.draws)
        for task_type, n in ledger.groups_by_task_type.items():
            groups.labels(run.id, task_type).inc(n)
        for reason, n in ledger.filtered.items():
            filtered.labels(run.id, reason).inc(n)
        for name, value in ledger.diversity.items():
            diversity.labels(run.id, name).set(value)
    queued = Gauge("pop_evals", "Evals (POST /v1/evals), by status.", ["status"], registry=registry)
    for status, count in (await evals.count_by_status(session)).items():
        queued.labels(status).set(count)
    return metrics_response(request.app.state.metrics_registry, registry)
