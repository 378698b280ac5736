// clapsearch web page: text / example search, waveform cards, zero-shot tagging, ingest jobs.
// Plain ES module, no dependencies. Talks to the JSON API of service/ (see docs of /v1/*).

const $ = (sel, root = document) => root.querySelector(sel);
const KEY_STORE = "clapsearch.apiKey";
const PEAK_BUCKETS = 240;
const TERMINAL = new Set(["finished", "failed"]);

const state = {
  query: null,          // {kind: "text", q} | {kind: "file", file} | {kind: "item", id, name}
  offset: 0,
  limit: 20,
  hits: [],             // [{hit, card, peaks}]
  seq: 0,               // guards against out-of-order responses
  current: null,        // the entry whose audio is loaded in the player
  tagTarget: null,      // {kind: "item", id, name} | {kind: "file", file}
  droppedFile: null,
  job: null,
  jobTimer: null,
};

const player = $("#player");

// ---------------------------------------------------------------------------------- API access

function apiKey() {
  try { return localStorage.getItem(KEY_STORE) || ""; } catch { return ""; }
}

/** URL for media the browser fetches by itself (<audio src>, peaks): carries ?api_key= when set. */
function mediaUrl(url) {
  const key = apiKey();
  if (!key) return url;
  const u = new URL(url, location.origin);
  u.searchParams.set("api_key", key);
  return u.pathname + u.search;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, { method = "GET", params, body, json, signal } = {}) {
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

function showError(err, context = "") {
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

function showMessage(kind, title, detail = "", code = "", key = "") {
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

function needApiKey() {
  const panel = $("#apikey-panel");
  if (panel.hidden) {
    panel.hidden = false;
    $("#apikey-toggle").setAttribute("aria-expanded", "true");
    $("#apikey-input").focus();
  }
}

function setupApiKey() {
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
    loadCollections();
    loadJobs();
    if (state.query) runSearch(false);
  });
  $("#apikey-clear").addEventListener("click", () => {
    try { localStorage.removeItem(KEY_STORE); } catch { /* private mode */ }
    $("#apikey-input").value = "";
    $("#apikey-toggle").classList.remove("on");
  });
  $("#apikey-toggle").classList.toggle("on", !!apiKey());
}

// --------------------------------------------------------------------------------------- filters

function filterParams() {
  const p = [];
  const val = (id) => $(id).value.trim();
  if (val("#f-collection")) p.push(["collection", val("#f-collection")]);
  if (val("#f-min-score") !== "") p.push(["min_score", val("#f-min-score")]);
  if (val("#f-min-duration") !== "") p.push(["min_duration", val("#f-min-duration")]);
  if (val("#f-max-duration") !== "") p.push(["max_duration", val("#f-max-duration")]);
  for (const box of document.querySelectorAll("#f-formats input:checked")) p.push(["format", box.value]);
  for (const t of val("#f-tag").split(",").map((s) => s.trim()).filter(Boolean)) p.push(["tag", t]);
  if (val("#f-path-prefix")) p.push(["path_prefix", val("#f-path-prefix")]);
  if ($("#f-segments").checked) p.push(["segments", "true"]);
  return p;
}

function applyFiltersFromUrl(sp) {
  const set = (id, name) => { if (sp.has(name)) $(id).value = sp.get(name); };
  if (sp.has("collection")) ensureCollectionOption(sp.get("collection"));
  set("#f-collection", "collection");
  set("#f-min-score", "min_score");
  set("#f-min-duration", "min_duration");
  set("#f-max-duration", "max_duration");
  set("#f-path-prefix", "path_prefix");
  if (sp.has("limit")) ensureLimitOption(sp.get("limit"));
  set("#f-limit", "limit");
  const formats = new Set(sp.getAll("format").map((f) => f.toUpperCase()));
  for (const box of document.querySelectorAll("#f-formats input")) box.checked = formats.has(box.value);
  if (sp.getAll("tag").length) $("#f-tag").value = sp.getAll("tag").join(", ");
  $("#f-segments").checked = ["1", "true", "yes"].includes((sp.get("segments") || "").toLowerCase());
  updateMinScoreOut();
}

function ensureCollectionOption(name) {
  const sel = $("#f-collection");
  if (![...sel.options].some((o) => o.value === name)) sel.add(new Option(name, name));
}

function ensureLimitOption(n) {
  const sel = $("#f-limit");
  if (/^\d+$/.test(n) && ![...sel.options].some((o) => o.value === n)) sel.add(new Option(n, n));
}

function updateMinScoreOut() {
  const v = $("#f-min-score").value;
  $("#f-min-score-out").textContent = v === "" ? "any" : Number(v).toFixed(2);
}

async function loadCollections() {
  try {
    const data = await api("/v1/collections");
    const sel = $("#f-collection");
    const chosen = sel.value || "default";
    sel.textContent = "";
    const list = data.collections || [];
    if (!list.some((c) => c.name === chosen)) sel.add(new Option(chosen, chosen));
    for (const c of list) {
      const label = `${c.name} (${c.files} file${c.files === 1 ? "" : "s"})${c.served === false ? " ⚠" : ""}`;
      const opt = new Option(label, c.name);
      opt.title = [`${c.files} files, ${(c.hours || 0).toFixed(2)} h`, c.failed ? `${c.failed} failed` : "",
        c.segments ? "moments indexed" : "", c.served === false ? `indexed with another model (${c.model})` : ""]
        .filter(Boolean).join(" · ");
      sel.add(opt);
    }
    sel.value = chosen;
  } catch (err) {
    showError(err, "collections");
  }
}

async function loadModel() {
  try {
    const res = await fetch("/readyz", { headers: { Accept: "application/json" } });
    const data = await res.json();
    if (data && data.model && data.model.name) setModel(data.model.name);
    if (!res.ok) {
      const why = Object.entries(data.index_errors || {}).map(([k, v]) => `${k}: ${v}`).join("; ");
      showMessage("error", "Service not ready", why || "the model or an index is still loading");
    }
  } catch (err) {
    showError(err, "readiness");
  }
}

function setModel(name) {
  $("#model-name").textContent = name;
}

// ---------------------------------------------------------------------------------------- search

/** Paths are shown right-aligned-ellipsised (direction: rtl); LRMs keep their slashes in place. */
function ltr(text) {
  return `\u200E${text}\u200E`;
}

function fmtTime(s) {
  if (s == null || !isFinite(s)) return "–";
  if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  const sec = Math.round(s - m * 60);
  return `${m}:${String(sec).padStart(2, "0")}`;
}

function searchText(q) {
  q = q.trim();
  if (!q) {
    $("#q").focus();
    return;
  }
  state.query = { kind: "text", q };
  runSearch(false);
}

function searchFile(file) {
  if (!file) return;
  state.droppedFile = file;
  state.query = { kind: "file", file };
  runSearch(false);     // the clip becomes the tagging target once the server could decode it
}

function searchSimilar(id, name) {
  state.query = { kind: "item", id, name };
  runSearch(false);
}

async function runSearch(append) {
  const query = state.query;
  if (!query) return;
  state.limit = Number($("#f-limit").value) || 20;
  if (!append) state.offset = 0;
  const params = filterParams();
  params.push(["limit", String(state.limit)], ["offset", String(state.offset)]);
  const seq = ++state.seq;
  const summary = $("#results-summary");
  summary.classList.add("busy");
  document.body.classList.add("searching");
  $("#more-btn").disabled = true;
  let data;
  try {
    if (query.kind === "text") {
      data = await api("/v1/search", { params: [["q", query.q], ...params] });
    } else if (query.kind === "item") {
      data = await api(`/v1/items/${query.id}/similar`, { params });
    } else {
      const form = new FormData();
      form.append("file", query.file, query.file.name);
      data = await api("/v1/search/audio", { method: "POST", params, body: form });
    }
  } catch (err) {
    if (seq === state.seq) {
      summary.classList.remove("busy");
      document.body.classList.remove("searching");
      $("#more-btn").disabled = false;
      showError(err, query.kind === "file" ? `search with “${query.file.name}”` : "search");
    }
    return;
  }
  if (seq !== state.seq) return;
  summary.classList.remove("busy");
  document.body.classList.remove("searching");
  $("#more-btn").disabled = false;
  if (!append) {
    stopIfGone();
    state.hits = [];
    $("#results").textContent = "";
    updateUrl(query);
    if (query.kind === "file") setTagTarget({ kind: "file", file: query.file, name: query.file.name });
  }
  setModel(data.model);
  const start = state.hits.length;
  for (const [i, hit] of data.results.entries()) addCard(hit, start + i + 1);
  state.offset = data.offset + data.results.length;
  $("#more-btn").hidden = data.results.length < data.limit;
  renderSummary(query, data);
}

function renderSummary(query, data) {
  const what = query.kind === "text" ? `“${query.q}”`
    : query.kind === "item" ? `sounds like “${query.name || "item " + query.id}”`
    : `sounds like your clip “${query.file.name}”`;
  const n = state.hits.length;
  const s = $("#results-summary");
  s.textContent = "";
  const main = document.createElement("span");
  main.className = "summary-main";
  main.textContent = n ? `${n} result${n === 1 ? "" : "s"} for ${what}` : `Nothing found for ${what}`;
  const meta = document.createElement("span");
  meta.className = "summary-meta";
  meta.innerHTML = `<span id="took-ms" data-testid="took-ms"></span> · <span class="model"></span> · <span class="coll"></span>`;
  $("#took-ms", meta).textContent = `${data.took_ms.toFixed(1)} ms${data.cached ? " (cached)" : ""}`;
  $(".model", meta).textContent = data.model;
  $(".coll", meta).textContent = `${data.collection} v${data.index_version}`;
  s.append(main, meta);
  if (!n) {
    const tip = document.createElement("span");
    tip.className = "empty-hint";
    tip.textContent = filterParams().length > 1 ? "Try loosening the filters." : "Try other words.";
    s.append(tip);
  }
}

function updateUrl(query) {
  const sp = new URLSearchParams();
  if (query.kind === "text") sp.set("q", query.q);
  else if (query.kind === "item") sp.set("similar", String(query.id));
  else return;   // an uploaded clip cannot live in a link
  for (const [k, v] of filterParams()) {
    if (k === "collection" && v === "default") continue;
    sp.append(k, v);
  }
  if (state.limit !== 20) sp.set("limit", String(state.limit));
  const url = `${location.pathname}?${sp}`;
  if (url !== location.pathname + location.search) history.pushState({ q: sp.toString() }, "", url);
  document.title = query.kind === "text" ? `${query.q} · clapsearch` : "clapsearch";
}

function fromUrl() {
  const sp = new URLSearchParams(location.search);
  applyFiltersFromUrl(sp);
  const q = sp.get("q");
  const similar = sp.get("similar");
  if (q) {
    $("#q").value = q;
    state.query = { kind: "text", q };
    runSearch(false);
  } else if (similar && /^\d+$/.test(similar)) {
    state.query = { kind: "item", id: Number(similar), name: `item ${similar}` };
    runSearch(false);
  }
}

// ----------------------------------------------------------------------------------------- cards

function addCard(hit, rank) {
  const li = document.createElement("li");
  li.className = "card";
  li.tabIndex = 0;
  li.dataset.testid = "result-card";
  li.dataset.id = hit.id;
  const seg = isMoment(hit);
  li.setAttribute("aria-label", `${rank}. ${hit.name}, score ${hit.score.toFixed(3)}${seg ? `, moment at ${fmtTime(hit.start_s)}` : ""}`);
  li.innerHTML = `
    <button type="button" class="play" aria-label="Play" data-testid="play">
      <svg viewBox="0 0 24 24" aria-hidden="true"><path class="i-play" d="M8 5v14l11-7z"/><path class="i-pause" d="M7 5h4v14H7zM13 5h4v14h-4z"/></svg>
    </button>
    <div class="card-main">
      <div class="card-head">
        <span class="rank">${rank}</span>
        <span class="name" data-testid="result-name"></span>
        <span class="score" data-testid="score" title="cosine similarity">
          <span class="score-bar"><span></span></span><span class="score-num"></span>
        </span>
      </div>
      <div class="wave-wrap">
        <canvas class="wave" data-testid="waveform" role="slider" aria-label="Waveform: click to seek"
                aria-valuemin="0" aria-valuenow="0"></canvas>
        <span class="wave-note"></span>
      </div>
      <div class="card-foot">
        <span class="path" data-testid="result-path"></span>
        <span class="meta"></span>
        <span class="actions">
          <button type="button" class="ghost small similar" data-testid="similar">Similar</button>
          <button type="button" class="ghost small tag" data-testid="tag-this">Tag</button>
        </span>
      </div>
    </div>`;
  $(".name", li).textContent = hit.name;
  $(".name", li).title = hit.name;
  $(".path", li).textContent = ltr(hit.path);
  $(".path", li).title = hit.path;
  const score = Math.max(0, Math.min(1, hit.score));
  $(".score-bar > span", li).style.width = `${(score * 100).toFixed(1)}%`;
  $(".score-num", li).textContent = hit.score.toFixed(3);
  const meta = [fmtTime(hit.duration_s), hit.format || "?"];
  if (seg) meta.unshift(`moment ${fmtTime(hit.start_s)}–${fmtTime(hit.end_s)}`);
  if (hit.tags && Object.keys(hit.tags).length) {
    meta.push(Object.entries(hit.tags).slice(0, 4).map(([k, v]) => `${k}: ${v}`).join(", "));
  }
  $(".meta", li).textContent = meta.join(" · ");
  const entry = { hit, card: li, peaks: null, canvas: $(".wave", li) };
  state.hits.push(entry);

  $(".play", li).addEventListener("click", () => togglePlay(entry));
  $(".similar", li).addEventListener("click", () => searchSimilar(hit.id, hit.name));
  $(".tag", li).addEventListener("click", () => {
    setTagTarget({ kind: "item", id: hit.id, name: hit.name });
    $("#labels-input").focus();
  });
  entry.canvas.addEventListener("click", (ev) => {
    const rect = entry.canvas.getBoundingClientRect();
    const frac = Math.max(0, Math.min(1, (ev.clientX - rect.left) / rect.width));
    seek(entry, frac * entryDuration(entry));
  });
  entry.canvas.addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
    ev.preventDefault();
    const base = state.current === entry ? player.currentTime : (hit.start_s || 0);
    seek(entry, Math.max(0, base + (ev.key === "ArrowRight" ? 2 : -2)));
  });
  entry.canvas.tabIndex = -1;
  $("#results").append(li);
  loadPeaks(entry);
}

