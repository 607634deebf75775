// Documents (admin only): list a collection, upload files with progress, delete with confirmation.

import { api, uploadFiles, describeError } from "./api.js";
import { h, fill, message, labelled, formatNumber } from "./dom.js";

const ACCEPT = ".md,.markdown,.txt,.text,.html,.htm,.pdf,.docx";
const OUTCOME_TEXT = {
  added: "added", updated: "updated", unchanged: "unchanged (same content already indexed)",
  skipped: "skipped", failed: "failed",
};

export class DocumentsView {
  /** onChanged(): collections changed (an upload or a delete), so pickers refresh. */
  constructor({ collectionsDatalistId, initialCollection, onChanged }) {
    this.onChanged = onChanged;
    this.collectionInput = h("input", {
      type: "text", id: "docs-collection", name: "collection", value: initialCollection || "default",
      required: true, autocomplete: "off", spellcheck: false,
      attrs: { list: collectionsDatalistId, pattern: "[A-Za-z0-9._\\-]+" },
    });
    this.fileInput = h("input", { type: "file", id: "upload-files", name: "files", multiple: true, accept: ACCEPT, required: true });
    this.progress = h("progress", { id: "upload-progress", max: 100, value: 0 });
    this.progressText = h("span", { class: "progress-text", attrs: { "aria-live": "polite" } });
    this.progressRow = h("div", { class: "progress-row", hidden: true },
      h("label", { htmlFor: "upload-progress", text: "Upload progress" }), this.progress, this.progressText);
    this.uploadButton = h("button", { type: "submit", text: "Upload" });
    this.outcomes = h("div", { class: "outcomes", id: "upload-outcomes", attrs: { "aria-live": "polite" } });
    this.listStatus = h("div", { class: "list-status", attrs: { "aria-live": "polite" } });
    this.list = h("div", { class: "doc-list", id: "doc-list" });

    const chooser = h("form", { class: "row-form", id: "docs-form", on: { submit: (e) => { e.preventDefault(); this.load(); } } },
      labelled("Collection", this.collectionInput, "Letters, digits, dot, dash, underscore; a new name makes a new collection.").field,
      h("button", { type: "submit", class: "secondary", text: "Show documents" }));
    const upload = h("form", { class: "upload-form", id: "upload-form", on: { submit: (e) => { e.preventDefault(); this.upload(); } } },
      labelled("Files to upload", this.fileInput, "Markdown, text, HTML, PDF or DOCX; several at once.").field,
      h("div", { class: "actions" }, this.uploadButton),
      this.progressRow,
      this.outcomes);
    this.element = h("section", { class: "panel", id: "documents", attrs: { "aria-labelledby": "documents-title" } },
      h("h2", { id: "documents-title", text: "Documents" }),
      h("p", { class: "muted", text: "Admin: what is indexed in a collection; upload into it or delete from it." }),
      chooser, upload, this.listStatus, this.list);
  }

  get collection() {
    return this.collectionInput.value.trim() || "default";
  }

  async load() {
    const collection = this.collection;
    fill(this.listStatus, h("p", { class: "muted", text: `Loading the documents of ${collection}…` }));
    let data;
    try {
      data = await api(`/v1/documents?collection=${encodeURIComponent(collection)}`);
    } catch (err) {
      fill(this.listStatus, message(err.status === 404 ? "info" : "error",
        err.status === 404 ? `Collection ${collection} does not exist yet: upload files to create it.` : describeError(err)));
      fill(this.list);
      return;
    }
    this.render(data);
  }

  render(data) {
    const docs = data.documents || [];
    const chunks = docs.reduce((a, d) => a + d.chunks, 0);
    fill(this.listStatus, h("p", { class: "muted", text:
      `${docs.length} document${docs.length === 1 ? "" : "s"}, ${formatNumber(chunks)} chunks in ${data.collection}.` }));
    if (!docs.length) {
      fill(this.list);
      return;
    }
    const rows = docs.map((d) => this.row(d, data.collection));
    fill(this.list, h("div", { class: "table-wrap", attrs: { tabindex: "0", role: "region", "aria-label": `Documents in ${data.collection}` } },
      h("table", { class: "docs" },
        h("caption", { class: "visually-hidden", text: `Documents in ${data.collection}` }),
        h("thead", {}, h("tr", {}, ["Source", "Title", "Type", "Chunks", "Indexed", "Actions"].map((t) => h("th", { scope: "col", class: t === "Chunks" ? "num" : null, text: t })))),
        h("tbody", {}, rows))));
  }

