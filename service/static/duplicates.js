// The duplicates view: groups of files that are the same recording (GET /v1/duplicates, the
// core's indexer.duplicates), each with its reason and similarity scores, members linking to
// "similar" search. Opened by the "Duplicates" button in the top bar.

import { $ } from "./common.js";
import { api, showError } from "./api.js";

function cell(tag, text, cls) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function bestScore(group, id) {
  return Math.max(0, ...group.pairs.filter((p) => p.a === id || p.b === id).map((p) => p.score));
}

function renderGroup(group, n) {
  const li = cell("li", undefined, "dup-group");
  li.dataset.testid = "duplicate-group";
  const head = cell("p", undefined, "dup-head");
  head.append(cell("strong", `Group ${n}: ${group.members.length} files`), " · ");
  const score = group.score_min === group.score_max
    ? group.score_max.toFixed(3) : `${group.score_min.toFixed(3)}–${group.score_max.toFixed(3)}`;
  head.append(cell("span", `similarity ${score}`, "dup-score"));
  li.append(head, cell("p", group.reason, "dup-reason muted"));
  const members = cell("ul", undefined, "dup-members");
  for (const m of group.members) {
    const row = cell("li");
    row.dataset.testid = "duplicate-member";
    const name = m.path.split("/").pop();
    const link = cell("a", name);
    link.href = `/?similar=${m.id}`;
    link.title = m.path;
    const facts = [m.format, m.sample_rate ? `${m.sample_rate} Hz` : "", m.channels ? `${m.channels} ch` : "",
      m.duration_s != null ? `${m.duration_s.toFixed(2)} s` : ""].filter(Boolean).join(", ");
    row.append(cell("span", bestScore(group, m.id).toFixed(3), "dup-score"), " ", link, " ", cell("span", facts, "muted"));
    members.append(row);
  }
  li.append(members);
  return li;
}

export async function loadDuplicates() {
  const list = $("#dup-groups");
  const summary = $("#dup-summary");
  const params = [["collection", $("#f-collection").value || "default"], ["limit", "100"]];
  const threshold = $("#dup-threshold").value;
  if (threshold) params.push(["threshold", threshold]);
  summary.textContent = "Looking for duplicates…";
  list.replaceChildren();
  try {
    const data = await api("/v1/duplicates", { params });
    data.items.forEach((group, i) => list.append(renderGroup(group, data.offset + i + 1)));
    summary.textContent = data.total
      ? `${data.total} group${data.total === 1 ? "" : "s"} among ${data.files} files at similarity ≥ ${data.threshold}`
      : `No duplicates among ${data.files} files at similarity ≥ ${data.threshold}`;
  } catch (err) {
    summary.textContent = "";
    showError(err, "duplicates");
  }
}

export function setupDuplicates() {
  const view = $("#duplicates-view");
  const toggle = $("#duplicates-toggle");
  toggle.addEventListener("click", () => {
    view.hidden = !view.hidden;
    toggle.setAttribute("aria-expanded", String(!view.hidden));
    if (!view.hidden) loadDuplicates();
  });
  $("#dup-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadDuplicates(); });
}
