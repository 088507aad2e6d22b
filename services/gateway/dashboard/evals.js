// The run's evals, beside its reward curve: each target's score with its 95% interval, and the gain.

import { fmt, h, statusBadge, when } from "./dom.js";

function interval(r) {
  return `${fmt(r.mean)} [${fmt(r.low)}, ${fmt(r.high)}]`;
}

function setName(set) {
  return `${set.format}${set.path ? `:${set.path}` : " (sample)"}${set.limit ? ` ×${set.limit}` : ""}`;
}

function targetCell(label, report, status) {
  const score = report ? interval(report.reward) : status === "failed" ? "–" : "…";
  // By task type (IFEval: instruction group; HealthBench: theme), each with its interval, on hover.
  const types = report ? Object.entries(report.by_task_type).map(([k, r]) => `${k}: ${interval(r)}`) : [];
  const attrs = { class: "eval-target", title: types.length ? types.join("\n") : null };
  return h("div", attrs, h("strong", {}, label), " ", h("span", { "data-testid": "eval-score" }, score));
}

function labelOf(target) {
  return target.kind === "checkpoint" ? target.label || `v${target.version}` : target.label;
}

function evalRow(ev) {
  const targets = ev.request.targets.map((t) => targetCell(labelOf(t), ev.reports[labelOf(t)], ev.status));
  return h(
    "tr",
    { "data-eval-id": ev.id },
    h("td", {}, when(ev.created_at)),
    h("td", {}, setName(ev.request.set)),
    h("td", {}, statusBadge(ev.status), ev.error ? h("div", { class: "error-inline clip", title: ev.error }, ev.error) : null),
    h("td", {}, targets),
    h("td", { class: "num", "data-testid": "eval-gain" }, ev.gain ? interval(ev.gain) : "–"),
  );
}

export function evalsPanel(list) {
  if (!list.items.length) {
    return [h("p", { class: "muted" }, "No evals yet: POST /v1/evals with this run's checkpoints as targets.")];
  }
  return [
    h(
      "table",
      { class: "runs evals", "data-testid": "evals-table" },
      h(
        "thead",
        {},
        h("tr", {}, h("th", {}, "Created"), h("th", {}, "Set"), h("th", {}, "Status"), h("th", {}, "Mean score [95% interval]"), h("th", { class: "num" }, "Gain, last − first")),
      ),
      h("tbody", {}, list.items.map(evalRow)),
    ),
  ];
}