  row(d, collection) {
    const actions = h("td", { class: "actions-cell" });
    const del = h("button", {
      type: "button", class: "danger delete", text: "Delete",
      attrs: { "aria-label": `Delete ${d.source}` },
      on: { click: () => this.confirmDelete(d, collection, actions, del) },
    });
    actions.append(del);
    const cell = (label, props, ...children) => h("td", { ...props, dataset: { label } }, ...children);
    return h("tr", { dataset: { documentId: d.document_id } },
      cell("Source", { class: "source-cell" }, h("code", { text: d.source })),
      cell("Title", { text: d.title }),
      cell("Type", { text: d.filetype }),
      cell("Chunks", { class: "num", text: String(d.chunks) }),
      cell("Indexed", { text: (d.indexed_at || "").replace("T", " ").replace(/\.\d+/, "").replace(/\+00:00$/, " UTC") }),
      actions);
  }

  confirmDelete(d, collection, cell, del) {
    const cancel = h("button", { type: "button", class: "secondary", text: "Cancel" });
    const yes = h("button", { type: "button", class: "danger confirm-delete", text: "Yes, delete" });
    const box = h("div", { class: "confirm", attrs: { role: "group", "aria-label": `Confirm deleting ${d.source}` } },
      h("span", { text: `Delete ${d.source} and its ${d.chunks} chunk${d.chunks === 1 ? "" : "s"}?` }), " ", yes, " ", cancel);
    cancel.addEventListener("click", () => {
      fill(cell, del);
      del.focus();
    });
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      cancel.disabled = true;
      try {
        await api(`/v1/documents/${encodeURIComponent(d.document_id)}?collection=${encodeURIComponent(collection)}`, { method: "DELETE" });
      } catch (err) {
        fill(cell, message("error", describeError(err)), del);
        del.focus();
        return;
      }
      await this.load();
      this.listStatus.prepend(message("ok", `Deleted ${d.source} from ${collection}.`));
      this.collectionInput.focus();
      this.onChanged();
    });
    fill(cell, box);
    yes.focus();
  }

  async upload() {
    const files = [...this.fileInput.files];
    const collection = this.collection;
    if (!files.length) {
      fill(this.outcomes, message("error", "Choose one or more files first."));
      return;
    }
    this.uploadButton.disabled = true;
    this.progressRow.hidden = false;
    this.progress.value = 0;
    this.progressText.textContent = "0%";
    fill(this.outcomes, h("p", { class: "muted", text: `Uploading ${files.length} file${files.length === 1 ? "" : "s"} to ${collection}…` }));
    let result;
    try {
      result = await uploadFiles(files, collection, (loaded, total, sent) => {
        const pct = total ? Math.round((loaded / total) * 100) : 0;
        this.progress.value = pct;
        this.progressText.textContent = sent ? "100% sent; indexing…" : `${pct}%`;
      });
    } catch (err) {
      this.progressText.textContent = "failed";
      fill(this.outcomes, message("error", describeError(err)));
      this.uploadButton.disabled = false;
      return;
    }
    this.uploadButton.disabled = false;
    this.progress.value = 100;
    this.progressText.textContent = "done";
    this.fileInput.value = "";
    const items = result.files.map((f) => h("li", { class: `outcome outcome-${f.outcome}`, dataset: { outcome: f.outcome } },
      h("code", { text: f.source }), " ",
      h("span", { class: "outcome-label", text: OUTCOME_TEXT[f.outcome] || f.outcome }),
      f.chunks ? ` · ${f.chunks} chunk${f.chunks === 1 ? "" : "s"}` : "",
      f.reason ? h("span", { class: "reason" }, ": ", f.reason) : ""));
    const bad = result.files.filter((f) => f.outcome === "failed" || f.outcome === "skipped").length;
    fill(this.outcomes,
      message(bad ? "warning" : "ok", `Upload to ${result.collection}: ${result.files.length - bad} indexed or unchanged, ${bad} skipped or failed.`),
      h("ul", { class: "outcome-list" }, items));
    this.collectionInput.value = result.collection;
    this.onChanged();
    await this.load();
  }
}
