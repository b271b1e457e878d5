// The read form's findings: several per breast, and the marks placed on the films. A mark
// placed in the viewer (viewer/src/marks.js, the "viewer:marked" event) goes to a finding
// row of the film's breast, as the film's id, the shape and its points in the film's pixel
// coordinates; the reader then says what it shows and where (the site). The server checks
// the mark again (screening/reading/assessment.py: on one of the case's films, inside it).
(function () {
  "use strict";
  const form = document.getElementById("read-form");
  if (!form) return;
  const feedback = document.getElementById("mark-feedback");
  const SHAPE_WORDS = { point: "point", ellipse: "ellipse", arrow: "arrow" };

  /** @type {(breast: string) => HTMLElement[]} */
  const rowsOf = (breast) => Array.from(form.querySelectorAll(`.breast .finding-row[data-row^="${breast}"]`));
  /** @type {(row: Element) => HTMLInputElement | null} */
  const markOf = (row) => row.querySelector("input[data-mark]");

  // The mark a row's hidden input holds, or null (empty, or not a mark the page wrote).
  function markIn(input) {
    if (!input || !input.value) return null;
    try { return JSON.parse(input.value); } catch (error) { return null; }
  }

  function filmName(image) {
    const label = document.querySelector(`.panel.current[data-image="${image}"] .vp-label`);
    return label ? label.textContent : "a film";
  }

  // What each row's mark is, said in words beside it, with the way to remove it.
  function describeMarks() {
    /** @type {NodeListOf<HTMLElement>} */ (form.querySelectorAll(".finding-row")).forEach((row) => {
      const input = markOf(row);
      const text = row.querySelector(".mark-text");
      /** @type {HTMLElement | null} */
      const remove = row.querySelector(".remove-mark");
      const mark = markIn(input);
      if (mark || Array.from(row.querySelectorAll("select")).some((select) => select.value)) row.hidden = false;
      if (text) text.textContent = mark ? `Marked: ${SHAPE_WORDS[mark.shape] || mark.shape} on ${filmName(mark.image)}.` : "";
      if (remove) remove.hidden = !mark;
      if (text) text.parentElement.hidden = !mark;
    });
  }

  function say(text) {
    if (!feedback) return;
    feedback.textContent = text;
    feedback.hidden = false;
  }

  function changed(element) {
    element.dispatchEvent(new Event("change", { bubbles: true })); // summary, draft, drawing
  }

  // The breast's first row without a mark: one already showing before a hidden one, so a
  // finding chosen first and marked after stay together.
  function freeRow(breast) {
    const free = rowsOf(breast).filter((row) => !markOf(row).value);
    return free.find((row) => !row.hidden) || free[0] || null;
  }

  document.addEventListener("viewer:marked", (event) => {
    const mark = /** @type {CustomEvent} */ (event).detail;
    if (mark.refused) { say(`${mark.refused} Nothing was marked.`); return; }
    const side = mark.breast === "R" ? "right" : "left";
    const row = freeRow(mark.breast);
    if (!row) {
      say(`Every finding row of the ${side} breast holds a mark: remove one to mark another.`);
      document.dispatchEvent(new Event("marks:changed"));
      return;
    }
    const input = markOf(row);
    input.value = JSON.stringify({ image: mark.image, shape: mark.shape, points: mark.points });
    row.hidden = false;
    describeMarks();
    changed(input);
    const finding = /** @type {HTMLSelectElement} */ (row.querySelector("select[name^='finding_']"));
    const site = /** @type {HTMLSelectElement} */ (row.querySelector("select[name^='site_']"));
    const next = !finding.value ? finding : !site.value ? site : null;
    say(`Marked (${SHAPE_WORDS[mark.shape]}) on ${mark.film}: ${next === finding ? "choose what it shows and its site" : next === site ? "choose its site" : "recorded with this finding"} in the ${side} breast's row.`);
    if (next) next.focus();
  });

  form.addEventListener("click", (event) => {
    if (!(event.target instanceof Element)) return;
    /** @type {HTMLElement | null} */
    const add = event.target.closest(".add-finding");
    if (add) {
      const row = rowsOf(add.dataset.breast).find((r) => r.hidden);
      if (row) { row.hidden = false; row.querySelector("select").focus(); }
      add.hidden = !rowsOf(add.dataset.breast).some((r) => r.hidden);
      return;
    }
    /** @type {HTMLElement | null} */
    const remove = event.target.closest("[data-remove-mark]");
    if (remove) {
      /** @type {HTMLInputElement} */
      const input = form.querySelector(`input[name="mark_${remove.dataset.removeMark}"]`);
      input.value = "";
      describeMarks();
      changed(input);
    }
  });

  form.addEventListener("change", describeMarks); // a draft put back brings its marks
  describeMarks();
})();
