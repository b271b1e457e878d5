// Live AI status: poll a small JSON view and refresh when a case's AI state changes.
(function () {
  "use strict";
  const FINAL = ["done", "failed"];

  function poll(url, every, onData) {
    let stopped = false;
    async function tick() {
      if (stopped || document.hidden) { setTimeout(tick, every); return; }
      try {
        const response = await fetch(url(), { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.ok && (await onData(await response.json())) === false) stopped = true;
      } catch (error) { /* offline for a moment: try again next tick */ }
      if (!stopped) setTimeout(tick, every);
    }
    setTimeout(tick, every);
  }

  const table = document.getElementById("worklist");
  if (table) {
    const rows = Array.from(/** @type {NodeListOf<HTMLTableRowElement>} */ (table.querySelectorAll("tr[data-case]")));
    if (rows.length) {
      const ids = rows.map((r) => r.dataset.case).join(",");
      poll(() => `${table.dataset.statusUrl}?ids=${ids}`, 5000, (states) => {
        if (rows.some((r) => states[r.dataset.case] !== undefined && states[r.dataset.case] !== r.dataset.state)) {
          window.location.reload();
          return false;
        }
        return true;
      });
    }
  }

  // The AI result arrived: put it on the page in place, never by a reload, so the reader's
  // zoom, chosen categories and typed reason stay as they are. False when the panel could
  // not be fetched (the poll then tries again).
  async function showArrivedAI(url) {
    let panel;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return false;
      panel = await response.json();
    } catch (error) { return false; }
    const box = document.getElementById("ai-box");
    if (box) box.outerHTML = panel.ai_box;
    const status = document.getElementById("case-status");
    if (status && panel.case_status) {
      status.textContent = panel.case_status_label;
      status.className = `status status-${panel.case_status}`;
    }
    const form = document.getElementById("read-form");
    const buttons = document.getElementById("decision-buttons");
    if (form && buttons) { form.dataset.aiRecall = panel.ai_recall; buttons.innerHTML = panel.decision_buttons; }
    Object.entries(panel.images).forEach(([id, image]) => {
      const figure = document.querySelector(`.panel.current[data-image="${id}"]`);
      if (!figure) return;
      if (image.heatmap && !figure.querySelector("img.heatmap")) {
        const overlay = document.createElement("img");
        overlay.className = "heatmap"; overlay.alt = ""; overlay.draggable = false; overlay.src = image.heatmap;
        figure.querySelector(".layers").appendChild(overlay);
      }
      if (image.marks && !figure.querySelector("svg.marks")) {
        figure.querySelector(".layers").insertAdjacentHTML("beforeend", image.marks);
      }
      const caption = figure.querySelector(".ai-caption");
      if (caption && image.caption) caption.textContent = `· ${image.caption}`;
    });
    document.dispatchEvent(new CustomEvent("ai:arrived"));
    return true;
  }

  const box = document.getElementById("ai-box");
  if (box && !FINAL.includes(box.dataset.state)) {
    const live = document.getElementById("ai-live");
    poll(() => box.dataset.statusUrl, 3000, async (data) => {
      const states = Object.values(data.images);
      const running = states.filter((s) => s === "running").length;
      if (live) {
        live.hidden = false;
        live.textContent = states.length
          ? `AI: ${states.filter((s) => FINAL.includes(s)).length} of ${states.length} images scored` + (running ? ", running…" : "")
          : "AI: waiting for a worker…";
      }
      if (FINAL.includes(data.ai_status)) return !(await showArrivedAI(box.dataset.panelUrl));
      return true;
    });
  }
})();
