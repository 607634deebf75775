// Calls to the service. The API key lives in sessionStorage only (this tab), never localStorage,
// and goes out as "Authorization: Bearer KEY" on every call.

import { readEvents } from "./sse.js";

const KEY_NAME = "ragfirst.apiKey";

export function getKey() {
  try {
    return sessionStorage.getItem(KEY_NAME) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

function authHeaders(extra = {}) {
  const key = getKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** An error response: HTTP status, the service's ``error`` name and ``detail``, any sources. */
export class ApiError extends Error {
  constructor(status, body, fallbackText = "") {
    const detail = (body && typeof body.detail === "string" && body.detail)
      || (body && body.detail && JSON.stringify(body.detail))
      || fallbackText || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.error = (body && body.error) || "";
    this.detail = detail;
    this.sources = (body && Array.isArray(body.sources) && body.sources) || [];
  }
}

// Someone (the app) wants to know when a key is missing or refused, wherever it happened.
let unauthorizedHandler = () => {};
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

async function errorFrom(response) {
  const text = await response.text().catch(() => "");
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  const err = new ApiError(response.status, body, text.slice(0, 300) || response.statusText);
  if (response.status === 401) unauthorizedHandler(err);
  return err;
}

/** fetch with the key; resolves to the parsed JSON body, or throws ApiError. */
export async function api(path, { method = "GET", json, signal } = {}) {
  const headers = authHeaders(json === undefined ? {} : { "Content-Type": "application/json" });
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, body: json === undefined ? undefined : JSON.stringify(json),
    });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, null, `the service could not be reached (${exc.message})`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

/** fetch a binary body (an image) with the key; resolves to a Blob. */
export async function apiBlob(path) {
  let response;
  try {
    response = await fetch(path, { headers: authHeaders() });
  } catch (exc) {
    throw new ApiError(0, null, `the service could not be reached (${exc.message})`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.blob();
}

/**
 * POST /v1/query with stream: true. handlers: sources(list), delta(text), answer(QueryResponse),
 * error(ApiError). Resolves when the stream ends; an HTTP error before the stream is handlers.error.
 */
export async function streamQuery(body, handlers, signal) {
  let response;
  try {
    response = await fetch("/v1/query", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ ...body, stream: true }),
      signal,
    });
  } catch (exc) {
    if (exc.name === "AbortError") return;
    handlers.error(new ApiError(0, null, `the service could not be reached (${exc.message})`));
    return;
  }
  if (!response.ok) {
    handlers.error(await errorFrom(response));
    return;
  }
  let finished = false;
  try {
    await readEvents(response, ({ event, data }) => {
      let payload;
      try {
        payload = JSON.parse(data);
      } catch {
        return; // not ours (a ping has no data; anything else unparseable is ignored)
      }
      if (event === "sources") handlers.sources(payload);
      else if (event === "delta") handlers.delta(payload.text || "");
      else if (event === "answer") {
        finished = true;
        handlers.answer(payload);
      } else if (event === "error") {
        finished = true;
        handlers.error(new ApiError(payload.status || 500, payload));
      }
    });
  } catch (exc) {
    if (exc.name === "AbortError") return;
    if (!finished) handlers.error(new ApiError(0, null, `the stream broke off (${exc.message})`));
    return;
  }
  if (!finished) handlers.error(new ApiError(0, null, "the stream ended before the answer came"));
}

/**
 * POST /v1/documents (multipart: files + collection) with XMLHttpRequest, for upload progress.
 * onProgress(loaded, total) while the bytes go; resolves to the UploadResponse or rejects ApiError.
 */
export function uploadFiles(files, collection, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    form.append("collection", collection);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/documents");
    const key = getKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    };
    xhr.upload.onload = () => onProgress(1, 1, true);
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
      else {
        const err = new ApiError(xhr.status, body, xhr.responseText.slice(0, 300) || xhr.statusText);
        if (xhr.status === 401) unauthorizedHandler(err);
        reject(err);
      }
    };
    xhr.onerror = () => reject(new ApiError(0, null, "the upload could not reach the service"));
    xhr.onabort = () => reject(new ApiError(0, null, "the upload was cancelled"));
    xhr.send(form);
  });
}

/** A one-line description of an error for the page. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return `Unexpected error: ${err && err.message ? err.message : err}`;
  if (err.status === 0) return `Error: ${err.detail}`;
  const what = {
    400: "Bad request", 401: "API key needed", 403: "Not allowed with this key", 404: "Not found",
    409: "Conflict", 413: "Too large", 422: "Could not be processed", 500: "Server error",
    503: "Service unavailable", 504: "Timed out",
  }[err.status] || (err.status >= 500 ? "Server error" : "Request refused");
  return `${what} (${err.status}${err.error ? ` ${err.error}` : ""}): ${err.detail}`;
}
