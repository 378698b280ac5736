// Search and its results: text / clip / "similar" queries, the result cards, the summary line,
// "more" pagination, and the query in the page's URL.

import { $, state, player, ltr, fmtTime } from "./common.js";
import { api, mediaUrl, showError, showMessage } from "./api.js";
import { filterParams, applyFiltersFromUrl, setModel } from "./filters.js";
import { isMoment, entryDuration, loadPeaks, togglePlay, seek, stopIfGone } from "./waveform.js";
import { setTagTarget } from "./panels.js";

// ---------------------------------------------------------------------------------------- search

export function searchText(q) {
  q = q.trim();
  if (!q) {
    $("#q").focus();
    return;
  }
  // the box still shows what a "similar" or clip search is searching: Enter repeats that search
  if (state.query && state.query.kind !== "text" && q === queryLabel(state.query)) {
    runSearch(false);
    return;
  }
  state.query = { kind: "text", q };
  runSearch(false);
}

export function searchFile(file) {
  if (!file) return;
  state.droppedFile = file;
  state.query = { kind: "file", file };
  $("#q").value = queryLabel(state.query);
  runSearch(false);     // the clip becomes the tagging target once the server could decode it
}

/** "Similar" on a result: the search box says what is being searched; `focus` moves the keyboard
 *  to the first new result once they arrive (Enter on a focused card). */
export function searchSimilar(id, name, { focus = false } = {}) {
  state.query = { kind: "item", id, name };
  state.focusFirst = focus;
  $("#q").value = queryLabel(state.query);
  runSearch(false);
}

/** What the search box shows for a query. */
export function queryLabel(query) {
  if (query.kind === "text") return query.q;
  if (query.kind === "item") return `sounds like ${query.name || "item " + query.id}`;
  return `sounds like your clip ${query.file.name}`;
}