/** A hit on a window inside a long file (with segments=true short files come back whole). */
function isMoment(hit) {
  if (hit.start_s == null || hit.end_s == null) return false;
  if (hit.segment_id != null) return true;
  return hit.start_s > 0.05 || (hit.duration_s != null && hit.end_s < hit.duration_s - 0.05);
}

function entryDuration(entry) {
  if (state.current === entry && isFinite(player.duration) && player.duration > 0) return player.duration;
  return entry.hit.duration_s || (entry.peaks && entry.peaks.duration_s) || 0;
}

async function loadPeaks(entry) {
  try {
    const url = mediaUrl(entry.hit.peaks_url);
    entry.peaks = await api(url, { params: [["n", String(PEAK_BUCKETS)]] });
    $(".wave-note", entry.card).textContent = "";
  } catch (err) {
    entry.peaks = null;
    const note = $(".wave-note", entry.card);
    note.textContent = `no waveform: ${err.problem ? err.problem.title : err.message}`;
    if (err.status === 401) showError(err, "waveform");
  }
  drawWave(entry);
}

const colors = {};
function readColors() {
  const cs = getComputedStyle(document.documentElement);
  for (const name of ["wave", "wave-played", "wave-segment", "wave-cursor", "wave-mid"]) {
    colors[name] = cs.getPropertyValue(`--${name}`).trim() || "#888";
  }
}

