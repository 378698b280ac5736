// The filter sidebar (collection, score, duration, format, tags, tempo, key, path, moments) and the model name.

import { $ } from "./common.js";
import { api, showError, showMessage } from "./api.js";

// --------------------------------------------------------------------------------------- filters

export function filterParams() {
  const p = [];
  const val = (id) => $(id).value.trim();
  if (val("#f-collection")) p.push(["collection", val("#f-collection")]);
  if (val("#f-min-score") !== "") p.push(["min_score", val("#f-min-score")]);
  if (val("#f-min-duration") !== "") p.push(["min_duration", val("#f-min-duration")]);
  if (val("#f-max-duration") !== "") p.push(["max_duration", val("#f-max-duration")]);
  for (const box of document.querySelectorAll("#f-formats input:checked")) p.push(["format", box.value]);
  for (const t of val("#f-tag").split(",").map((s) => s.trim()).filter(Boolean)) p.push(["tag", t]);
  if (val("#f-path-prefix")) p.push(["path_prefix", val("#f-path-prefix")]);
  if (val("#f-bpm-min") !== "") p.push(["bpm_min", val("#f-bpm-min")]);
  if (val("#f-bpm-max") !== "") p.push(["bpm_max", val("#f-bpm-max")]);
  if (val("#f-key")) p.push(["key", val("#f-key")]);
  if ($("#f-segments").checked) p.push(["segments", "true"]);
  return p;
}

export function applyFiltersFromUrl(sp) {
  const set = (id, name) => { if (sp.has(name)) $(id).value = sp.get(name); };
  if (sp.has("collection")) ensureCollectionOption(sp.get("collection"));
  set("#f-collection", "collection");
  set("#f-min-score", "min_score");
  set("#f-min-duration", "min_duration");
  set("#f-max-duration", "max_duration");
  set("#f-path-prefix", "path_prefix");
  set("#f-bpm-min", "bpm_min");
  set("#f-bpm-max", "bpm_max");
  set("#f-key", "key");
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

export function updateMinScoreOut() {
  const v = $("#f-min-score").value;
  $("#f-min-score-out").textContent = v === "" ? "any" : Number(v).toFixed(2);
}

export async function loadCollections() {
  try {
    const data = await api("/v1/collections");
    const sel = $("#f-collection");
    const chosen = sel.value || "default";
    sel.textContent = "";
    const list = data.items || [];
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

export async function loadModel() {
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

export function setModel(name) {
  $("#model-name").textContent = name;
}