export async function runSearch(append) {
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
  for (const [i, hit] of data.items.entries()) addCard(hit, start + i + 1);
  state.offset = data.offset + data.items.length;
  state.total = data.total;   // what paging can walk (the API's list envelope)
  $("#more-btn").hidden = !data.items.length || state.offset >= data.total;
  renderSummary(query, data);
  if (!append && state.focusFirst && state.hits.length) state.hits[0].card.focus();
  state.focusFirst = false;
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
  const of = state.total > n ? ` of ${state.total}` : "";
  main.textContent = n ? `${n}${of} result${n === 1 && !of ? "" : "s"} for ${what}` : `Nothing found for ${what}`;
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

export function fromUrl() {
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
    $("#q").value = queryLabel(state.query);
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
  li.draggable = true;
  li.innerHTML = `
    <button type="button" class="play" aria-label="Play" data-testid="play">
      <svg viewBox="0 0 24 24" aria-hidden="true"><path class="i-play" d="M8 5v14l11-7z"/><path class="i-pause" d="M7 5h4v14H7zM13 5h4v14h-4z"/></svg>
    </button>
    <div class="card-main">
      <div class="card-head">
        <span class="rank" aria-hidden="true">${rank}</span>
        <span class="name" data-testid="result-name"></span>
        <span class="score" data-testid="score" title="cosine similarity">
          <span class="score-bar" aria-hidden="true"><span></span></span><span class="score-num"></span>
        </span>
      </div>
      <div class="wave-wrap">
        <canvas class="wave" data-testid="waveform" role="slider" aria-valuemin="0" aria-valuenow="0"></canvas>
        <span class="wave-note"></span>
      </div>
      <div class="card-foot">
        <span class="path" data-testid="result-path"></span>
        <span class="meta" data-testid="result-meta"></span>
        <span class="actions">
          <button type="button" class="ghost small similar" data-testid="similar">Similar</button>
          <button type="button" class="ghost small tag" data-testid="tag-this">Tag</button>
          <button type="button" class="ghost small copy" data-testid="copy-path">Copy path</button>
          <a class="button ghost small download" data-testid="download" draggable="false">Download</a>
        </span>
      </div>
    </div>`;
  $(".name", li).textContent = hit.name;
  $(".name", li).title = hit.name;
  $(".path", li).textContent = ltr(hit.path);
  $(".path", li).title = hit.path;
  $(".play", li).setAttribute("aria-label", `Play ${hit.name}`);
  $(".wave", li).setAttribute("aria-label", `Waveform of ${hit.name}: click to seek`);
  $(".similar", li).setAttribute("aria-label", `Find sounds similar to ${hit.name}`);
  $(".tag", li).setAttribute("aria-label", `Tag ${hit.name}`);
  $(".copy", li).setAttribute("aria-label", `Copy path of ${hit.name}`);
  $(".copy", li).title = "Copy the file's path on the server";
  const dl = $(".download", li);
  dl.href = mediaUrl(hit.audio_url);
  dl.download = hit.name;
  dl.setAttribute("aria-label", `Download ${hit.name}`);
  dl.title = "Download the audio file (or drag the result into a folder or a DAW)";
  const score = Math.max(0, Math.min(1, hit.score));
  $(".score-bar > span", li).style.width = `${(score * 100).toFixed(1)}%`;
  $(".score-num", li).textContent = hit.score.toFixed(3);
  const meta = [fmtTime(hit.duration_s), hit.format || "?"];
  if (seg) meta.unshift(`moment ${fmtTime(hit.start_s)}–${fmtTime(hit.end_s)}`);
  if (hit.tags && Object.keys(hit.tags).length) {
    meta.push(Object.entries(hit.tags).slice(0, 4).map(([k, v]) => `${k}: ${v}`).join(", "));
  }
  $(".meta", li).textContent = meta.join(" · ");
  $(".meta", li).title = meta.join(" · ");
  const entry = { hit, card: li, peaks: null, canvas: $(".wave", li) };
  state.hits.push(entry);

  $(".play", li).addEventListener("click", () => togglePlay(entry));
  $(".similar", li).addEventListener("click", () => searchSimilar(hit.id, hit.name));
  $(".copy", li).addEventListener("click", () => copyPath(hit.path));
  li.addEventListener("dragstart", (ev) => dragOut(ev, hit));
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


// ------------------------------------------------------------------------- copy path, drag out

async function copyPath(path) {
  try {
    await navigator.clipboard.writeText(path);
  } catch {
    // no clipboard API (an insecure origin): the old way, through a selected text field
    const ta = document.createElement("textarea");
    ta.value = path;
    ta.setAttribute("aria-hidden", "true");
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    if (!ok) {
      showMessage("error", "Could not copy the path", path);
      return;
    }
  }
  showMessage("info", "Path copied", path);
}

const MIME = {
  wav: "audio/wav", flac: "audio/flac", ogg: "audio/ogg", oga: "audio/ogg", opus: "audio/ogg", mp3: "audio/mpeg",
  aif: "audio/aiff", aiff: "audio/aiff", au: "audio/basic", caf: "audio/x-caf", w64: "audio/x-w64",
  aifc: "audio/aiff", m4a: "audio/mp4", m4b: "audio/mp4", mp4: "video/mp4", m4v: "video/mp4", mov: "video/quicktime",
  aac: "audio/aac", wma: "audio/x-ms-wma", asf: "video/x-ms-asf", mka: "audio/x-matroska", mkv: "video/x-matroska",
  webm: "video/webm",
};

/** Dragging a result out of the page hands over the audio file itself: Chromium's DownloadURL
 *  (a desktop folder, a DAW), plus its URL for everything else. */
function dragOut(ev, hit) {
  if (!ev.dataTransfer || ev.target !== ev.currentTarget) return;
  const url = new URL(mediaUrl(hit.audio_url), location.href).href;
  const ext = (hit.name.split(".").pop() || "").toLowerCase();
  const mime = MIME[ext] || "application/octet-stream";
  ev.dataTransfer.effectAllowed = "copy";
  ev.dataTransfer.setData("DownloadURL", `${mime}:${hit.name.replace(/:/g, "_")}:${url}`);
  ev.dataTransfer.setData("text/uri-list", url);
  ev.dataTransfer.setData("text/plain", url);
}