function drawWave(entry) {
  const canvas = entry.canvas;
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const dur = entryDuration(entry);
  const { start_s: s0, end_s: s1 } = entry.hit;
  if (isMoment(entry.hit) && dur > 0) {
    ctx.fillStyle = colors["wave-segment"];
    const x0 = (s0 / dur) * w;
    ctx.fillRect(x0, 0, Math.max(2, ((s1 - s0) / dur) * w), h);
  }
  const mid = h / 2;
  ctx.fillStyle = colors["wave-mid"];
  ctx.fillRect(0, Math.floor(mid), w, Math.max(1, dpr | 0));
  const playing = state.current === entry;
  const pos = playing && dur > 0 ? player.currentTime / dur : -1;
  const peaks = entry.peaks;
  if (peaks && peaks.n > 0) {
    // normalise quiet files a little so their shape is visible, but keep loud ones honest
    let top = 0;
    for (let i = 0; i < peaks.n; i++) top = Math.max(top, Math.abs(peaks.min[i]), Math.abs(peaks.max[i]));
    const gain = top > 0 ? Math.min(4, 0.95 / top) : 1;
    const bar = w / peaks.n;
    for (let i = 0; i < peaks.n; i++) {
      const x = i * bar;
      const hi = Math.min(1, peaks.max[i] * gain);
      const lo = Math.max(-1, peaks.min[i] * gain);
      const y0 = mid - hi * (mid - 1);
      const y1 = mid - lo * (mid - 1);
      ctx.fillStyle = pos >= 0 && (i + 0.5) / peaks.n <= pos ? colors["wave-played"] : colors.wave;
      ctx.fillRect(x, y0, Math.max(1, bar - (bar > 3 ? 1 : 0)), Math.max(dpr, y1 - y0));
    }
  }
  if (pos >= 0) {
    ctx.fillStyle = colors["wave-cursor"];
    ctx.fillRect(Math.min(w - 2 * dpr, pos * w), 0, 2 * dpr, h);
    canvas.setAttribute("aria-valuenow", player.currentTime.toFixed(1));
  }
  canvas.setAttribute("aria-valuemax", dur ? dur.toFixed(1) : "0");
}

