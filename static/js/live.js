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
        if (response.ok && onData(await response.json()) === false) stopped = true;
      } catch (error) { /* offline for a moment: try again next tick */ }
      if (!stopped) setTimeout(tick, every);
    }
    setTimeout(tick, every);
  }

  const table = document.getElementById("worklist");
  if (table) {
    const rows = Array.from(table.querySelectorAll("tr[data-case]"));
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

  const box = document.getElementById("ai-box");
  if (box && !FINAL.includes(box.dataset.state)) {
    const live = document.getElementById("ai-live");
    poll(() => box.dataset.statusUrl, 3000, (data) => {
      const states = Object.values(data.images);
      const running = states.filter((s) => s === "running").length;
      if (live) {
        live.hidden = false;
        live.textContent = states.length
          ? `AI: ${states.filter((s) => FINAL.includes(s)).length} of ${states.length} images scored` + (running ? ", running…" : "")
          : "AI: waiting for a worker…";
      }
      if (FINAL.includes(data.ai_status)) {
        const reason = document.getElementById("id_reason");
        if (!reason || !reason.value) { window.location.reload(); }
        else if (live) { live.textContent = "AI result ready: reload the page to see it."; }
        return false;
      }
      return true;
    });
  }
})();
