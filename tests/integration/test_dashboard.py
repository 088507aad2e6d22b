"""The dashboard in headless Chromium, against a real gateway (uvicorn, SQLite, Redis), no model stack.

A run and its step reports go in through the REST API as a trainer sends them, a scored group
through the run's stream as a producer appends it; the page must show them as they arrive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from redis.asyncio import Redis

from cli.stack import free_port
from services.gateway.app import create_app
from shared.db import Database, EvalRecord
from shared.evaluation import EvalReport, Interval
from shared.evaluation.api import EvalCreate
from shared.schemas import (
    ChatMessage,
    CheckpointManifest,
    Completion,
    Criterion,
    Episode,
    EpisodeGroup,
    Rubric,
    Task,
    Verdict,
)
from shared.settings import GatewaySettings
from shared.streams import EpisodeStream
from tests.browser import POLL_TIMEOUT_MS, artifacts_dir, chromium, chromium_path

TOKEN = "pop_dashboard-test-token"
PROMPT = "Why do <em>valves</em> matter in the heart?"


@contextmanager
def serve_gateway(settings: GatewaySettings) -> Iterator[str]:
    """The gateway app under uvicorn on a free port, in a thread; yields its base URL."""
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def settings_for(tmp_path: Path, redis_url: str, **extra: object) -> GatewaySettings:
    db = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    return GatewaySettings(database_url=db, generator_url="http://127.0.0.1:9", redis_url=redis_url, **extra)


def step_report(run_id: str, step: int, score: float) -> dict[str, object]:
    manifest = CheckpointManifest(run_id=run_id, version=step, step=step, base_model="pop/tiny", files={})
    metrics = {
        "loss": 0.5 / step,
        "groups": 2.0,
        "staleness_max": 0.0,
        "staleness_0": 2.0,
        "tokens_per_second": 100.0 + step,
        "step_seconds": 12.0,
        "reward_mean/long_form_qa": score + 0.1,
        "rubric_met_rate": 0.5,
        "rubric_partial_rate": 0.25,
        "rubric_missed_rate": 0.25,
    }
    return {
        "step": step,
        "policy_version": step,
        "mean_score": score,
        "metrics": metrics,
        "checkpoint_path": f"/ckpt/{run_id}/v{step:06d}",
        "manifest": manifest.model_dump(mode="json"),
    }


async def append_group(redis_url: str, run_id: str) -> None:
    """One scored group, as a producer appends it to the run's stream."""
    criteria = [Criterion(name="valves", description="Says what valves do.", gold="one-way flow", weight=2)]
    reference = "They keep blood flowing one way."
    task = Task(document_id="doc-1", prompt=PROMPT, reference=reference, rubric=Rubric(criteria=criteria))
    episodes = [
        Episode(
            run_id=run_id,
            task_id=task.id,
            policy_version=0,
            prompt_messages=[ChatMessage(role="user", content=task.prompt)],
            completion=Completion(text=text),
            verdicts=[Verdict(criterion="valves", rating=rating, reason=reason)],
            reward=float(rating),
        )
        for text, rating, reason in [
            ("They stop blood flowing backwards.", 2, "states one-way flow"),
            ("Valves are doors.", 0, "no mention of direction"),
        ]
    ]
    group = EpisodeGroup(run_id=run_id, task=task, document_id="doc-1", policy_version=0, episodes=episodes)
    redis = Redis.from_url(redis_url)
    try:
        await EpisodeStream(redis, run_id).append(group)
    finally:
        await redis.aclose()


async def record_eval(database_url: str, run_id: str) -> None:
    """A finished eval of the run's base and v2, stored as the gateway's eval runner stores one."""

    def report(version: int, mean: float) -> dict[str, object]:
        interval = Interval(mean=mean, low=mean - 0.1, high=mean + 0.1)
        return EvalReport(
            version=version,
            run_id=run_id,
            answers=8,
            invalid=0,
            reward=interval,
            per_task={},
            by_task_type={"long_form_qa": interval},
        ).model_dump(mode="json")

    targets = [{"kind": "checkpoint", "run_id": run_id, "version": v} for v in (0, 2)]
    request = EvalCreate.model_validate({"set": {"format": "heldout"}, "targets": targets, "criteria": []})
    db = Database(database_url)
    async with db.session() as session:
        session.add(
            EvalRecord(
                run_id=run_id,
                status="completed",
                request=request.model_dump(mode="json"),
                reports={"v0": report(0, 0.25), "v2": report(2, 0.75)},
                gain=Interval(mean=0.5, low=0.25, high=0.625).model_dump(),
            )
        )
        await session.commit()
    await db.dispose()