function redrawAll() {
  readColors();
  for (const e of state.hits) drawWave(e);
}

// --------------------------------------------------------------------------------------- playback

function markPlaying() {
  for (const e of state.hits) {
    const on = e === state.current && !player.paused;
    e.card.classList.toggle("playing", on);
    e.card.classList.toggle("current", e === state.current);
    const btn = $(".play", e.card);
    btn.setAttribute("aria-label", on ? "Pause" : "Play");
    btn.setAttribute("aria-pressed", String(on));
  }
}

function load(entry) {
  if (state.current && state.current !== entry) {
    const prev = state.current;
    state.current = entry;
    drawWave(prev);
  }
  state.current = entry;
  const src = mediaUrl(entry.hit.audio_url);
  if (player.getAttribute("src") !== src) {
    player.preload = "auto";
    player.src = src;
  }
}

async function play() {
  try {
    await player.play();
  } catch (err) {
    if (err.name === "AbortError") return;   // a newer load() interrupted this one
    showMessage("error", "Playback failed", err.message);
  }
}

function togglePlay(entry) {
  if (state.current === entry && player.getAttribute("src")) {
    if (player.paused) play(); else player.pause();
    return;
  }
  seek(entry, entry.hit.start_s || 0);
}

function seek(entry, t) {
  const fresh = state.current !== entry || !player.getAttribute("src");
  load(entry);
  const go = () => {
    try { player.currentTime = t; } catch { /* not seekable yet */ }
    drawWave(entry);
  };
  if (player.readyState >= 1) go();
  else player.addEventListener("loadedmetadata", go, { once: true });
  if (fresh || player.paused) play();
  markPlaying();
}

