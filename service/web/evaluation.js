// Evaluation (admin only): the collection's latest report, its ladder chart and the fine-tune verdict.

import { api, apiBlob, describeError } from "./api.js";
import { h, fill, message, labelled, formatNumber, percent } from "./dom.js";

export class EvaluationView {
  constructor({ collectionSelect }) {
    this.select = collectionSelect;
    this.select.id = "eval-collection";
    this.output = h("div", { class: "eval-output", id: "eval-output", attrs: { "aria-live": "polite" } });
    this.blobUrl = null;
    const form = h("form", { class: "row-form", id: "eval-form", on: { submit: (e) => { e.preventDefault(); this.load(); } } },
      labelled("Collection", this.select).field,
      h("button", { type: "submit", class: "secondary", text: "Show latest report" }));
    this.element = h("section", { class: "panel", id: "evaluation", attrs: { "aria-labelledby": "evaluation-title" } },
      h("h2", { id: "evaluation-title", text: "Evaluation" }),
      h("p", { class: "muted", text: "Admin: how the answering route scored on the collection's gold questions, rung by rung." }),
      form, this.output);
  }

  get collection() {
    return this.select.value || "default";
  }

  async load() {
    const collection = this.collection;
    fill(this.output, h("p", { class: "muted", text: `Loading the latest evaluation of ${collection}…` }));
    let report;
    try {
      report = await api(`/v1/eval/latest?collection=${encodeURIComponent(collection)}`);
    } catch (err) {
      if (err.status === 404) fill(this.output, this.notRun(collection));
      else fill(this.output, message("error", describeError(err)));
      return;
    }
    this.render(report, collection);
  }

  notRun(collection) {
    return message("info",
      h("p", { class: "no-eval", text: `No evaluation of collection ${collection} has been run yet.` }),
      h("p", {}, "Run one with ", h("code", { text: "POST /v1/eval" }),
        " (an admin key; the gold questions in the body), or on the server with ",
        h("code", { text: `rag-eval GOLD.jsonl -c ${collection} --out data/eval/${collection}` }),
        " (the folder is RAG_EVAL_DIR/COLLECTION, data/eval by default)."));
  }

  render(report, collection) {
    const meta = report.meta || {};
    const parts = [h("p", { class: "muted", text:
      `${meta.gold || "gold set"} · ${formatNumber(meta.questions)} questions · started ${meta.started || "?"}`
      + (typeof meta.seconds === "number" ? ` · took ${formatNumber(meta.seconds, 0)} s` : "") })];
    const chart = h("figure", { class: "ladder-chart" },
      h("p", { class: "muted", text: "Loading the chart…" }));
    parts.push(chart);
    for (const [name, ladder] of Object.entries(report.ladders || {})) {
      parts.push(this.ladder(name, ladder));
    }
    if (report.retrieval) parts.push(this.retrieval(report.retrieval));
    fill(this.output, ...parts);
    this.loadChart(chart, collection);
  }

  async loadChart(figure, collection) {
    try {
      const blob = await apiBlob(`/v1/eval/latest/ladder.png?collection=${encodeURIComponent(collection)}`);
      if (this.blobUrl) URL.revokeObjectURL(this.blobUrl);
      this.blobUrl = URL.createObjectURL(blob);
      fill(figure,
        h("img", { src: this.blobUrl, alt: `Ladder chart of ${collection}: accuracy and prompt tokens per rung`, id: "ladder-img" }),
        h("figcaption", { class: "muted", text: "Accuracy and prompt tokens per rung." }));
    } catch (err) {
      fill(figure, message(err.status === 404 ? "info" : "error",
        err.status === 404 ? "This report has no chart." : `The chart did not load: ${describeError(err)}`));
    }
  }

  ladder(name, ladder) {
    const rows = (ladder.rungs || []).map((r) => h("tr", {},
      h("th", { scope: "row" }, r.label || r.rung),
      h("td", { class: "num", text: percent(r.accuracy) }),
      h("td", { class: "num", text: formatNumber(r.prompt_tokens) }),
      h("td", { class: "num", text: percent(r.abstention_accuracy) }),
      h("td", { class: "num", text: percent(r.citation_precision) })));
    const ft = ladder.fine_tune || {};
    return h("section", { class: "ladder", dataset: { generator: name } },
      h("h3", { text: `Ladder: ${name}${ladder.model ? ` (${ladder.model})` : ""}` }),
      h("div", { class: "table-wrap", attrs: { tabindex: "0", role: "region", "aria-label": `Ladder of ${name}` } },
        h("table", { class: "ladder-table" },
          h("thead", {}, h("tr", {}, ["Rung", "Accuracy", "Prompt tokens", "Abstention", "Citation precision"].map((t, i) => h("th", { scope: "col", class: i ? "num" : null, text: t })))),
          h("tbody", {}, rows))),
      h("div", { class: "verdict-box" },
        h("h4", { text: "Should we fine-tune?" }),
        h("p", { class: "verdict", text: ft.verdict || "No verdict in this report." }),
        ft.best_rung ? h("p", { class: "muted", text:
          `Best rung: ${ft.best_rung} (${percent(ft.best_accuracy)}); accuracy stops improving at ${ft.plateau_rung} (${percent(ft.plateau_accuracy)}). `
          + `Failures at the top: ${formatNumber(ft.failures)} (${formatNumber(ft.retrieval_misses)} retrieval misses, `
          + `${formatNumber(ft.generation_errors)} generation errors, ${formatNumber(ft.abstention_errors)} abstention errors).` }) : null));
  }

  retrieval(table) {
    const rows = Object.entries(table).map(([mode, m]) => h("tr", {},
      h("th", { scope: "row", text: mode }),
      h("td", { class: "num", text: formatNumber(m.hit_at_1, 2) }),
      h("td", { class: "num", text: formatNumber(m.hit_at_5, 2) }),
      h("td", { class: "num", text: formatNumber(m.mrr_at_10, 2) }),
      h("td", { class: "num", text: formatNumber(m.ndcg_at_10, 2) })));
    return h("section", { class: "retrieval" },
      h("h3", { text: "Retrieval" }),
      h("div", { class: "table-wrap", attrs: { tabindex: "0", role: "region", "aria-label": "Retrieval scores" } },
        h("table", {},
          h("thead", {}, h("tr", {}, ["Mode", "hit@1", "hit@5", "MRR@10", "nDCG@10"].map((t, i) => h("th", { scope: "col", class: i ? "num" : null, text: t })))),
          h("tbody", {}, rows))));
  }
}
