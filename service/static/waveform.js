// A card's audio: the waveform (peaks fetch, canvas drawing, click / arrow-key seek) and playback in
// the page's single <audio> player (play / pause, progress cursor, playback errors).

import { $, state, player } from "./common.js";
import { api, mediaUrl, showError, showMessage, needApiKey } from "./api.js";

const PEAK_BUCKETS = 240;

/** A hit on a window inside a long file (with segments=true short files come back whole). */
export function isMoment(hit) {
  if (hit.start_s == null || hit.end_s == null) return false;
  if (hit.segment_id != null) return true;
  return hit.start_s > 0.05 || (hit.duration_s != null && hit.end_s < hit.duration_s - 0.05);
}

export function entryDuration(entry) {
  if (state.current === entry && isFinite(player.duration) && player.duration > 0) return player.duration;
  return entry.hit.duration_s || (entry.peaks && entry.peaks.duration_s) || 0;
}

export async function loadPeaks(entry) {
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
export function readColors() {
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

export function redrawAll() {
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
    btn.setAttribute("aria-label", `${on ? "Pause" : "Play"} ${e.hit.name}`);
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

export function togglePlay(entry) {
  if (state.current === entry && player.getAttribute("src")) {
    if (player.paused) play(); else player.pause();
    return;
  }
  seek(entry, entry.hit.start_s || 0);
}

export function seek(entry, t) {
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

export function stopIfGone() {
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

export function setupPlayer() {
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

