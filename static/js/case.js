// Case review: heatmap overlay, zoom and pan, and keyboard shortcuts for the reading room.
(function () {
  "use strict";
  const toggle = document.getElementById("overlay-toggle");
  const opacity = document.getElementById("overlay-opacity");
  const form = document.getElementById("read-form");
  const birads = document.getElementById("id_birads");
  const overridePanel = document.getElementById("override-panel");
  const reason = document.getElementById("id_reason");
  const state = new Map();

  function applyOverlay() {
    document.querySelectorAll(".panel .heatmap").forEach((img) => {
      img.style.display = toggle && toggle.checked ? "block" : "none";
      img.style.opacity = opacity ? opacity.value / 100 : 0.45;
    });
  }

  function transform(panel) {
    const s = state.get(panel);
    panel.querySelector(".layers").style.transform =
      `translate(${s.x}px, ${s.y}px) scale(${s.zoom})`;
  }

  function resetAll() {
    state.forEach((s, panel) => { s.x = 0; s.y = 0; s.zoom = 1; transform(panel); });
  }

  document.querySelectorAll(".panel").forEach((panel) => {
    const stage = panel.querySelector(".stage");
    state.set(panel, { x: 0, y: 0, zoom: 1 });
    stage.addEventListener("wheel", (event) => {
      event.preventDefault();
      const s = state.get(panel);
      const factor = event.deltaY < 0 ? 1.15 : 1 / 1.15;
      s.zoom = Math.min(12, Math.max(1, s.zoom * factor));
      if (s.zoom === 1) { s.x = 0; s.y = 0; }
      transform(panel);
    }, { passive: false });
    let drag = null;
    stage.addEventListener("pointerdown", (event) => {
      const s = state.get(panel);
      drag = { x: event.clientX - s.x, y: event.clientY - s.y };
      stage.setPointerCapture(event.pointerId);
    });
    stage.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const s = state.get(panel);
      s.x = event.clientX - drag.x; s.y = event.clientY - drag.y;
      transform(panel);
    });
    stage.addEventListener("pointerup", () => { drag = null; });
    stage.addEventListener("dblclick", () => {
      const s = state.get(panel); s.x = 0; s.y = 0; s.zoom = 1; transform(panel);
    });
  });

  function fitBirads(decision) {
    if (!birads) return;
    const value = Number(birads.value);
    const recallCategories = [0, 3, 4, 5, 6];
    const fits = decision === "recall" ? recallCategories.includes(value) : [1, 2].includes(value);
    if (!fits) birads.value = decision === "recall" ? "0" : "1";
  }

  function openOverride() {
    if (!overridePanel) return;
    overridePanel.hidden = false;
    const confirm = document.getElementById("confirm-override");
    fitBirads(confirm.value);
    reason.required = true;
    reason.focus();
  }

  function accept() {
    const button = document.getElementById("accept-ai");
    if (!button) return;
    if (reason) reason.required = false;
    fitBirads(button.value);
    form.requestSubmit(button);
  }

  if (form) {
    form.querySelectorAll("button[name=decision]").forEach((button) => {
      button.addEventListener("click", () => {
        fitBirads(button.value);
        if (button.id === "accept-ai" && reason) reason.required = false;
      });
    });
  }
  const overrideButton = document.getElementById("override-ai");
  if (overrideButton) overrideButton.addEventListener("click", openOverride);
  if (toggle) toggle.addEventListener("change", applyOverlay);
  if (opacity) opacity.addEventListener("input", applyOverlay);
  const resetButton = document.getElementById("reset-view");
  if (resetButton) resetButton.addEventListener("click", resetAll);

  document.addEventListener("keydown", (event) => {
    const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(event.target.tagName);
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "a") { event.preventDefault(); accept(); }
    else if (key === "o") { event.preventDefault(); openOverride(); }
    else if (key === "n") {
      const next = document.getElementById("next-case");
      if (next) { event.preventDefault(); window.location.assign(next.href); }
    } else if (key === "h" && toggle) { toggle.checked = !toggle.checked; applyOverlay(); }
    else if (key === "r") { resetAll(); }
  });
  applyOverlay();
})();
