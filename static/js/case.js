// Case review: heatmap overlay, zoom and pan, and keyboard shortcuts for the reading room.
(function () {
  "use strict";
  const toggle = document.getElementById("overlay-toggle");
  const opacity = document.getElementById("overlay-opacity");
  const form = document.getElementById("read-form");
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

  // The read: BI-RADS per breast and density as the reader chose them. This script only
  // reads those values and explains; it never sets one.
  const CONCERN = [1, 2, 3, 6, 0, 4, 5];  // least to most concerning (BI-RADS Atlas)
  const RECALL = [0, 3, 4, 5, 6];
  const NEEDS_FINDING = [3, 4, 5];
  const summary = document.getElementById("read-summary");
  const words = (decision) => (decision === "recall" ? "recall" : "no recall");
  const aiRecall = () => (form ? form.dataset.aiRecall || "" : "");

  function category(id) {
    const select = document.getElementById(id);
    return select && select.value !== "" ? Number(select.value) : null;
  }

  function readState() {
    const right = category("id_birads_right");
    const left = category("id_birads_left");
    if (right === null) return { missing: "id_birads_right", message: "Choose a BI-RADS category for the right breast." };
    if (left === null) return { missing: "id_birads_left", message: "Choose a BI-RADS category for the left breast." };
    const overall = CONCERN.indexOf(right) >= CONCERN.indexOf(left) ? right : left;
    const decision = RECALL.includes(overall) ? "recall" : "no_recall";
    const state = { right, left, decision };
    for (const [side, value] of [["R", right], ["L", left]]) {
      const finding = document.getElementById(`id_finding_${side}`);
      if (NEEDS_FINDING.includes(value) && finding && !finding.value) {
        const name = side === "R" ? "right" : "left";
        return { ...state, missing: finding.id, message: `The ${name} breast is BI-RADS ${value}: record the finding and its site.` };
      }
    }
    if (!form.querySelector("input[name=density]:checked")) {
      return { ...state, missing: "id_density_0", message: "Choose the breast density." };
    }
    return state;
  }

  function describe(state) {
    if (state.message) return state.message;
    let text = `Your read: ${words(state.decision)} (right ${state.right}, left ${state.left}).`;
    const ai = aiRecall();
    if (ai) text += state.decision === ai ? " Agrees with the AI: Accept AI." : " Differs from the AI: Override, with your reason.";
    return text;
  }

  function updateSummary() {
    if (summary && form) { summary.textContent = describe(readState()); summary.classList.remove("error"); }
  }

  function problemWith(state, sent) {
    if (state.message) return state;
    if (sent && sent !== state.decision) {
      const button = state.decision === aiRecall() ? "Accept AI" : "Override AI";
      return { missing: "id_birads_right", message: `Your categories (right ${state.right}, left ${state.left}) mean ${words(state.decision)}, but that button records ${words(sent)}. Change the categories, or use ${button}. Nothing was sent.` };
    }
    const reason = document.getElementById("id_reason");
    if (aiRecall() && state.decision !== aiRecall() && reason && !reason.value.trim()) {
      return { missing: "id_reason", message: "Your read differs from the AI: give your reason for overriding it." };
    }
    return null;
  }

  function openOverride() {
    const panel = document.getElementById("override-panel");
    if (!panel) return;
    panel.hidden = false;
    const reason = document.getElementById("id_reason");
    if (reason) reason.focus();
  }

  function accept() {
    const button = document.getElementById("accept-ai");
    if (button) form.requestSubmit(button);
    else if (summary) summary.textContent = "There is no AI result to accept: record your own read.";
  }

  if (form) {
    form.noValidate = true;  // this script explains what is missing; the server checks again
    form.addEventListener("change", updateSummary);
    form.addEventListener("submit", (event) => {
      const sent = event.submitter && event.submitter.name === "decision" ? event.submitter.value : "";
      const problem = problemWith(readState(), sent);
      if (!problem) return;
      event.preventDefault();
      summary.textContent = problem.message;
      summary.classList.add("error");
      const field = document.getElementById(problem.missing);
      if (field) field.focus();
    });
    document.addEventListener("click", (event) => {
      if (event.target.closest("#override-ai")) openOverride();
    });
    document.addEventListener("ai:arrived", updateSummary);
    updateSummary();
  }
  if (toggle) toggle.addEventListener("change", applyOverlay);
  if (opacity) opacity.addEventListener("input", applyOverlay);
  const resetButton = document.getElementById("reset-view");
  if (resetButton) resetButton.addEventListener("click", resetAll);
  document.addEventListener("ai:arrived", applyOverlay);

  // Shortcuts work whatever has focus (a select or a radio button included), except while
  // typing in a text field. Captured first, so a focused select never takes the letter.
  const TYPES_NOT_TYPED_IN = ["radio", "checkbox", "range", "button", "submit"];
  window.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target.tagName === "TEXTAREA" ||
      (target.tagName === "INPUT" && !TYPES_NOT_TYPED_IN.includes(target.type)) || target.isContentEditable;
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    const act = {
      a: () => form && accept(),
      o: () => form && openOverride(),
      n: () => { const next = document.getElementById("next-case"); if (next) window.location.assign(next.href); },
      h: () => { if (toggle) { toggle.checked = !toggle.checked; applyOverlay(); } },
      r: resetAll,
    }[key];
    if (!act) return;
    event.preventDefault();
    event.stopPropagation();
    act();
  }, true);
  applyOverlay();
})();
