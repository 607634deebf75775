// The page: key prompt, ask form with streamed answers, and (admin keys only) documents and evaluation.

import { api, getKey, setKey, forgetKey, onUnauthorized, streamQuery, describeError } from "./api.js";
import { h, fill, message, labelled } from "./dom.js";
import { AnswerView } from "./answer.js";
import { DocumentsView } from "./documents.js";
import { EvaluationView } from "./evaluation.js";

const QUESTION_MAX = 2000;
const main = document.getElementById("main");
const who = document.getElementById("who");
const nav = document.getElementById("nav");
const state = { role: null, keysRequired: false, collections: [], home: "default", controller: null };

// --- keys -----------------------------------------------------------------------------------

function showKeyPrompt(reason) {
  state.role = null;
  document.body.dataset.ready = "key";
  if (state.controller) state.controller.abort();
  fill(nav);
  fill(who, h("span", { class: "muted", text: "No key" }));
  const input = h("input", {
    type: "password", id: "api-key", name: "api-key", required: true, autocomplete: "off", spellcheck: false,
  });
  const form = h("form", { class: "key-form", id: "key-form", on: { submit: (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    setKey(key);
    boot();
  } } },
  labelled("API key", input, "Kept in this tab only (sessionStorage) and sent as Authorization: Bearer.").field,
  h("div", { class: "actions" }, h("button", { type: "submit", text: "Use this key" })));
  fill(main, h("section", { class: "panel key-panel", attrs: { "aria-labelledby": "key-title" } },
    h("h2", { id: "key-title", text: "API key needed" }),
    reason ? message(reason.kind, reason.text) : null,
    h("p", { text: "This service wants an API key. A read key may ask questions; an admin key may also manage documents and see evaluations." }),
    form));
  input.focus();
}

onUnauthorized((err) => {
  const hadKey = Boolean(getKey());
  if (hadKey) forgetKey();
  showKeyPrompt({ kind: "error", text: hadKey ? `That key was not accepted (${err.detail}).` : err.detail });
});

function renderWho() {
  const roleText = !state.keysRequired
    ? "Open API (no keys configured): everyone is admin"
    : `Using ${state.role === "admin" ? "an admin" : "a read"} key`;
  fill(who,
    h("span", { class: `role role-${state.role}`, id: "role", dataset: { role: state.role }, text: roleText }),
    state.keysRequired && getKey()
      ? h("button", { type: "button", class: "secondary small", id: "forget-key", text: "Forget key",
        on: { click: () => { forgetKey(); showKeyPrompt({ kind: "info", text: "The key was forgotten." }); } } })
      : null);
}

// --- collections --------------------------------------------------------------------------

const collectionSelects = [];
const datalist = h("datalist", { id: "collections-list" });

async function refreshCollections() {
  let data;
  try {
    data = await api("/v1/collections");
  } catch (err) {
    return err;
  }
  state.collections = (data.collections || []).map((c) => c.name);
  fill(datalist, state.collections.map((name) => h("option", { value: name })));
  for (const { select, withCounts } of collectionSelects) {
    const current = select.value;
    const names = state.collections.length ? data.collections : [{ name: state.home, documents: 0, chunks: 0 }];
    fill(select, names.map((c) => h("option", {
      value: c.name,
      text: withCounts ? `${c.name} (${c.documents} document${c.documents === 1 ? "" : "s"})` : c.name,
    })));
    const pick = [current, state.home].find((n) => n && names.some((c) => c.name === n));
    select.value = pick || names[0].name;
  }
  return null;
}

function collectionSelect(withCounts) {
  const select = h("select", { name: "collection" });
  collectionSelects.push({ select, withCounts });
  return select;
}

// --- asking -----------------------------------------------------------------------------------

