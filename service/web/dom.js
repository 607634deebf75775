// DOM building without innerHTML: every piece of data becomes a text node.

/**
 * h("p", {class: "note", text: "hi", attrs: {id: "x"}, on: {click: fn}}, child, "text", ...)
 * Children may be nodes, strings (text nodes), numbers, null/undefined/false (skipped) or arrays.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "on") for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
    else if (key === "attrs") for (const [name, v] of Object.entries(value)) {
      if (v !== undefined && v !== null && v !== false) el.setAttribute(name, v === true ? "" : String(v));
    }
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el[key] = value; // properties: id, type, value, htmlFor, name, disabled, checked, ...
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace every child of ``el`` with ``children``. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A message box: kind is "error", "warning", "info" or "ok". */
export function message(kind, ...children) {
  return h("div", { class: `msg msg-${kind}`, attrs: { role: kind === "error" ? "alert" : "status" } }, ...children);
}

let counter = 0;
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled form field: returns {field, input}. */
export function labelled(labelText, input, hint) {
  if (!input.id) input.id = uid("f");
  const parts = [h("label", { htmlFor: input.id, text: labelText }), input];
  if (hint) {
    const hintEl = h("span", { class: "hint", id: uid("hint"), text: hint });
    input.setAttribute("aria-describedby", hintEl.id);
    parts.push(hintEl);
  }
  return { field: h("div", { class: "field" }, ...parts), input };
}

export function formatNumber(x, digits = 0) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function percent(x) {
  if (x === null || x === undefined) return "–";
  return `${(x * 100).toFixed(0)}%`;
}
