// The answer: streamed draft, then the verified answer with [n] citation buttons, the sources
// panel, and the passage view with the quoted span in a <mark>.

import { h, fill, message, formatNumber } from "./dom.js";

export const NOT_COVERED = "The documents do not cover this.";

// The service's marker grammar (service/cite.py): [1], [1, 2], [1;2], [^1], [Source 1], [1-3].
const NUM = String.raw`\d{1,9}`;
const ITEM = String.raw`(?:(?:sources?|src|docs?|documents?|refs?)[ \t]*[:#]?[ \t]*)?${NUM}(?:[ \t]*[-–][ \t]*${NUM})?`;
const MARKER = new RegExp(String.raw`\[\^?[ \t]*(${ITEM}(?:[ \t]*[,;][ \t]*${ITEM})*)[ \t]*\]`, "gi");
const MARKER_ITEM = new RegExp(String.raw`(${NUM})(?:[ \t]*[-–][ \t]*(${NUM}))?`, "g");
const MAX_RANGE = 20;

export function markerNumbers(body) {
  const out = [];
  for (const m of body.matchAll(MARKER_ITEM)) {
    const lo = Number(m[1]);
    const hi = m[2] ? Number(m[2]) : lo;
    if (lo <= hi && hi - lo < MAX_RANGE) for (let n = lo; n <= hi; n += 1) out.push(n);
    else out.push(lo, hi);
  }
  return [...new Set(out)];
}

function stripMarkers(text) {
  return text.replace(MARKER, " ").replace(/\s+/g, " ").trim();
}

/** Where each citation's sentence starts in the answer (-1 when it cannot be found). */
function locateCitations(answer, citations) {
  let cursor = 0;
  return citations.map((c) => {
    const sentence = c.sentence || "";
    const probes = [sentence, sentence.slice(0, 60), stripMarkers(sentence).slice(0, 40)].filter((p) => p.length >= 3);
    for (const probe of probes) {
      let at = answer.indexOf(probe, cursor);
      if (at === -1) at = answer.indexOf(probe);
      if (at !== -1) {
        if (at >= cursor) cursor = at;
        return { start: at, end: at + sentence.length };
      }
    }
    return { start: -1, end: -1 };
  });
}

/**
 * Renders answers into the answer panel and sources into the side panel. One instance per page.
 */
export class AnswerView {
  constructor(answerPanel, sourcesPanel) {
    this.answerPanel = answerPanel;
    this.sourcesPanel = sourcesPanel;
    this.sources = [];
    this.citations = [];
    this.draft = null;
    this.deltas = 0;
    this.lastTrigger = null;
  }

  // --- while it streams ---------------------------------------------------------------------

  start(question) {
    this.sources = [];
    this.citations = [];
    this.deltas = 0;
    this.answerPanel.dataset.state = "waiting";
    this.answerPanel.dataset.deltas = "0";
    this.status = h("p", { class: "status", attrs: { role: "status" }, text: "Finding passages…" });
    this.draft = h("div", { class: "answer-text draft", attrs: { "aria-live": "off" } });
    fill(
      this.answerPanel,
      h("h2", { text: "Answer" }),
      h("p", { class: "question" }, h("span", { class: "label", text: "Question: " }), question),
      this.status,
      this.draft,
    );
    fill(this.sourcesPanel, h("h2", { text: "Sources" }), h("p", { class: "muted", text: "Searching…" }));
  }

  showSources(sources) {
    this.sources = sources || [];
    this.status.textContent = this.sources.length
      ? `Found ${this.sources.length} passage${this.sources.length === 1 ? "" : "s"}; writing the answer…`
      : "No passages found; answering…";
    this.renderSources();
  }

  addDelta(text) {
    this.deltas += 1;
    this.answerPanel.dataset.state = "streaming";
    this.answerPanel.dataset.deltas = String(this.deltas);
    if (this.deltas === 1) {
      this.draft.before(h("p", { class: "draft-label muted", text: "Draft as the model writes it (not yet verified):" }));
    }
    this.draft.append(document.createTextNode(text));
  }

  // --- the verified answer ------------------------------------------------------------------

