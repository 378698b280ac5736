// API access: the fetch wrapper (API key header, problem+json errors), the API key panel, and the
// error / info messages at the top of the page.

import { $ } from "./common.js";

const KEY_STORE = "clapsearch.apiKey";

// ---------------------------------------------------------------------------------- API access

export function apiKey() {
  try { return localStorage.getItem(KEY_STORE) || ""; } catch { return ""; }
}

/** URL for media the browser fetches by itself (<audio src>): keys never go in URLs (they end up in
 * logs); such requests carry the HttpOnly cookie that mediaSession() obtained instead. */
export function mediaUrl(url) {
  return url;
}

/** Trade the saved key for the media cookie (POST /v1/media-session); quiet when it fails: the
 * API calls themselves will say what is wrong with the key. */
export async function mediaSession() {
  const key = apiKey();
  if (!key) return;
  try {
    await fetch("/v1/media-session", { method: "POST", headers: { "X-API-Key": key }, credentials: "same-origin" });
  } catch { /* offline: the next search says so */ }
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(path, { method = "GET", params, body, json, signal } = {}) {
  const url = new URL(path, location.origin);
  if (params) {
    for (const [k, v] of params) url.searchParams.append(k, v);
  }
  const headers = { Accept: "application/json, application/problem+json" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let payload = body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(url.pathname + url.search, { method, headers, body: payload, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { title: "Network error", detail: `${method} ${url.pathname}: ${err.message}` });
  }
  const type = res.headers.get("content-type") || "";
  let data = null;
  if (type.includes("json")) {
    try { data = await res.json(); } catch { data = null; }
  } else if (!res.ok) {
    const text = await res.text().catch(() => "");
    data = { title: res.statusText || `HTTP ${res.status}`, detail: text.slice(0, 300) };
  }
  if (!res.ok) {
    const problem = data && typeof data === "object" ? data : {};
    if (!problem.title) problem.title = res.statusText || `HTTP ${res.status}`;
    if (Array.isArray(problem.detail)) problem.detail = problem.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    const err = new ApiError(res.status, problem);
    // a 401 for a key the user has replaced since: the answer to an old question, not news
    err.stale = res.status === 401 && apiKey() !== key;
    if (res.status === 401 && !err.stale) needApiKey();
    if (res.status === 429) {
      const wait = res.headers.get("retry-after");
      if (wait) problem.detail = `${problem.detail || "slow down"} (retry in ${wait} s)`;
    }
    throw err;
  }
  return data;
}

// ------------------------------------------------------------------------------------- messages

export function showError(err, context = "") {
  if (err && (err.name === "AbortError" || err.stale)) return;
  const problem = err instanceof ApiError ? err.problem : { title: "Something went wrong", detail: String(err && err.message || err) };
  if (err instanceof ApiError && err.status === 401) {
    // one message for every request the missing key broke, not one per request
    showMessage("error", problem.title, `${problem.detail || "this server needs an API key"}. Enter it above.`,
      problem.code, "auth");
    return;
  }
  showMessage("error", problem.title, [context, problem.detail].filter(Boolean).join(": "), problem.code);
  if (!(err instanceof ApiError)) console.warn(err);
}

export function showMessage(kind, title, detail = "", code = "", key = "") {
  const box = $("#messages");
  if (key) {
    for (const m of box.querySelectorAll(".message")) if (m.dataset.key === key) m.remove();
  }
  // the same message twice in a row: bump a counter instead of stacking copies
  const last = box.lastElementChild;
  if (last && last.dataset.title === title && last.dataset.detail === detail) {
    const n = Number(last.dataset.count || 1) + 1;
    last.dataset.count = n;
    $(".message-count", last).textContent = `×${n}`;
    return last;
  }
  const el = document.createElement("div");
  el.className = `message ${kind}`;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  el.dataset.testid = kind === "error" ? "error-message" : "info-message";
  el.dataset.title = title;
  el.dataset.detail = detail;
  if (key) el.dataset.key = key;
  el.innerHTML = `<div class="message-body"><strong class="message-title"></strong>
      <span class="message-count"></span><span class="message-detail"></span>
      <code class="message-code"></code></div>
    <button type="button" class="message-close" aria-label="Dismiss message" data-testid="dismiss-message">×</button>`;
  $(".message-title", el).textContent = title;
  $(".message-detail", el).textContent = detail;
  $(".message-code", el).textContent = code || "";
  $(".message-close", el).addEventListener("click", () => el.remove());
  box.append(el);
  while (box.children.length > 5) box.firstElementChild.remove();
  if (kind !== "error") setTimeout(() => el.remove(), 6000);
  return el;
}

// --------------------------------------------------------------------------------------- API key

export function needApiKey() {
  const panel = $("#apikey-panel");
  if (panel.hidden) {
    panel.hidden = false;
    $("#apikey-toggle").setAttribute("aria-expanded", "true");
    $("#apikey-input").focus();
  }
}

/** onChange: called after the key was saved or removed, to reload what it may have unlocked. */
export function setupApiKey(onChange) {
  const panel = $("#apikey-panel");
  $("#apikey-input").value = apiKey();
  $("#apikey-toggle").addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    $("#apikey-toggle").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) $("#apikey-input").focus();
  });
  $("#apikey-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("#apikey-input").value.trim();
    try {
      if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
    } catch (err) { showError(err, "could not store the key"); }
    panel.hidden = true;
    $("#apikey-toggle").setAttribute("aria-expanded", "false");
    $("#apikey-toggle").classList.toggle("on", !!key);
    showMessage("info", key ? "API key saved" : "API key removed");
    for (const m of document.querySelectorAll(".message.error")) m.remove();
    mediaSession().finally(onChange);
  });
  $("#apikey-clear").addEventListener("click", () => {
    try { localStorage.removeItem(KEY_STORE); } catch { /* private mode */ }
    $("#apikey-input").value = "";
    $("#apikey-toggle").classList.remove("on");
  });
  $("#apikey-toggle").classList.toggle("on", !!apiKey());
  mediaSession();
}

