// Shared by the page's modules: the page state, the <audio> element, and small DOM / format helpers.

export const $ = (sel, root = document) => root.querySelector(sel);

export const state = {
  query: null,          // {kind: "text", q} | {kind: "file", file} | {kind: "item", id, name}
  offset: 0,
  total: 0,             // hits paging can walk for the query (the answer's `total`)
  limit: 20,
  hits: [],             // [{hit, card, peaks}]
  seq: 0,               // guards against out-of-order responses
  current: null,        // the entry whose audio is loaded in the player
  tagTarget: null,      // {kind: "item", id, name} | {kind: "file", file}
  droppedFile: null,
  job: null,
  jobTimer: null,
};

export const player = $("#player");

/** Paths are shown right-aligned-ellipsised (direction: rtl); LRMs keep their slashes in place. */
export function ltr(text) {
  return `\u200E${text}\u200E`;
}

export function fmtTime(s) {
  if (s == null || !isFinite(s)) return "–";
  if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  const sec = Math.round(s - m * 60);
  return `${m}:${String(sec).padStart(2, "0")}`;
}

export function debounce(fn, ms) {
  let t = 0;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}