def test_the_dashboard_follows_a_run_live(tmp_path: Path, redis_url: str):
    chromium_path()  # skip (or fail under CI) before starting anything
    from playwright.sync_api import expect

    with serve_gateway(settings_for(tmp_path, redis_url, allowed_hosts=["127.0.0.1"])) as gateway:
        root = httpx.get(f"{gateway}/", follow_redirects=False)
        assert root.status_code == 307, "no dashboard: services/gateway/app.py must call mount_dashboard(app)"
        assert root.headers["location"] == "dashboard/"
        script = httpx.get(f"{gateway}/dashboard/static/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert not any(p.startswith("/dashboard") for p in httpx.get(f"{gateway}/openapi.json").json()["paths"])

        created = httpx.post(f"{gateway}/v1/runs", json={"name": "dash-live", "model": "pop/tiny"})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        assert httpx.post(f"{gateway}/v1/runs/claim", json={"trainer": "t0"}).json()["id"] == run_id
        assert httpx.post(f"{gateway}/v1/runs/{run_id}/steps", json=step_report(run_id, 1, 0.6)).status_code == 200
        asyncio.run(append_group(redis_url, run_id))  # before playwright runs its own event loop here
        asyncio.run(record_eval(settings_for(tmp_path, redis_url).database_url, run_id))
        down = {"label": "down", "base_url": "http://127.0.0.1:9/v1"}
        body = {"set": {"format": "ifeval", "limit": 1}, "targets": [down], "run_id": run_id}
        assert httpx.post(f"{gateway}/v1/evals", json=body).status_code == 202  # its runner fails it: nothing there

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{gateway}/")  # the redirect to /dashboard/
            row = page.locator(f"tr[data-run-id='{run_id}']")
            expect(row).to_contain_text("dash-live", timeout=POLL_TIMEOUT_MS)
            expect(row).to_contain_text("running")
            row.click()
            overall = page.locator("[data-testid=reward-point][data-series=overall]")
            expect(overall).to_have_count(1, timeout=POLL_TIMEOUT_MS)  # drawn from the very first step

            assert httpx.post(f"{gateway}/v1/runs/{run_id}/steps", json=step_report(run_id, 2, 0.9)).status_code == 200
            expect(overall).to_have_count(2, timeout=POLL_TIMEOUT_MS)  # the next poll adds the second step
            expect(page.get_by_test_id("reward-point")).to_have_count(4)  # overall and long_form_qa, two steps each
            expect(page.get_by_test_id("reward-chart")).to_be_visible()
            expect(page.get_by_test_id("rubric-chart").locator("rect")).to_have_count(6)
            expect(page.get_by_test_id("run-head")).to_contain_text("2 / 3")

            episode = page.get_by_test_id("episode")
            expect(episode).to_have_count(1)
            expect(page.get_by_test_id("episode-task")).to_have_text(PROMPT)  # model text shown as text
            assert episode.locator("em").count() == 0
            expect(episode).to_contain_text("one-way flow")  # the criterion's gold
            expect(episode).to_contain_text("no mention of direction")  # a verdict's reason
            expect(page.get_by_test_id("generator-status")).to_contain_text("down")

            evals = page.get_by_test_id("evals-table").locator("tbody tr")  # beside the reward curve
            expect(evals).to_have_count(2)
            expect(evals.nth(0)).to_contain_text("failed", timeout=POLL_TIMEOUT_MS)  # newest first
            expect(evals.nth(0)).to_contain_text("target down:")
            expect(evals.nth(1)).to_contain_text("heldout (sample)")
            expect(evals.nth(1).get_by_test_id("eval-score")).to_have_text(
                ["0.250 [0.150, 0.350]", "0.750 [0.650, 0.850]"]
            )
            expect(evals.nth(1).get_by_test_id("eval-gain")).to_have_text("0.500 [0.250, 0.625]")
            by_type = evals.nth(1).locator(".eval-target").first  # each task type's interval, on hover
            expect(by_type).to_have_attribute("title", "long_form_qa: 0.250 [0.150, 0.350]")
            page.screenshot(path=str(artifacts_dir() / "dashboard-integration.png"), full_page=True)


def test_the_dashboard_asks_for_a_token_when_reads_need_one(tmp_path: Path, redis_url: str):
    chromium_path()
    from playwright.sync_api import expect

    settings = settings_for(tmp_path, redis_url, api_tokens=[TOKEN], auth_reads=True)
    with serve_gateway(settings) as gateway, chromium() as browser:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        created = httpx.post(f"{gateway}/v1/runs", json={"name": "dash-private", "model": "pop/tiny"}, headers=auth)
        assert created.status_code == 201, created.text

        page = browser.new_page()
        page.goto(f"{gateway}/dashboard/")  # the page itself holds no data: it needs no token
        banner = page.get_by_test_id("banner")
        expect(banner).to_contain_text("requires a token", timeout=POLL_TIMEOUT_MS)
        expect(page.get_by_test_id("runs-table")).to_contain_text("401 Unauthorized")

        page.fill("#token", "pop_wrong")
        page.get_by_role("button", name="Save").click()
        expect(banner).to_contain_text("token was refused", timeout=POLL_TIMEOUT_MS)

        page.fill("#token", TOKEN)
        page.get_by_role("button", name="Save").click()
        expect(banner).to_be_hidden(timeout=POLL_TIMEOUT_MS)
        expect(page.locator("tr[data-run-id]")).to_contain_text(["dash-private"])
        page.reload()  # the token is kept in the browser
        expect(page.locator("tr[data-run-id]")).to_contain_text(["dash-private"], timeout=POLL_TIMEOUT_MS)