function stopIfGone() {
  if (state.current) {
    player.pause();
    player.removeAttribute("src");
    player.load();
    state.current = null;
  }
}

let raf = 0;
function tick() {
  if (state.current) drawWave(state.current);
  raf = player.paused ? 0 : requestAnimationFrame(tick);
}

function setupPlayer() {
  player.addEventListener("play", () => { markPlaying(); if (!raf) raf = requestAnimationFrame(tick); });
  player.addEventListener("pause", () => { markPlaying(); if (state.current) drawWave(state.current); });
  player.addEventListener("ended", () => { markPlaying(); if (state.current) drawWave(state.current); });
  player.addEventListener("loadedmetadata", () => { if (state.current) drawWave(state.current); });
  player.addEventListener("error", async () => {
    const src = player.getAttribute("src");
    if (!src || !state.current) return;
    const name = state.current.hit.name;
    // ask the server why: its problem+json says more than MediaError does
    try {
      const res = await fetch(src, { headers: { Range: "bytes=0-0" } });
      if (!res.ok) {
        const p = await res.json().catch(() => ({}));
        if (res.status === 401) needApiKey();
        showMessage("error", p.title || `HTTP ${res.status}`, [name, p.detail].filter(Boolean).join(": "), p.code);
        return;
      }
    } catch { /* fall through */ }
    const codes = { 1: "aborted", 2: "network error", 3: "could not decode", 4: "format not supported by this browser" };
    showMessage("error", "Playback failed", `${name}: ${codes[player.error && player.error.code] || "unknown error"}`);
    markPlaying();
  });
}

