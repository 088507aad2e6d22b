// The dashboard's state and polling: runs, the generator, and the selected run, every 2.5 s.

import { describeError, getJSON, getToken, setToken } from "./api.js";
import { evalsPanel } from "./evals.js";
import { drawCharts } from "./charts.js";
import { fmt, h, statusBadge, when } from "./dom.js";
import { EpisodeBrowser } from "./episodes.js";
import * as panels from "./panels.js";

const POLL_MS = 2500;
const RUNS_PAGE = 20;
const $ = (id) => document.getElementById(id);
const state = { status: "", offset: 0, selected: null };
const episodes = new EpisodeBrowser($("episodes-card"));

function selectedFromHash() {
  const match = window.location.hash.match(/run=([^&]+)/);
  return match ? decodeURIComponent(match[1]) : null;
}

function showError(el, err, what) {
  el.replaceChildren(h("p", { class: "error" }, `${what}: ${describeError(err)}`));
}

// ---- runs table

function runRow(run) {
  const served = run.served_version === null || run.served_version === undefined ? "" : ` (serving v${run.served_version})`;
  return h(
    "tr",
    {
      "data-run-id": run.id,
      class: run.id === state.selected ? "selected" : null,
      tabindex: 0,
      onclick: () => selectRun(run.id),
      onkeydown: (e) => e.key === "Enter" && selectRun(run.id),
    },
    h("td", {}, h("a", { href: `#run=${encodeURIComponent(run.id)}` }, run.name)),
    h("td", {}, h("code", {}, run.id)),
    h("td", {}, statusBadge(run.status)),
    h("td", { class: "num" }, `${run.step} / ${run.config.trainer.max_steps}`),
    h("td", { class: "num" }, `v${run.policy_version}${served}`),
    h("td", { class: "num" }, fmt(run.recent_mean_score)),
    h("td", { class: "muted" }, when(run.created_at)),
  );
}

async function loadRuns() {
  const body = $("runs-body");
  let list;
  try {
    list = await getJSON("/v1/runs", { limit: RUNS_PAGE, offset: state.offset, status: state.status });
  } catch (err) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "error" }, `Runs unavailable: ${describeError(err)}`)));
    throw err;
  }
  const hint = "No runs yet: launch one with POST /v1/runs or `pop run start`.";
  body.replaceChildren(
    ...(list.items.length ? list.items.map(runRow) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, hint))]),
  );
  const last = Math.min(state.offset + list.items.length, list.total);
  $("runs-info").textContent = list.total ? `${state.offset + 1}–${last} of ${list.total}` : "0 runs";
  $("runs-prev").disabled = state.offset === 0;
  $("runs-next").disabled = last >= list.total;
}

// ---- generator

async function loadGenerator() {
  const el = $("generator");
  let gen;
  try {
    gen = await getJSON("/v1/generator");
  } catch (err) {
    const text = `Generator status unavailable: ${describeError(err)}`;
    el.replaceChildren(h("span", { class: "dot bad" }), h("span", { class: "clip", title: text }, text));
    throw err;
  }
  const level = gen.healthy && gen.ready ? "ok" : gen.healthy ? "warn" : "bad";
  const word = gen.healthy ? (gen.ready ? "ready" : "not ready") : "down";
  const served = gen.served
    ? ` · serves v${gen.served.version}${gen.served.run_id ? ` of run ${gen.served.run_id}` : " (base)"} · ${gen.served.model}`
    : "";
  el.replaceChildren(
    h("span", { class: `dot ${level}` }),
    h("strong", { "data-testid": "generator-word" }, `Generator ${word}`),
    served,
    gen.error ? h("span", { class: "error-inline clip", title: gen.error }, ` · ${gen.error}`) : "",
  );
}

// ---- the selected run

const PANELS = [
  ["reward-panel", panels.rewardPanel],
  ["rubric-panel", panels.rubricPanel],
  ["staleness-panel", panels.stalenessPanel],
  ["throughput-panel", panels.throughputPanel],
  ["signals-panel", panels.signalsPanel],
];

// The series grows by polling only for steps after the newest one held (``after_step``).
const series = { runId: null, names: [], points: [], shown: false };