  showAnswer(res) {
    this.sources = res.sources || [];
    this.citations = res.citations || [];
    this.answerPanel.dataset.state = "done";
    const covered = res.covered !== false;
    const body = h("div", { class: `answer-text final${covered ? "" : " not-covered"}`, id: "answer-text" });
    if (covered) this.renderAnswerText(body, res.answer || "");
    else body.append(h("strong", { text: res.answer || NOT_COVERED }));

    const parts = [h("h2", { text: "Answer" }), this.answerPanel.querySelector(".question")];
    parts.push(this.badges(res));
    if (!covered) {
      parts.push(h("p", { class: "muted" }, res.removed && res.removed.length
        ? "Nothing the model wrote could be verified against the sources, and no sentence of them answers it."
        : "No passage was relevant enough to answer from, or the model said the sources do not say."));
    }
    parts.push(body);
    if (res.fallback) {
      parts.push(message("warning",
        h("strong", { text: "Extractive fallback. " }),
        `None of what ${res.model && res.model !== "none" ? res.model : "the model"} wrote could be verified, `
        + "so the answer is made of sentences quoted from the sources."));
    }
    const unverified = this.citations.filter((c) => !c.verified);
    if (unverified.length) {
      parts.push(message("warning",
        `${unverified.length} citation${unverified.length === 1 ? "" : "s"} could not be verified: `,
        "marked ", h("span", { class: "cite-sample unverified", text: "[n?]" }),
        " and underlined. Open one to see why."));
    }
    if (res.removed && res.removed.length) {
      const n = res.removed.length;
      parts.push(h("div", { class: "removed msg msg-warning", attrs: { role: "note" } },
        h("p", { class: "removed-title", text: `${n} unsupported sentence${n === 1 ? "" : "s"} removed` }),
        h("p", { class: "muted", text: "Their sources did not say what they claim:" }),
        h("ul", {}, res.removed.map((s) => h("li", { text: s })))));
    }
    parts.push(this.usage(res));
    fill(this.answerPanel, ...parts);
    this.renderSources();
  }

  badges(res) {
    const items = [];
    const gen = res.generator || "?";
    if (res.covered === false && gen === "none") items.push(h("span", { class: "badge badge-muted", text: "no model call" }));
    else {
      items.push(h("span", { class: "badge", text: `Generator: ${gen}` }));
      if (res.model && res.model !== "none") {
        items.push(h("span", { class: "badge", text: res.fallback ? `Model: ${res.model} (its text was replaced)` : `Model: ${res.model}` }));
      }
    }
    items.push(h("span", {
      class: `badge ${res.fallback ? "badge-warn" : "badge-muted"}`,
      text: res.fallback ? "Extractive fallback: yes" : "Extractive fallback: no",
    }));
    if (res.covered === false) items.push(h("span", { class: "badge badge-warn", text: "Not covered" }));
    else {
      const total = (res.citations || []).length;
      const ok = (res.citations || []).filter((c) => c.verified).length;
      items.push(h("span", {
        class: `badge ${ok === total ? "badge-ok" : "badge-warn"}`,
        text: total ? `${ok} of ${total} citation${total === 1 ? "" : "s"} verified` : "no citations",
      }));
    }
    return h("p", { class: "badges" }, items);
  }

  usage(res) {
    const u = res.usage || {};
    const t = res.timings_ms || {};
    const total = Object.values(t).reduce((a, b) => a + (Number(b) || 0), 0);
    return h("p", { class: "usage muted" },
      `Prompt ${formatNumber(u.prompt_tokens)} tokens · completion ${formatNumber(u.completion_tokens)} tokens`
      + (total ? ` · ${formatNumber(total / 1000, 1)} s` : ""));
  }