// --------------------------------------------------------------------------------------- tagging

function setTagTarget(target) {
  state.tagTarget = target;
  const el = $("#classify-target");
  el.textContent = target.kind === "item" ? target.name : `${target.file.name} (your clip)`;
  el.classList.remove("muted");
  $("#classify-results").textContent = "";
  $("#classify-meta").textContent = "";
  for (const e of state.hits) e.card.classList.toggle("tagging", target.kind === "item" && e.hit.id === target.id);
  describe(target);
}

function targetForm(target) {
  const form = new FormData();
  if (target.kind === "item") form.append("id", String(target.id));
  else form.append("file", target.file, target.file.name);
  return form;
}

async function describe(target) {
  const list = $("#texts-results");
  list.innerHTML = `<li class="muted">listening…</li>`;
  try {
    const params = [["limit", "8"]];
    if (target.kind === "item") params.push(["id", String(target.id)]);
    const body = target.kind === "file" ? targetForm(target) : undefined;
    const data = await api("/v1/search/texts", { method: "POST", params, body });
    if (state.tagTarget !== target) return;
    list.textContent = "";
    const top = data.results.length ? data.results[0].score : 1;
    for (const r of data.results) {
      list.append(barRow(r.text, r.score, top > 0 ? r.score / top : 0, `cosine ${r.score.toFixed(3)}`, "text-row"));
    }
    if (!data.results.length) list.innerHTML = `<li class="muted">no texts</li>`;
  } catch (err) {
    if (state.tagTarget === target) list.innerHTML = `<li class="muted">—</li>`;
    showError(err, "what it sounds like");
  }
}

function barRow(label, value, frac, sub, testid) {
  const li = document.createElement("li");
  li.className = "bar-row";
  li.dataset.testid = testid;
  li.innerHTML = `<span class="bar-label"></span><span class="bar"><span></span></span>
    <span class="bar-value"></span><span class="bar-sub"></span>`;
  $(".bar-label", li).textContent = label;
  $(".bar-label", li).title = label;
  $(".bar > span", li).style.width = `${(Math.max(0, Math.min(1, frac)) * 100).toFixed(1)}%`;
  $(".bar-value", li).textContent = value.toFixed(3);
  $(".bar-sub", li).textContent = sub;
  return li;
}

