// The selected run's panels, each built from one API response: header, charts, synthesis.

import { PALETTE, barChart, chartBox, legend, lineChart, stackedBars } from "./charts.js";
import { fmt, h, statusBadge, when } from "./dom.js";

const REWARD_PREFIX = "reward_mean/";
const VERDICT_KEYS = [
  { key: "rubric_met_rate", label: "met (2)", color: "#16a34a" },
  { key: "rubric_partial_rate", label: "partial (1)", color: "#f59e0b" },
  { key: "rubric_missed_rate", label: "missed (0)", color: "#dc2626" },
];

function series(points, name, label, color) {
  const pts = points.filter((p) => p.values[name] !== undefined).map((p) => ({ x: p.step, y: p.values[name] }));
  return { name: label || name, color, points: pts };
}

function latest(points, name) {
  for (let i = points.length - 1; i >= 0; i -= 1) if (points[i].values[name] !== undefined) return points[i].values[name];
  return null;
}

function fact(label, value) {
  return h("div", { class: "fact" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

export function runHead(run) {
  const max = run.config.trainer.max_steps;
  const share = max ? Math.min(1, run.step / max) : 0;
  const algorithm = run.config.trainer.algorithm;
  return [
    h(
      "div",
      { class: "run-title" },
      h("h2", {}, run.name),
      statusBadge(run.status),
      h("code", { class: "muted", "data-testid": "run-id" }, run.id),
    ),
    h(
      "div",
      { class: "progress", title: `${run.step} of ${max} steps` },
      h("div", { class: "bar", style: `width:${(share * 100).toFixed(1)}%` }),
    ),
    h(
      "div",
      { class: "facts" },
      fact("Step", `${run.step} / ${max}`),
      fact("Policy version", `v${run.policy_version}`),
      fact("Served", run.served_version === null || run.served_version === undefined ? "not served" : `v${run.served_version}`),
      fact("Recent score", fmt(run.recent_mean_score)),
      fact("Model", run.config.model),
      fact("Algorithm", `${algorithm.name} · ${run.config.trainer.weight_mode}`),
      fact("Trainer", run.trainer || "–"),
      fact("Updated", when(run.updated_at)),
    ),
    ...(run.error ? [h("pre", { class: "error", "data-testid": "run-error" }, run.error)] : []),
  ];
}

export function rewardPanel(metrics) {
  const points = metrics.points;
  const types = metrics.names.filter((n) => n.startsWith(REWARD_PREFIX)).map((n) => n.slice(REWARD_PREFIX.length));
  const overall = points.filter((p) => p.mean_score !== null && p.mean_score !== undefined);
  const lines = [
    { name: "overall", color: "#111827", width: 3, points: overall.map((p) => ({ x: p.step, y: p.mean_score })) },
    ...types.sort().map((t, i) => series(points, REWARD_PREFIX + t, t, PALETTE[i % PALETTE.length])),
  ];
  const drawn = [...lines.slice(1), lines[0]]; // the overall line on top
  const chart = chartBox((width) =>
    lineChart({ series: drawn, width, height: 280, yHint: [0, 2], testid: "reward-chart", pointTestid: "reward-point" }),
  );
  return [chart, legend(lines.map((l) => ({ label: l.name, color: l.color, points: l.points })))];
}

export function rubricPanel(metrics) {
  const bars = metrics.points
    .filter((p) => VERDICT_KEYS.some((k) => p.values[k.key] !== undefined))
    .map((p) => ({ x: p.step, parts: Object.fromEntries(VERDICT_KEYS.map((k) => [k.key, p.values[k.key] || 0])) }));
  const empty = "No rubric verdict rates yet";
  const chart = chartBox((width) => stackedBars({ bars, keys: VERDICT_KEYS, width, testid: "rubric-chart", empty }));
  return [chart, legend(VERDICT_KEYS)];
}

export function stalenessPanel(metrics) {
  const points = metrics.points;
  const last = points[points.length - 1];
  const histogram = last
    ? Object.entries(last.values)
        .map(([name, value]) => [name.match(/^staleness_(\d+)$/), value])
        .filter(([m]) => m)
        .map(([m, value]) => ({ k: Number(m[1]), value }))
        .sort((a, b) => a.k - b.k)
        .map((b) => ({ label: `${b.k} behind`, value: b.value }))
    : [];
  return [
    h("div", { class: "mini-head" }, "Max versions behind, per step"),
    chartBox((width) =>
      lineChart({ series: [series(points, "staleness_max", "max", PALETTE[3])], width, height: 130, yInteger: true }),
    ),
    h("div", { class: "mini-head" }, last ? `Groups by staleness, step ${last.step}` : "Groups by staleness"),
    chartBox((width) => barChart({ bars: histogram, width, height: 120, color: PALETTE[3], testid: "staleness-histogram" })),
  ];
}

function mini(title, points, names, yInteger = false) {
  const lines = names.map(([name, label], i) => series(points, name, label, PALETTE[i % PALETTE.length]));
  const value = latest(points, names[0][0]);
  return h(
    "div",
    { class: "mini" },
    h("div", { class: "mini-head" }, title, h("span", { class: "latest" }, fmt(value, 2))),
    chartBox((width) => lineChart({ series: lines, width, height: 120, yInteger, empty: "No data yet" })),
    lines.length > 1 ? legend(lines.map((l) => ({ label: l.name, color: l.color, points: l.points }))) : null,
  );
}

export function throughputPanel(metrics) {
  const p = metrics.points;
  return [
    mini("Completion tokens / s", p, [["tokens_per_second", "tokens/s"]]),
    mini("Seconds per step", p, [
      ["step_seconds", "step"],
      ["update_seconds", "update"],
      ["wait_seconds", "waiting for groups"],
    ]),
    mini("Groups per step", p, [["groups", "groups"]], true),
  ];
}

export function signalsPanel(metrics) {
  const p = metrics.points;
  return [
    mini("Loss", p, [["loss", "loss"]]),
    mini("Reward std within the step", p, [["reward_std", "reward std"]]),
    mini("Entropy, KL to the reference", p, [
      ["entropy", "entropy"],
      ["kl_reference", "KL ref"],
    ]),
    mini("Distinct bigrams", p, [
      ["task_distinct_2", "tasks"],
      ["answer_distinct_2", "answers"],
    ]),
  ];
}

function countTable(title, counts) {
  const rows = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return h(
    "div",
    {},
    h("div", { class: "mini-head" }, title),
    rows.length
      ? h("table", { class: "counts" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, fmt(v))))))
      : h("p", { class: "muted" }, "none"),
  );
}

export function synthesisPanel(syn) {
  const filtered = Object.values(syn.filtered).reduce((a, b) => a + b, 0);
  const tile = (label, value) => h("div", { class: "tile" }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
  return [
    h(
      "div",
      { class: "tiles", "data-testid": "synthesis" },
      tile("documents drawn", fmt(syn.draws)),
      tile("groups made", fmt(syn.groups)),
      tile("rejections", fmt(filtered)),
      tile("groups per draw", syn.draws ? `${((100 * syn.groups) / syn.draws).toFixed(0)}%` : "–"),
    ),
    h(
      "div",
      { class: "columns" },
      countTable("Groups by task type", syn.groups_by_task_type),
      countTable("Rejected, by reason", syn.filtered),
      countTable("Diversity of recent tasks", syn.diversity),
    ),
  ];
}
