// The side panels: zero-shot tagging of a clip, "sounds like" (audio -> text), and ingest jobs.

import { $, state, ltr, fmtTime } from "./common.js";
import { api, showError, showMessage } from "./api.js";
import { loadCollections, setModel } from "./filters.js";

const TERMINAL = new Set(["finished", "failed"]);

// --------------------------------------------------------------------------------------- tagging

export function setTagTarget(target) {
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
    const top = data.items.length ? data.items[0].score : 1;
    for (const r of data.items) {
      list.append(barRow(r.text, r.score, top > 0 ? r.score / top : 0, `cosine ${r.score.toFixed(3)}`, "text-row"));
    }
    if (!data.items.length) list.innerHTML = `<li class="muted">no texts</li>`;
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

export async function classify(ev) {
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
  // The API never splits a label (AudioSet has "Crowing, cock-a-doodle-doo"): the page sends one
  // field per label, split on ";" or new lines when the text has them, else on commas.
  const sep = /[;\n]/.test(labels) ? /[;\n]/ : /,/;
  for (const label of labels.split(sep)) if (label.trim()) form.append("candidate_labels", label.trim());
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

export async function submitIngest(ev) {
  ev.preventDefault();
  const body = {
    path: $("#ingest-path").value.trim(),
    collection: $("#ingest-collection").value.trim() || "default",
    segments: $("#ingest-segments").checked,
    prune: false,
    analyze: $("#ingest-analyze").checked,
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

export async function loadJobs() {
  let jobs;
  try {
    jobs = (await api("/v1/jobs", { params: [["limit", "8"]] })).items;
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