async function classify(ev) {
  ev.preventDefault();
  const target = state.tagTarget;
  if (!target) {
    showMessage("error", "Pick a clip to tag", "press “Tag” on a result, or drop a clip on the page");
    return;
  }
  const labels = $("#labels-input").value.trim();
  if (!labels) {
    showMessage("error", "No candidate labels", "type a few labels, separated by commas");
    $("#labels-input").focus();
    return;
  }
  const form = targetForm(target);
  form.append("candidate_labels", labels);
  form.append("hypothesis_template", $("#template-input").value || "This is a sound of {}.");
  form.append("multi_label", $("#multi-label").checked ? "true" : "false");
  const btn = $("#classify-btn");
  btn.disabled = true;
  try {
    const data = await api("/v1/classify", { method: "POST", body: form });
    if (state.tagTarget !== target) return;
    const list = $("#classify-results");
    list.textContent = "";
    for (const l of data.labels) {
      list.append(barRow(l.label, l.score, l.score, `cos ${l.cosine.toFixed(3)}`, "label-row"));
    }
    $("#classify-meta").textContent =
      `${data.multi_label ? "independent scores" : "softmax over labels"} · “${data.hypothesis_template}” · ${data.took_ms.toFixed(1)} ms`;
    setModel(data.model);
  } catch (err) {
    showError(err, "tagging");
  } finally {
    btn.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------- ingest

async function submitIngest(ev) {
  ev.preventDefault();
  const body = {
    path: $("#ingest-path").value.trim(),
    collection: $("#ingest-collection").value.trim() || "default",
    segments: $("#ingest-segments").checked,
    prune: false,
  };
  const btn = $("#ingest-btn");
  btn.disabled = true;
  try {
    const job = await api("/v1/jobs/ingest", { method: "POST", json: body });
    watchJob(job);
    loadJobs();
  } catch (err) {
    btn.disabled = false;
    showError(err, "ingest");
  }
}

function renderJob(job) {
  const box = $("#job-current");
  box.hidden = false;
  box.dataset.status = job.status;
  const p = job.progress || {};
  const status = $("#job-status");
  status.textContent = job.status;
  status.dataset.status = job.status;
  status.className = `status ${job.status}`;
  $("#job-path").textContent = job.path;
  $("#job-path").title = job.path;
  const bar = $("#job-progress");
  const total = p.discovered || 0;
  if (job.status === "finished") {
    bar.max = 1; bar.value = 1;
  } else if (!total && job.status !== "failed") {
    bar.removeAttribute("value");          // indeterminate while files are being discovered
  } else {
    bar.max = Math.max(1, total);
    bar.value = Math.min(p.done || 0, bar.max);
  }
  const parts = [`${p.done || 0} / ${total}${p.discovery_done ? "" : "+"} files`,
    `${p.embedded || 0} embedded`, `${p.skipped || 0} unchanged`, `${p.failed || 0} errors`];
  if (p.audio_seconds) parts.push(`${fmtTime(p.audio_seconds)} of audio`);
  $("#job-counts").textContent = parts.join(" · ");
  if (job.error) $("#job-counts").textContent += ` — ${job.error}`;
}

function watchJob(job) {
  clearTimeout(state.jobTimer);
  state.job = job;
  renderJob(job);
  const poll = async () => {
    let next;
    try {
      next = await api(`/v1/jobs/${encodeURIComponent(job.id)}`);
    } catch (err) {
      showError(err, "ingest job");
      $("#ingest-btn").disabled = false;
      return;
    }
    if (state.job !== job) return;
    renderJob(next);
    if (TERMINAL.has(next.status)) {
      $("#ingest-btn").disabled = false;
      loadJobs();
      loadCollections();
      if (next.status === "finished") {
        const p = next.progress || {};
        showMessage("info", "Ingest finished", `${p.embedded || 0} new or changed files embedded, ${p.failed || 0} errors`);
      } else {
        showMessage("error", "Ingest failed", next.error || "the job failed");
      }
      return;
    }
    state.jobTimer = setTimeout(poll, 1000);
  };
  if (TERMINAL.has(job.status)) {
    $("#ingest-btn").disabled = false;
    return;
  }
  state.jobTimer = setTimeout(poll, 1000);
}

async function loadJobs() {
  let jobs;
  try {
    jobs = await api("/v1/jobs", { params: [["limit", "8"]] });
  } catch (err) {
    showError(err, "recent jobs");
    return;
  }
  const list = $("#jobs-list");
  list.textContent = "";
  if (!jobs.length) {
    list.innerHTML = `<li class="muted">none yet</li>`;
    return;
  }
  for (const job of jobs) {
    const li = document.createElement("li");
    li.dataset.testid = "job-row";
    const p = job.progress || {};
    li.innerHTML = `<span class="status"></span><span class="ellipsis path"></span><span class="muted small counts"></span>`;
    $(".status", li).textContent = job.status;
    $(".status", li).className = `status ${job.status}`;
    $(".path", li).textContent = ltr(job.path);
    $(".path", li).title = `${job.path} → ${job.collection}`;
    $(".counts", li).textContent = `${p.done || 0}/${p.discovered || 0}${p.failed ? ` · ${p.failed} err` : ""}`;
    list.append(li);
  }
}

// ---------------------------------------------------------------------------- drag and drop, keys

function setupDrop() {
  const overlay = $("#drop-overlay");
  let depth = 0;
  const hasFiles = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
  window.addEventListener("dragenter", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth++;
    overlay.hidden = false;
  });
  window.addEventListener("dragover", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", (ev) => {
    if (!hasFiles(ev)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  window.addEventListener("drop", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const file = ev.dataTransfer.files[0];
    if (file) searchFile(file);
  });
  $("#file-input").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (file) searchFile(file);
    ev.target.value = "";       // the same file again fires change again
  });
}

