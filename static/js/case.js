// Case review: the structured read and the reading room's keyboard shortcuts. The films are
// the viewer's (static/viewer/viewer.js, built from viewer/): its keys are passed to it.
(function () {
  "use strict";
  const form = /** @type {HTMLFormElement | null} */ (document.getElementById("read-form"));

  // The read: BI-RADS per breast and density as the reader chose them, with the mouse or
  // a key the reader pressed (below); nothing is ever set or sent without one. The rules
  // are the server's (screening/reading/assessment.py, sent with json_script).
  const rulesTag = document.getElementById("read-rules");
  const RULES = rulesTag ? JSON.parse(rulesTag.textContent) : null;
  const CONCERN = RULES ? RULES.concern : [];  // least to most concerning (BI-RADS Atlas)
  const RECALL = RULES ? RULES.recall : [];
  const NEEDS_FINDING = RULES ? RULES.needs_finding : [];
  const REFUSES_FINDING = RULES ? RULES.refuses_finding : [];
  const DECISIONS = RULES ? RULES.decisions : {};
  const summary = document.getElementById("read-summary");
  const words = (decision) => (decision === DECISIONS.recall ? "recall" : "no recall");
  const aiRecall = () => (form ? form.dataset.aiRecall || "" : "");

  function category(id) {
    const select = /** @type {HTMLSelectElement | null} */ (document.getElementById(id));
    return select && select.value !== "" ? Number(select.value) : null;
  }

  /** @typedef {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} Control */
  /** @returns {Control | null} */
  function field(id) { return /** @type {Control | null} */ (document.getElementById(id)); }

  // What the read says so far, and what still stops it from being sent: { right, left,
  // decision (once both categories are chosen), problems: [{ field, text, missing }] }.
  function readState() {
    const right = category("id_birads_right");
    const left = category("id_birads_left");
    const state = { right, left, problems: [] };
    const need = (id, text) => {
      if (!state.problems.some((p) => p.text === text)) state.problems.push({ field: id, text, missing: true });
    };
    for (const [side, value] of [["R", right], ["L", left]]) {
      const name = side === "R" ? "right" : "left";
      // The breast's finding rows (finding_R, finding_R_2, ...: static/js/findings.js).
      const findings = Array.from(/** @type {NodeListOf<HTMLSelectElement>} */ (form.querySelectorAll(`select[name^="finding_${side}"]`)));
      if (value === null) need(`id_birads_${name}`, `BI-RADS ${name}`);
      if (!findings.length) continue;
      const named = findings.find((finding) => finding.value);
      if (named && REFUSES_FINDING.includes(value)) {
        state.problems.push({ field: named.id, text: `A finding is recorded in the ${name} breast, which you assessed BI-RADS ${value}, a category with nothing to record: change the category or set the finding back to none.` });
      } else if (NEEDS_FINDING.includes(value) && !named) {
        need(findings[0].id, `the finding in the ${name} breast (BI-RADS ${value})`);
      }
      for (const finding of findings) {
        const row = finding.name.slice("finding_".length);
        const site = field(`id_site_${row}`);
        const mark = /** @type {HTMLInputElement | null} */ (form.querySelector(`input[name="mark_${row}"]`));
        if (finding.value && site && !site.value) need(site.id, `the site of the ${name} finding`);
        if (!finding.value && mark && mark.value) need(finding.id, `what the mark on the ${name} film shows`);
      }
    }
    if (!form.querySelector("input[name=density]:checked")) need("id_density_0", "density");
    if (right !== null && left !== null) {
      const overall = CONCERN.indexOf(right) >= CONCERN.indexOf(left) ? right : left;
      state.decision = RECALL.includes(overall) ? DECISIONS.recall : DECISIONS.no_recall;
    }
    return state;
  }

  function listed(items) {
    return items.length > 1 ? `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}` : items[0];
  }

  // The first thing to put right, as { field, message }; null when the read holds together.
  function firstProblem(state) {
    const conflict = state.problems.find((p) => !p.missing);
    if (conflict) return { field: conflict.field, message: conflict.text };
    const missing = state.problems.filter((p) => p.missing);
    if (missing.length) return { field: missing[0].field, message: `Still to choose: ${listed(missing.map((p) => p.text))}.` };
    return null;
  }

  function describe(state) {
    const problem = firstProblem(state);
    if (problem) return problem.message;
    let text = `Your read: ${words(state.decision)} (right ${state.right}, left ${state.left}).`;
    const ai = aiRecall();
    if (ai) text += state.decision === ai ? " Agrees with the AI: Accept AI." : " Differs from the AI: Override, with your reason.";
    return text;
  }

  function updateSummary() {
    if (summary && form) { summary.textContent = describe(readState()); summary.classList.remove("error"); }
  }

  // Why the button pressed (sending ``sent``, '' for Record read) may not send this read.
  function problemWith(state, sent) {
    const problem = firstProblem(state);
    if (problem) return { ...problem, message: `${problem.message} Nothing was sent.` };
    if (sent && sent !== state.decision) {
      const panel = document.getElementById("override-panel");
      const button = state.decision === aiRecall() ? "Accept AI" : panel && !panel.hidden ? "Confirm" : "Override AI";
      return { field: "id_birads_right", message: `Your categories (right ${state.right}, left ${state.left}) mean ${words(state.decision)}, but that button records ${words(sent)}. Change the categories, or use ${button}. Nothing was sent.` };
    }
    const reason = field("id_reason");
    if (aiRecall() && state.decision !== aiRecall() && reason && !reason.value.trim()) {
      return { field: "id_reason", message: "Your read differs from the AI: give your reason for overriding it. Nothing was sent." };
    }
    return null;
  }

  function openOverride() {
    const panel = document.getElementById("override-panel");
    if (!panel) return;
    panel.hidden = false;
    const button = document.getElementById("override-ai");
    if (button) button.hidden = true;  // the panel's Confirm takes its place
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
    let sending = false;  // one read per press: a second A while the page loads sends nothing
    form.addEventListener("submit", (event) => {
      if (sending) { event.preventDefault(); return; }
      const submitter = /** @type {HTMLButtonElement | null} */ (event.submitter);
      const sent = submitter && submitter.name === "decision" ? submitter.value : "";
      const problem = problemWith(readState(), sent);
      if (!problem) {
        sending = true;
        setTimeout(() => { sending = false; }, 5000);  // a stopped load may be sent again
        return;
      }
      event.preventDefault();
      summary.textContent = problem.message;
      summary.classList.add("error");
      const target = field(problem.field);
      if (target) target.focus();  // only focused: the value stays as the reader set it
    });
    // Back to this page from the browser's cache: the earlier submit is over.
    window.addEventListener("pageshow", () => { sending = false; });
    document.addEventListener("click", (event) => {
      if (event.target instanceof Element && event.target.closest("#override-ai")) openOverride();
    });
    document.addEventListener("ai:arrived", updateSummary);
    updateSummary();
  }

  // --- Keys for the read: N records a normal read, digits set the categories ----------
  const feedback = document.getElementById("key-feedback");
  let awaitingDensity = false;  // N pressed, the density not yet given: a-d finish the read
  let nextSide = "right";       // the side the next digit sets: right, then left
  let keying = false;           // true while a key's own change events go out

  function said(text) {
    if (!feedback) return;
    feedback.textContent = text;
    feedback.hidden = false;
  }

  function changed(element) {
    keying = true;
    try { element.dispatchEvent(new Event("change", { bubbles: true })); }  // summary and draft follow
    finally { keying = false; }
  }

  function setValue(element, value) {
    element.value = value;
    changed(element);
  }

  function setCategory(digit) {
    const side = nextSide;
    const select = field(`id_birads_${side}`);
    if (!select || !RULES.categories.includes(digit)) return;
    setValue(select, String(digit));
    nextSide = side === "right" ? "left" : "right";
    said(`${digit}: ${side} breast BI-RADS ${digit}. Next digit sets the ${nextSide}.`);
  }

  function checkedDensity() {
    const radio = /** @type {HTMLInputElement | null} */ (form.querySelector("input[name=density]:checked"));
    return radio ? radio.value : "";
  }

  function setDensity(letter) {
    const radio = /** @type {HTMLInputElement | null} */ (form.querySelector(`input[name=density][value="${letter}"]`));
    if (!radio) return false;
    radio.checked = true;
    changed(radio);
    return true;
  }

  // Send the read with the button that records "no recall": Accept AI where the AI suggests
  // it, Record read where there is no suggestion. Where the AI suggests recall, a normal
  // read overrides it, which needs the reader's reason: the override opens instead.
  function sendNormal() {
    const ai = aiRecall();
    if (ai && ai !== DECISIONS.no_recall) {
      openOverride();
      said(`N: right ${RULES.normal}, left ${RULES.normal}, density set. The AI suggests recall: give your reason, then Confirm.`);
      return;
    }
    const button = field(ai ? "accept-ai" : "record-read");
    said(`N: right ${RULES.normal}, left ${RULES.normal}, no recall, density ${checkedDensity()}: recording.`);
    if (button) form.requestSubmit(button);
  }

  function normalRead() {
    setValue(field("id_birads_right"), String(RULES.normal));
    setValue(field("id_birads_left"), String(RULES.normal));
    nextSide = "right";
    if (form.querySelector("input[name=density]:checked")) { sendNormal(); return; }
    awaitingDensity = true;
    said(`N: right ${RULES.normal}, left ${RULES.normal}, no recall. Not recorded yet: press a, b, c or d for the density (Esc cancels).`);
  }

  // The reader changed the form with the mouse while N waited for a density: N's read is
  // no longer the one on the form, so a letter must not send it.
  if (form) {
    form.addEventListener("change", () => {
      if (!awaitingDensity || keying) return;
      awaitingDensity = false;
      said("You changed the read: the normal read was not recorded. Press N again, or record with the buttons.");
    });
  }

  function densityKey(key) {
    awaitingDensity = false;
    if (setDensity(key)) sendNormal();
  }

  // Shortcuts work whatever has focus (a select or a radio button included), except while
  // typing in a text field. Captured first, so a focused select never takes the letter.
  const TYPES_NOT_TYPED_IN = ["radio", "checkbox", "range", "button", "submit"];
  const VIEWER_KEYS = ["h", "r", "l", "w", "p", "m", "v", "g", "i", "c", "f", "k", "e", "x"];
  window.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLInputElement && !TYPES_NOT_TYPED_IN.includes(target.type)) ||
      (target instanceof HTMLElement && target.isContentEditable);
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    const reading = form && RULES;
    let act;
    if (reading && awaitingDensity && RULES.densities.includes(key)) act = () => densityKey(key);
    else if (reading && awaitingDensity && key === "escape") act = () => { awaitingDensity = false; said("Normal read cancelled: nothing was recorded."); };
    else if (reading && /^[0-9]$/.test(key) && RULES.categories.includes(Number(key))) act = () => setCategory(Number(key));
    else {
      act = {
        a: () => form && accept(),
        o: () => form && openOverride(),
        n: () => reading && normalRead(),
        j: () => { const next = /** @type {HTMLAnchorElement | null} */ (document.getElementById("next-case")); if (next) window.location.assign(next.href); },
      }[key] || (VIEWER_KEYS.includes(key) && (() => document.dispatchEvent(new CustomEvent("viewer:key", { detail: { key, shift: event.shiftKey } })))) || null;
    }
    if (!act) return;
    event.preventDefault();
    event.stopPropagation();
    act();
  }, true);
})();