function mergeMetrics(id, fetched) {
  if (series.runId !== id) Object.assign(series, { runId: id, names: [], points: [], shown: false });
  const last = series.points.length ? series.points[series.points.length - 1].step : 0;
  const fresh = fetched.points.filter((p) => p.step > last);
  const changed = !series.shown || fresh.length > 0 || fetched.names.join() !== series.names.join();
  series.points.push(...fresh);
  series.names = fetched.names;
  series.shown = true;
  return changed;
}

async function loadSelected() {
  const id = state.selected;
  if (!id) return;
  const base = `/v1/runs/${encodeURIComponent(id)}`;
  const after = series.runId === id && series.points.length ? series.points[series.points.length - 1].step : 0;
  const [run, metrics, synthesis, evals] = await Promise.allSettled([
    getJSON(base),
    getJSON(`${base}/metrics`, { after_step: after }),
    getJSON(`${base}/synthesis`),
    getJSON("/v1/evals", { run_id: id, limit: 20 }),
  ]);
  if (id !== state.selected) return;
  if (run.status === "fulfilled") $("run-head").replaceChildren(...panels.runHead(run.value));
  else showError($("run-head"), run.reason, `Run ${id}`);
  if (metrics.status === "rejected") {
    series.shown = false;
    for (const [el] of PANELS) showError($(el), metrics.reason, "Metrics unavailable");
  } else if (mergeMetrics(id, metrics.value)) {
    for (const [el, render] of PANELS) {
      $(el).replaceChildren(...render(series));
      drawCharts($(el));
    }
  }
  if (synthesis.status === "fulfilled") $("synthesis-panel").replaceChildren(...panels.synthesisPanel(synthesis.value));
  else showError($("synthesis-panel"), synthesis.reason, "Synthesis unavailable");
  if (evals.status === "fulfilled") $("evals-panel").replaceChildren(...evalsPanel(evals.value));
  else showError($("evals-panel"), evals.reason, "Evals unavailable");
  const failed = [run, metrics, synthesis, evals].find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

function selectRun(id) {
  if (selectedFromHash() !== id) window.location.hash = `run=${encodeURIComponent(id)}`;
  else applySelection();
}

function applySelection(poll = true) {
  const id = selectedFromHash();
  if (id === state.selected) return;
  state.selected = id;
  $("run-detail").hidden = !id;
  $("no-selection").hidden = Boolean(id);
  for (const row of document.querySelectorAll("#runs-body tr[data-run-id]")) {
    row.classList.toggle("selected", row.dataset.runId === id);
  }
  if (id) {
    $("run-head").replaceChildren(h("p", { class: "muted" }, `Loading run ${id}…`));
    for (const [el] of PANELS) $(el).replaceChildren();
    episodes.select(id);
  }
  if (poll) tick();
}

// ---- polling and the banner

function banner(errors) {
  const el = $("banner");
  const auth = errors.find((e) => e && e.status === 401);
  const down = errors.find((e) => e && e.status === 0);
  if (auth) {
    const saved = getToken() ? "The saved token was refused" : "This gateway requires a token for reads";
    el.textContent = `${saved}: paste a bearer token in the field above and press Save. (${describeError(auth)})`;
  } else if (down) {
    el.textContent = `The gateway does not answer; retrying every ${POLL_MS / 1000} s. (${describeError(down)})`;
  }
  el.hidden = !(auth || down);
}

let timer = null;
let busy = false;
let again = false;

async function tick() {
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  clearTimeout(timer);
  try {
    const results = await Promise.allSettled([loadRuns(), loadGenerator(), loadSelected(), episodes.refresh()]);
    banner(results.filter((r) => r.status === "rejected").map((r) => r.reason));
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } finally {
    busy = false;
    timer = setTimeout(tick, again ? 0 : POLL_MS);
    again = false;
  }
}

function wire() {
  $("token").value = getToken();
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setToken($("token").value.trim());
    tick();
  });
  $("token-clear").addEventListener("click", () => {
    $("token").value = "";
    setToken("");
    tick();
  });
  $("status-filter").addEventListener("change", (e) => {
    state.status = e.target.value;
    state.offset = 0;
    tick();
  });
  $("runs-prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - RUNS_PAGE);
    tick();
  });
  $("runs-next").addEventListener("click", () => {
    state.offset += RUNS_PAGE;
    tick();
  });
  window.addEventListener("hashchange", applySelection);
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => drawCharts(document), 150);
  });
}

wire();
applySelection(false);
tick();