  /** The answer text with [n] markers as buttons and unverified sentences underlined. */
  renderAnswerText(container, text) {
    const spans = locateCitations(text, this.citations);
    this.citationSpans = spans;
    // Unverified sentences (strict: false) get a wavy underline; non-overlapping, in order.
    const marks = [];
    this.citations.forEach((c, i) => {
      const s = spans[i];
      if (!c.verified && s.start >= 0 && !marks.some((m) => m.start < s.end && s.start < m.end)) marks.push(s);
    });
    marks.sort((a, b) => a.start - b.start);
    let pos = 0;
    for (const m of marks) {
      this.renderRun(container, text, pos, m.start);
      const span = h("span", { class: "unverified-sentence" });
      this.renderRun(span, text, m.start, Math.min(m.end, text.length));
      container.append(span);
      pos = Math.min(m.end, text.length);
    }
    this.renderRun(container, text, pos, text.length);
  }

  renderRun(parent, text, from, to) {
    const piece = text.slice(from, to);
    let pos = 0;
    for (const m of piece.matchAll(MARKER)) {
      if (m.index > pos) parent.append(document.createTextNode(piece.slice(pos, m.index)));
      const numbers = markerNumbers(m[1]);
      const known = numbers.filter((n) => this.sources.some((s) => s.n === n));
      pos = m.index + m[0].length;
      if (!known.length) parent.append(document.createTextNode(m[0]));
      else {
        // The buttons and the punctuation right after them stay on one line: "[1]." never breaks.
        const group = h("span", { class: "cite-group" }, known.map((n) => this.citationButton(n, from + m.index)));
        const tail = /^[.,;:!?…)\]"'”’]+/.exec(piece.slice(pos));
        if (tail) {
          group.append(tail[0]);
          pos += tail[0].length;
        }
        parent.append(group);
      }
    }
    if (pos < piece.length) parent.append(document.createTextNode(piece.slice(pos)));
  }

  /** The citation of source ``n`` whose sentence is the nearest one starting before ``at``. */
  citationFor(n, at) {
    let best = -1;
    let bestStart = -Infinity;
    this.citations.forEach((c, i) => {
      if (c.n !== n) return;
      const s = this.citationSpans[i];
      if (s.start >= 0 && s.start <= at && s.start > bestStart) {
        best = i;
        bestStart = s.start;
      }
    });
    if (best === -1) best = this.citations.findIndex((c) => c.n === n);
    return best === -1 ? null : this.citations[best];
  }

  citationButton(n, at) {
    const citation = this.citationFor(n, at);
    const source = this.sources.find((s) => s.n === n);
    const unverified = citation && !citation.verified;
    const label = `Citation ${n}: ${source ? source.title : "source"}`
      + (citation ? (unverified ? ", not verified" : ", verified") : "");
    return h("button", {
      type: "button",
      class: `cite${unverified ? " unverified" : ""}`,
      text: unverified ? `[${n}?]` : `[${n}]`,
      attrs: { "aria-label": label, title: label },
      dataset: { n: String(n) },
      on: { click: (e) => this.openPassage(n, citation, e.currentTarget) },
    });
  }

  // --- sources and the passage view ---------------------------------------------------------

  renderSources() {
    const list = h("ol", { class: "sources", id: "sources-list" });
    for (const s of this.sources) {
      const meta = [];
      if (s.section) meta.push(h("span", { class: "section", text: s.section }));
      if (s.page !== null && s.page !== undefined) meta.push(h("span", { class: "page", text: `page ${s.page}` }));
      const cited = this.citations.filter((c) => c.n === s.n);
      list.append(h("li", { class: "source", dataset: { n: String(s.n) } },
        h("button", {
          type: "button", class: "source-open",
          attrs: { "aria-label": `Show passage ${s.n}: ${s.title}` },
          on: { click: (e) => this.openPassage(s.n, cited[0] || null, e.currentTarget) },
        }, h("span", { class: "num", text: `[${s.n}]` }), " ", h("span", { class: "title", text: s.title || s.source })),
        meta.length ? h("p", { class: "source-meta" }, meta.flatMap((m, i) => (i ? [" · ", m] : [m]))) : null,
        h("p", { class: "source-path muted" }, h("code", { text: s.source }),
          typeof s.score === "number" ? ` · score ${s.score.toFixed(2)}` : ""),
        cited.length ? h("p", { class: "cited-by muted", text: `Cited ${cited.length}×` }) : null));
    }
    this.passage = h("section", { class: "passage", id: "passage", hidden: true, attrs: { "aria-label": "Source passage" } });
    fill(this.sourcesPanel,
      h("h2", { text: "Sources" }),
      this.passage,
      this.sources.length ? list : h("p", { class: "muted", text: "No sources were retrieved." }));
  }

  openPassage(n, citation, trigger) {
    const source = this.sources.find((s) => s.n === n);
    if (!source) return;
    this.lastTrigger = trigger || null;
    const text = source.text || "";
    let from = -1;
    let to = -1;
    let note = null;
    if (citation && citation.quote) {
      const offset = citation.start - source.start;
      const length = citation.end - citation.start;
      if (offset >= 0 && text.slice(offset, offset + length) === citation.quote) {
        from = offset;
        to = offset + length;
      } else {
        from = text.indexOf(citation.quote);
        if (from === -1) {
          const lower = text.toLowerCase();
          from = lower.indexOf(citation.quote.toLowerCase());
        }
        if (from >= 0) to = from + citation.quote.length;
        else note = "The quoted span was not found in this passage's text.";
      }
    }
    const heading = h("h3", { attrs: { tabindex: "-1" }, id: "passage-title" },
      `[${source.n}] `, source.title || source.source);
    const meta = [];
    if (source.section) meta.push(`Section: ${source.section}`);
    if (source.page !== null && source.page !== undefined) meta.push(`Page ${source.page}`);
    meta.push(source.source);
    const body = h("blockquote", { class: "passage-text", id: "passage-text" });
    let mark = null;
    if (from >= 0) {
      mark = h("mark", { text: text.slice(from, to) });
      body.append(text.slice(0, from), mark, text.slice(to));
    } else body.append(text);
    const cite = [];
    if (citation) {
      cite.push(h("p", { class: "cited-sentence" }, h("span", { class: "label", text: "Cited for: " }), citation.sentence));
      cite.push(h("p", { class: citation.verified ? "verdict ok" : "verdict bad" },
        citation.verified ? "Verified: the passage supports this sentence." : "Not verified",
        !citation.verified && citation.reason ? `: ${citation.reason}` : "",
        typeof citation.score === "number" ? ` (similarity ${citation.score.toFixed(2)})` : ""));
    }
    fill(this.passage,
      heading,
      h("p", { class: "source-meta", text: meta.join(" · ") }),
      ...cite,
      note ? message("warning", note, " Quote: ", h("q", { text: citation.quote })) : null,
      body,
      h("div", { class: "passage-actions" },
        h("button", {
          type: "button", class: "secondary", text: trigger && trigger.classList.contains("cite") ? "Back to the answer" : "Close passage",
          on: { click: () => this.closePassage() },
        })));
    this.passage.hidden = false;
    this.passage.dataset.n = String(n);
    for (const li of this.sourcesPanel.querySelectorAll("li.source")) li.classList.toggle("current", li.dataset.n === String(n));
    heading.focus({ preventScroll: true });
    this.passage.scrollIntoView({ block: "nearest" });
    if (mark) {
      // Bring the mark into view inside the scrolling passage box without moving the page.
      body.scrollTop = Math.max(0, mark.offsetTop - body.clientHeight / 3);
    }
  }

  closePassage() {
    this.passage.hidden = true;
    for (const li of this.sourcesPanel.querySelectorAll("li.source")) li.classList.remove("current");
    if (this.lastTrigger && this.lastTrigger.isConnected) this.lastTrigger.focus();
  }

  // --- errors -------------------------------------------------------------------------------

  showError(text, sources) {
    this.answerPanel.dataset.state = "error";
    const question = this.answerPanel.querySelector(".question");
    const hadDraft = this.draft && this.draft.textContent;
    fill(this.answerPanel, h("h2", { text: "Answer" }), question,
      message("error", text),
      hadDraft ? h("details", {}, h("summary", { text: "What the model wrote before the error (unverified)" }),
        h("div", { class: "answer-text draft", text: this.draft.textContent })) : null);
    if (sources && sources.length) this.sources = sources;
    if (this.sources.length) this.renderSources();
    else fill(this.sourcesPanel, h("h2", { text: "Sources" }), h("p", { class: "muted", text: "No sources." }));
  }
}