function isTyping(el) {
  return el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
}

function setupKeys() {
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const el = document.activeElement;
    if (ev.key === "/" && !isTyping(el)) {
      ev.preventDefault();
      $("#q").focus();
      $("#q").select();
      return;
    }
    if (ev.key === "Escape") {
      if (el === $("#q")) return;
      const msg = $("#messages").lastElementChild;
      if (msg) msg.remove();
      return;
    }
    const card = el && el.closest && el.closest(".card");
    if (!card || isTyping(el)) return;
    const entry = state.hits.find((e) => e.card === card);
    if (!entry) return;
    if (ev.key === " " && (el === card || el === entry.canvas)) {
      ev.preventDefault();
      togglePlay(entry);
    } else if ((ev.key === "ArrowDown" || ev.key === "j") && el === card) {
      ev.preventDefault();
      (card.nextElementSibling || card).focus();
    } else if ((ev.key === "ArrowUp" || ev.key === "k") && el === card) {
      ev.preventDefault();
      (card.previousElementSibling || card).focus();
    } else if (ev.key === "s" && el === card) {
      searchSimilar(entry.hit.id, entry.hit.name);
    }
  });
}

// ------------------------------------------------------------------------------------------ init

function debounce(fn, ms) {
  let t = 0;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

function init() {
  readColors();
  setupApiKey();
  setupPlayer();
  setupDrop();
  setupKeys();

  $("#search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    searchText($("#q").value);
  });
  $("#more-btn").addEventListener("click", () => runSearch(true));

  const refilter = debounce(() => { if (state.query) runSearch(false); }, 350);
  const filters = $("#filters-form");
  filters.addEventListener("change", refilter);
  filters.addEventListener("input", (ev) => {
    if (ev.target.id === "f-min-score") updateMinScoreOut();
  });
  filters.addEventListener("submit", (ev) => { ev.preventDefault(); refilter(); });
  filters.addEventListener("reset", () => setTimeout(() => { updateMinScoreOut(); refilter(); }, 0));

  $("#classify-form").addEventListener("submit", classify);
  $("#ingest-form").addEventListener("submit", submitIngest);

  window.addEventListener("popstate", () => {
    const sp = new URLSearchParams(location.search);
    if (sp.get("q") || sp.get("similar")) fromUrl();
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redrawAll);
  window.addEventListener("resize", debounce(redrawAll, 100));

  loadModel();
  loadCollections();
  loadJobs();
  fromUrl();
  if (!location.search) $("#q").focus();
}

init();
