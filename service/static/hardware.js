// The hardware line in the footer: what the model's ONNX graphs and FAISS really run on, from
// /readyz's "hardware" (indexer.models.hardware.hardware_report, the same report as
// `indexer status --hardware`). With API keys configured only a caller with a key sees it; a
// CUDA request that fell back to the CPU is shown as a warning.

import { $ } from "./common.js";
import { apiKey } from "./api.js";

export async function loadHardware() {
  const line = $("#hardware-line");
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  try {
    const res = await fetch("/readyz", { headers });
    const data = await res.json();
    const hw = data && data.hardware;
    if (!hw || !hw.summary) { line.hidden = true; return; }
    line.textContent = `Running on: ${hw.summary}`;
    const fellBack = Boolean(hw.model && hw.model.fell_back_to_cpu);
    line.classList.toggle("warn", fellBack);
    line.title = Object.entries((hw.model && hw.model.active) || {})
      .map(([graph, providers]) => `${graph}: ${providers.join(" > ")}`).join("\n");
    line.hidden = false;
  } catch {
    line.hidden = true; // readiness unreachable: the model badge already says so
  }
}
