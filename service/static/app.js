// clapsearch web page: text / example search, waveform cards, zero-shot tagging, ingest jobs.
// Plain ES modules, no dependencies, no build step. Talk to the JSON API of service/ (see docs of /v1/*).
// This is the entry point (index.html loads it with type="module"): it wires the modules below to
// the page and handles drag and drop and keyboard shortcuts.

import { $, state, debounce } from "./common.js";
import { setupApiKey } from "./api.js";
import { updateMinScoreOut, loadCollections, loadModel } from "./filters.js";
import { readColors, redrawAll, togglePlay, setupPlayer } from "./waveform.js";
import { searchText, searchFile, searchSimilar, runSearch, fromUrl } from "./results.js";
import { classify, submitIngest, loadJobs } from "./panels.js";
import { loadHardware } from "./hardware.js";
import { setupDuplicates } from "./duplicates.js";

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
    if (ev.key === "ArrowDown" && el === $("#q") && state.hits.length) {
      ev.preventDefault();     // from the search box down into the results
      state.hits[0].card.focus();
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
      if (card.previousElementSibling) card.previousElementSibling.focus();
      else $("#q").focus();
    } else if ((ev.key === "Enter" || ev.key === "s") && el === card) {
      ev.preventDefault();
      searchSimilar(entry.hit.id, entry.hit.name, { focus: true });
    }
  });
}

// --------------------------------------------------------------------- small screens: filters

/** On small screens the filters hide behind a toggle in the top bar, so results come first. */
function setupFiltersToggle() {
  const btn = $("#filters-toggle");
  btn.addEventListener("click", () => {
    const open = btn.getAttribute("aria-expanded") !== "true";
    setFiltersOpen(open);
    if (open) {
      $("#filters-panel").scrollIntoView({ block: "nearest" });
      $("#f-collection").focus();
    }
  });
}

function setFiltersOpen(open) {
  $("#filters-toggle").setAttribute("aria-expanded", String(open));
  document.body.classList.toggle("filters-open", open);
}

// ------------------------------------------------------------------------------------------ init


function init() {
  readColors();
  setupApiKey(() => {
    loadCollections();
    loadHardware();
    loadJobs();
    if (state.query) runSearch(false);
  });
  setupPlayer();
  setupDrop();
  setupKeys();

  $("#search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setFiltersOpen(false);     // small screens: the results come first
    searchText($("#q").value);
  });
  $("#more-btn").addEventListener("click", () => runSearch(true));
  setupFiltersToggle();
  setupDuplicates();

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
  loadHardware();
  loadCollections();
  loadJobs();
  fromUrl();
  if (!location.search) $("#q").focus();
}

init();
