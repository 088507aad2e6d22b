// Hand-written SVG charts (no CDN here): lines over steps, stacked share bars, a plain bar chart.

import { fmt, h, s } from "./dom.js";

export const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#db2777", "#65a30d"];
const M = { l: 48, r: 14, t: 12, b: 30 };

/** A chart drawn at its box's real width (so text keeps its size); redrawn by ``drawCharts``. */
export function chartBox(draw) {
  const box = h("div", { class: "chart-box" });
  box.draw = draw;
  return box;
}

export function drawCharts(root) {
  for (const box of root.querySelectorAll(".chart-box")) box.replaceChildren(box.draw(Math.max(240, box.clientWidth)));
}

const tickText = (t) => String(Number(t.toPrecision(6)));

function niceStep(range, count) {
  const raw = range / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function yScale(values, hint, integer, count) {
  let lo = Math.min(0, ...values);
  let hi = Math.max(...values);
  if (hint) {
    lo = Math.min(lo, hint[0]);
    hi = Math.max(hi, hint[1]);
  }
  if (!(hi > lo)) hi = lo + 1;
  const step = integer ? Math.max(1, niceStep(hi - lo, count)) : niceStep(hi - lo, count);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toFixed(10)));
  return { lo, hi, ticks };
}

function svgRoot(width, height, testid) {
  return s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "data-testid": testid });
}

function emptyChart(width, height, testid, message) {
  const root = svgRoot(width, height, testid);
  root.append(s("text", { x: width / 2, y: height / 2, class: "empty", "text-anchor": "middle" }, message));
  return root;
}

function yAxis(root, ys, Y, width, height, format) {
  for (const t of ys.ticks) {
    root.append(s("line", { x1: M.l, x2: width - M.r, y1: Y(t), y2: Y(t), class: t === 0 ? "axis" : "gridline" }));
    root.append(s("text", { x: M.l - 6, y: Y(t) + 4, class: "tick", "text-anchor": "end" }, format(t)));
  }
  root.append(s("text", { x: width - M.r, y: height - 4, class: "tick", "text-anchor": "end" }, "step"));
}

/** Lines over steps; every point is a circle, so one point already shows. series: [{name, color, points: [{x, y}]}]. */
export function lineChart({ series, width, height = 240, yHint, yInteger, testid, pointTestid, empty, format = fmt }) {
  const points = series.flatMap((se) => se.points);
  if (!points.length) return emptyChart(width, height, testid, empty || "Waiting for the first step…");
  let xLo = Math.min(...points.map((p) => p.x));
  let xHi = Math.max(...points.map((p) => p.x));
  if (xLo === xHi) [xLo, xHi] = [xLo - 1, xHi + 1];
  const ys = yScale(
    points.map((p) => p.y),
    yHint,
    yInteger,
    Math.max(2, Math.floor((height - M.t - M.b) / 30)),
  );
  const X = (v) => M.l + ((v - xLo) / (xHi - xLo)) * (width - M.l - M.r);
  const Y = (v) => height - M.b - ((v - ys.lo) / (ys.hi - ys.lo)) * (height - M.t - M.b);
  const root = svgRoot(width, height, testid);
  yAxis(root, ys, Y, width, height, tickText);
  const every = Math.max(1, Math.ceil((xHi - xLo) / Math.max(2, Math.floor(width / 70))));
  for (let t = Math.ceil(xLo); t <= xHi; t += every) {
    root.append(s("text", { x: X(t), y: height - M.b + 16, class: "tick", "text-anchor": "middle" }, t));
  }
  for (const se of series) {
    const pts = [...se.points].sort((a, b) => a.x - b.x);
    if (pts.length > 1) {
      const d = pts.map((p, i) => `${i ? "L" : "M"}${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join("");
      root.append(s("path", { d, class: "line", stroke: se.color, "stroke-width": se.width || 2 }));
    }
    for (const p of pts) {
      const attrs = { cx: X(p.x), cy: Y(p.y), r: se.width > 2 ? 4 : 3.2, fill: se.color, class: "point" };
      if (pointTestid) Object.assign(attrs, { "data-testid": pointTestid, "data-series": se.name, "data-step": p.x });
      root.append(s("circle", attrs, s("title", {}, `step ${p.x} · ${se.name}: ${format(p.y)}`)));
    }
  }
  return root;
}

/** One bar per step, split into shares that add up to one. keys: [{key, label, color}]. */
export function stackedBars({ bars, keys, width, height = 200, testid, empty }) {
  if (!bars.length) return emptyChart(width, height, testid, empty || "No data yet");
  const root = svgRoot(width, height, testid);
  const ys = { lo: 0, hi: 1, ticks: [0, 0.25, 0.5, 0.75, 1] };
  const Y = (v) => height - M.b - v * (height - M.t - M.b);
  yAxis(root, ys, Y, width, height, (t) => `${Math.round(t * 100)}%`);
  const band = (width - M.l - M.r) / bars.length;
  const barW = Math.min(32, band * 0.7);
  const labelEvery = Math.max(1, Math.ceil((bars.length * 40) / width));
  bars.forEach((bar, i) => {
    const x = M.l + band * i + (band - barW) / 2;
    let acc = 0;
    for (const k of keys) {
      const v = Math.max(0, bar.parts[k.key] || 0);
      const tip = `step ${bar.x} · ${k.label}: ${(v * 100).toFixed(1)}%`;
      root.append(
        s("rect", { x, y: Y(acc + v), width: barW, height: Y(acc) - Y(acc + v), fill: k.color }, s("title", {}, tip)),
      );
      acc += v;
    }
    if (i % labelEvery === 0) {
      root.append(s("text", { x: x + barW / 2, y: height - M.b + 16, class: "tick", "text-anchor": "middle" }, bar.x));
    }
  });
  return root;
}

/** Plain bars with their values on top. bars: [{label, value}]. */
export function barChart({ bars, width, height = 160, color = PALETTE[0], testid, empty }) {
  if (!bars.length) return emptyChart(width, height, testid, empty || "No data yet");
  const root = svgRoot(width, height, testid);
  const hi = Math.max(1, ...bars.map((b) => b.value));
  const Y = (v) => height - M.b - (v / hi) * (height - M.t - M.b - 14);
  root.append(s("line", { x1: M.l, x2: width - M.r, y1: Y(0), y2: Y(0), class: "axis" }));
  const band = (width - M.l - M.r) / bars.length;
  const barW = Math.min(56, band * 0.6);
  bars.forEach((bar, i) => {
    const x = M.l + band * i + (band - barW) / 2;
    root.append(s("rect", { x, y: Y(bar.value), width: barW, height: Y(0) - Y(bar.value), fill: color }));
    root.append(s("text", { x: x + barW / 2, y: Y(bar.value) - 4, class: "value", "text-anchor": "middle" }, fmt(bar.value)));
    root.append(s("text", { x: x + barW / 2, y: height - M.b + 16, class: "tick", "text-anchor": "middle" }, bar.label));
  });
  return root;
}

export function legend(items) {
  return h(
    "div",
    { class: "legend" },
    items.filter((it) => !it.points || it.points.length).map((it) => h("span", { class: "key" }, h("i", { style: `background:${it.color}` }), it.label)),
  );
}