function askSection() {
  const question = h("input", {
    type: "text", id: "question", name: "question", required: true, maxLength: QUESTION_MAX,
    autocomplete: "off", placeholder: "e.g. How many office days per week?",
  });
  const collection = collectionSelect(true);
  collection.id = "collection";
  const generator = h("select", { id: "generator", name: "generator" },
    h("option", { value: "", text: "Server's default" }),
    h("option", { value: "local", text: "local model" }),
    h("option", { value: "openai", text: "openai endpoint" }),
    h("option", { value: "extractive", text: "extractive (quotes)" }));
  const strict = h("select", { id: "strict", name: "strict" },
    h("option", { value: "", text: "Server's default" }),
    h("option", { value: "true", text: "Strict: drop unsupported" }),
    h("option", { value: "false", text: "Lenient: keep, mark them" }));
  const topK = h("input", { type: "number", id: "top-k", name: "top_k", min: 1, max: 50, step: 1, inputMode: "numeric", placeholder: "default" });
  const submit = h("button", { type: "submit", id: "ask-button", text: "Ask" });
  const answerPanel = h("article", { class: "panel answer-panel", id: "answer", attrs: { "aria-live": "polite", "aria-busy": "false" } },
    h("h2", { text: "Answer" }),
    h("p", { class: "muted", text: "Ask a question: the answer cites the passages it comes from, and every citation is checked against its source." }));
  const sourcesPanel = h("aside", { class: "panel sources-panel", id: "sources", attrs: { "aria-label": "Sources" } },
    h("h2", { text: "Sources" }), h("p", { class: "muted", text: "The passages an answer draws on appear here." }));
  const view = new AnswerView(answerPanel, sourcesPanel);

  const form = h("form", { class: "ask-form", id: "ask-form", on: { submit: (e) => {
    e.preventDefault();
    const text = question.value.trim();
    if (!text) {
      question.focus();
      return;
    }
    const body = { question: text, collection: collection.value || "default" };
    if (generator.value) body.generator = generator.value;
    if (strict.value) body.strict = strict.value === "true";
    if (topK.value) body.top_k = Number(topK.value);
    ask(body, view, submit, answerPanel);
  } } },
  h("div", { class: "question-row" }, labelled("Question", question).field, h("div", { class: "actions" }, submit)),
  h("div", { class: "options" },
    labelled("Collection", collection).field,
    labelled("Generator", generator).field,
    labelled("Citations", strict).field,
    labelled("Passages (top k)", topK).field));

  return {
    element: h("section", { class: "ask", id: "ask", attrs: { "aria-labelledby": "ask-title" } },
      h("h2", { id: "ask-title", class: "visually-hidden", text: "Ask" }),
      h("div", { class: "panel" }, form),
      h("div", { class: "results" }, answerPanel, sourcesPanel)),
    focus: () => question.focus(),
  };
}

async function ask(body, view, submit, answerPanel) {
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  view.start(body.question);
  answerPanel.setAttribute("aria-busy", "true");
  submit.textContent = "Asking…";
  let done = false;
  const finish = () => {
    done = true;
    answerPanel.setAttribute("aria-busy", "false");
    submit.textContent = "Ask";
  };
  // A newer question replaces this one: whatever of this stream is still on its way is ignored.
  const current = () => state.controller === controller;
  await streamQuery(body, {
    sources: (sources) => current() && view.showSources(sources),
    delta: (text) => current() && view.addDelta(text),
    answer: (res) => {
      if (!current()) return;
      finish();
      view.showAnswer(res);
    },
    error: (err) => {
      if (!current()) return;
      finish();
      if (err.status === 401) return; // the key prompt took over
      view.showError(describeError(err), err.sources);
    },
  }, controller.signal);
  if (!done && state.controller === controller) finish();
  if (state.controller === controller) state.controller = null;
}

// --- the page ---------------------------------------------------------------------------------

async function boot() {
  delete document.body.dataset.ready;
  fill(main, h("p", { class: "muted", attrs: { role: "status" }, text: "Connecting…" }));
  let me;
  try {
    me = await api("/v1/whoami");
  } catch (err) {
    if (err.status === 401) return; // onUnauthorized showed the key prompt
    fill(main, message("error", describeError(err)),
      h("button", { type: "button", text: "Try again", on: { click: boot } }));
    return;
  }
  state.role = me.role;
  state.keysRequired = me.keys_required;
  // A key limited to some collections sees only them: start from its first rather than "default".
  state.home = me.collections && me.collections.length ? me.collections[0] : "default";
  collectionSelects.length = 0;
  renderWho();

  const askPart = askSection();
  const sections = [askPart.element, datalist];
  const links = [h("li", {}, h("a", { href: "#ask", text: "Ask" }))];
  let docs = null;
  let evaluation = null;
  if (state.role === "admin") {
    // Built only for admin keys: a read key's page holds no upload, delete or evaluation controls.
    docs = new DocumentsView({
      collectionsDatalistId: "collections-list",
      initialCollection: state.home,
      onChanged: () => refreshCollections(),
    });
    evaluation = new EvaluationView({ collectionSelect: collectionSelect(false) });
    sections.push(docs.element, evaluation.element);
    links.push(h("li", {}, h("a", { href: "#documents", text: "Documents" })),
      h("li", {}, h("a", { href: "#evaluation", text: "Evaluation" })));
  }
  fill(nav, h("ul", {}, links));
  const warn = !state.keysRequired
    ? message("warning", "RAG_API_KEYS is not set: anyone who can reach this service may read, upload and delete documents.")
    : null;
  fill(main, warn, ...sections);
  const err = await refreshCollections();
  if (err) {
    if (err.status === 401) return;
    main.prepend(message("error", `Collections did not load: ${describeError(err)}`));
  }
  if (docs) docs.load();
  if (evaluation) evaluation.load();
  document.body.dataset.ready = state.role;
  askPart.focus();
}

boot();
