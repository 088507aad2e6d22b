// Sample episodes of the selected run: task, rubric (with gold facts), and every answer as judged.

import { describeError, getJSON } from "./api.js";
import { h, when } from "./dom.js";

const PAGE_SIZE = 4;
const RATING = { 0: "missed", 1: "partial", 2: "met" };

function rubricTable(criteria) {
  const head = ["Criterion", "Weight", "Gold", "Description"].map((t) => h("th", {}, t));
  return h(
    "table",
    { class: "rubric" },
    h("thead", {}, h("tr", {}, head)),
    h(
      "tbody",
      {},
      criteria.map((c) =>
        h(
          "tr",
          {},
          h("td", { class: "name" }, c.name),
          h("td", { class: "num" }, c.weight),
          h("td", {}, c.gold || "–"),
          h("td", { class: "muted" }, c.description || ""),
        ),
      ),
    ),
  );
}

function answer(e) {
  const reward =
    e.reward === null || e.reward === undefined
      ? h("span", { class: "badge invalid" }, "ungraded")
      : h("span", { class: "badge reward" }, `reward ${e.reward.toFixed(2)}`);
  return h(
    "li",
    { class: "answer", "data-testid": "answer" },
    h("div", { class: "answer-head" }, reward, h("span", { class: "muted" }, `policy v${e.policy_version}`)),
    h("p", { class: "text" }, e.completion.text || "(empty answer)"),
    h(
      "ul",
      { class: "verdicts" },
      e.verdicts.map((v) =>
        h(
          "li",
          { class: `verdict r${v.rating}` },
          h("span", { class: "chip" }, `${v.criterion}: ${v.rating} · ${RATING[v.rating] || "?"}`),
          v.reason ? h("span", { class: "reason" }, v.reason) : null,
        ),
      ),
    ),
  );
}

function groupCard(sample) {
  const g = sample.group;
  const task = g.task;
  const criteria = task.rubric ? task.rubric.criteria : [];
  return h(
    "article",
    { class: "episode", "data-testid": "episode" },
    h(
      "header",
      {},
      h("span", { class: "badge type" }, task.task_type),
      h("span", { class: "muted" }, `sampled by policy v${g.policy_version} · ${when(g.created_at)}`),
      h("code", { class: "muted" }, sample.entry_id),
    ),
    h("div", { class: "label" }, "Task"),
    h("p", { class: "prompt", "data-testid": "episode-task" }, task.prompt),
    task.reference ? h("details", {}, h("summary", {}, "Reference answer"), h("p", { class: "text" }, task.reference)) : null,
    h("div", { class: "label" }, `Rubric (${criteria.length} criteria)`),
    criteria.length ? rubricTable(criteria) : h("p", { class: "muted" }, "No rubric recorded."),
    h("div", { class: "label" }, `Answers (${g.episodes.length})`),
    h("ol", { class: "answers" }, g.episodes.map(answer)),
  );
}

/** Pages through ``GET /v1/runs/{id}/episodes`` (newest first) with a stack of ``before`` cursors. */
export class EpisodeBrowser {
  constructor(card) {
    this.list = card.querySelector("[data-role=list]");
    this.info = card.querySelector("[data-role=info]");
    this.newerButton = card.querySelector("[data-role=newer]");
    this.olderButton = card.querySelector("[data-role=older]");
    this.newerButton.addEventListener("click", () => this.newer());
    this.olderButton.addEventListener("click", () => this.older());
    this.runId = null;
  }

  select(runId) {
    if (runId === this.runId) return;
    this.runId = runId;
    this.cursors = [null];
    this.next = null;
    this.shown = "";
    this.list.replaceChildren(h("p", { class: "muted" }, "Loading episodes…"));
    this.load().catch(() => {}); // shown in place; the poll reports it too
  }

  /** The newest page follows the run; older pages stay put while they are read. */
  async refresh() {
    if (this.runId && this.cursors.length === 1) await this.load();
  }

  async load() {
    const runId = this.runId;
    const before = this.cursors[this.cursors.length - 1];
    let page;
    try {
      page = await getJSON(`/v1/runs/${encodeURIComponent(runId)}/episodes`, { limit: PAGE_SIZE, before });
    } catch (err) {
      if (runId === this.runId) {
        this.shown = "";
        this.list.replaceChildren(h("p", { class: "error" }, `Episodes unavailable: ${describeError(err)}`));
      }
      throw err;
    }
    if (runId !== this.runId || before !== this.cursors[this.cursors.length - 1]) return;
    this.next = page.next_cursor;
    const pageNo = this.cursors.length;
    this.info.textContent = `page ${pageNo} · ${page.total} group${page.total === 1 ? "" : "s"} in the stream`;
    this.newerButton.disabled = pageNo === 1;
    this.olderButton.disabled = !this.next;
    const key = JSON.stringify([before, page.items.map((i) => i.entry_id)]);
    if (key === this.shown) return; // unchanged: keep the reader's open details and scroll
    this.shown = key;
    this.list.replaceChildren(
      ...(page.items.length
        ? page.items.map(groupCard)
        : [h("p", { class: "muted" }, "No scored groups yet: producers append them as they are judged.")]),
    );
  }

  older() {
    if (!this.next) return;
    this.cursors.push(this.next);
    this.load().catch(() => {});
  }

  newer() {
    if (this.cursors.length < 2) return;
    this.cursors.pop();
    this.load().catch(() => {});
  }
}
