// The case page's hanging protocols, as a mammography workstation offers them: the four
// views 1×4 in the site's order, the CC pair, the MLO pair, current and prior of one view
// side by side, a single film. Every film fills its viewport's height, turned and slid so
// its chest wall is on its viewport's inner edge (back to back); where the film is wider
// than its viewport, what is cut is the outer edge, the air beyond the skin line.
//
// The protocols, their order, the view each pair shows and the site's 1×4 order are the server's (screening/reading/
// hanging.py, sent with json_script as #hanging-rules), as is the reader's default, saved
// with "Make default" (POST /reading/settings/, answered in JSON, so the case stays open).
import { metaData, utilities as csUtils } from "@cornerstonejs/core";

// viewer: the #viewer section; panels(selector): its .panel elements; active(): the film
// last clicked; changed(shown): called after each new hanging with the films now in view.
export function createHanging({ viewer, panels, active, changed }) {
  const rules = JSON.parse(document.getElementById("hanging-rules").textContent);
  const labels = new Map(rules.protocols);
  const state = { protocol: rules.default, focus: null, back: null, saved: rules.default };

  const priors = () => panels(".prior").filter((p) => p.dataset.case === viewer.dataset.compareCase);
  const priorOf = (panel) => panel && panel.dataset.slot && priors().find((q) => q.dataset.slot === panel.dataset.slot);

  // The current films in the site's order: its four views first, then any other film.
  function ordered() {
    const current = panels(".current");
    const four = rules.row_order.map((slot) => current.find((p) => p.dataset.slot === slot)).filter(Boolean);
    return [...four, ...current.filter((p) => !four.includes(p))];
  }

  const available = (protocol) => protocol !== "prior" || ordered().some(priorOf);

  // The film a single-film or current-and-prior protocol shows: the one stepped to with F,
  // else the film last clicked (a prior's current film for a prior), else the first.
  function focused() {
    const choices = state.protocol === "prior" ? ordered().filter(priorOf) : ordered();
    return choices.includes(state.focus) ? state.focus : choices[0];
  }

  function shown() {
    const films = ordered();
    if (state.protocol === "row") {
      const four = films.filter((p) => rules.row_order.includes(p.dataset.slot));
      return four.length ? four : films;
    }
    const view = rules.pair_views[state.protocol];
    if (view) {
      const pair = films.filter((p) => p.dataset.view === view);
      return pair.length ? pair : films.slice(0, 2);
    }
    const film = focused();
    if (!film) return [];
    if (state.protocol !== "prior") return [film];
    // Back to back: the current film where its side hangs (a right film on the left, its
    // chest wall on the right), the prior mirrored beside it, chest walls meeting.
    const prior = priorOf(film);
    return film.dataset.side === "L" ? [prior, film] : [film, prior];
  }

  function label() {
    const name = labels.get(state.protocol);
    if (state.protocol !== "single" && state.protocol !== "prior") return name;
    const film = focused();
    const text = film && film.querySelector(".vp-label");
    return text ? `${name}: ${text.textContent}` : name;
  }

  function apply() {
    const films = shown();
    panels().forEach((panel) => {
      const at = films.indexOf(panel);
      panel.hidden = at < 0;
      panel.style.order = at < 0 ? "" : String(at);
      panel.dataset.mirror = String(state.protocol === "prior" && panel.classList.contains("prior"));
    });
    viewer.dataset.layout = state.protocol;
    document.getElementById("hanging").style.setProperty("--columns", String(Math.max(1, films.length)));
    document.getElementById("layout-name").textContent = label();
    const compare = document.getElementById("compare-prior");
    if (compare) compare.setAttribute("aria-pressed", String(state.protocol === "prior"));
    showDefault();
    changed(films);
  }

  // Into a one-film protocol, the film the reader last clicked is the one shown.
  function follow() {
    const clicked = active();
    if (!clicked) return;
    state.focus = clicked.classList.contains("prior")
      ? panels(".current").find((p) => p.dataset.slot === clicked.dataset.slot) || state.focus
      : clicked;
  }

  function use(protocol) {
    if (!labels.has(protocol) || !available(protocol)) return;
    if (protocol === "single" || protocol === "prior") follow();
    state.protocol = protocol;
    apply();
  }

  function cycle(by) {
    const order = rules.protocols.map(([value]) => value).filter(available);
    const at = order.indexOf(state.protocol);
    use(order[(at + by + order.length) % order.length]);
  }

  // C: current and prior of the film in focus, and back to the protocol it came from.
  function togglePrior() {
    if (state.protocol === "prior") use(state.back && state.back !== "prior" ? state.back : "row");
    else if (available("prior")) {
      state.back = state.protocol;
      use("prior");
    }
  }

  // F: the next film of a one-film protocol, in the site's order.
  function step(by) {
    if (state.protocol !== "single" && state.protocol !== "prior") return;
    const choices = state.protocol === "prior" ? ordered().filter(priorOf) : ordered();
    const at = choices.indexOf(focused());
    state.focus = choices[(at + by + choices.length) % choices.length];
    apply();
  }

  // --- The reader's default, kept on the server ------------------------------------------

  const form = /** @type {HTMLFormElement | null} */ (document.getElementById("protocol-default-form"));

  function showDefault() {
    const button = /** @type {HTMLButtonElement | null} */ (document.getElementById("protocol-default"));
    if (!button) return;
    const mine = state.protocol === state.saved;
    button.disabled = mine;
    button.textContent = mine ? "Your default" : "Make default";
  }

  async function saveDefault(event) {
    event.preventDefault();
    const protocol = state.protocol;
    const body = new FormData(form);
    body.set("hanging_protocol", protocol);
    const button = document.getElementById("protocol-default");
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(String(response.status));
      state.saved = (await response.json()).hanging_protocol;
      showDefault();
    } catch (error) {
      button.textContent = `Not saved (${error instanceof Error ? error.message : error})`;
    }
  }

  if (form) form.addEventListener("submit", saveDefault);
  if (!available(state.protocol)) state.protocol = "row";

  return {
    apply,
    cycle,
    togglePrior,
    step,
    shown,
    get protocol() {
      return state.protocol;
    },
  };
}

// Hang one film in its viewport: fill the viewport's height (a portrait film; a landscape
// one is fitted whole), turn it as decided (data-flip, mirrored again for a prior shown
// beside its current film) and slide its chest wall to the viewport's inner edge. Kept as
// the camera that zoom and pan are measured from, and applied again after reset or a new
// protocol.
export function hangFilm(panel, viewport) {
  const imageId = panel.dataset.imageId;
  const mirrored = panel.dataset.mirror === "true";
  const sided = panel.dataset.flip !== undefined;
  if (sided) viewport.setCamera({ flipHorizontal: (panel.dataset.flip === "true") !== mirrored }, true);
  const plane = imageId && metaData.get("imagePlaneModule", imageId);
  const width = viewport.canvas.clientWidth;
  if (!plane || !width) return;
  fillHeight(viewport, imageId, plane);
  if (!sided) return;
  const wallOnRight = (panel.dataset.side === "R") !== mirrored;
  const corner = (col, row) => viewport.worldToCanvas(csUtils.imageToWorldCoords(imageId, [col, row]))[0];
  const [x0, x1] = [corner(0, 0), corner(plane.columns, plane.rows)];
  const shift = wallOnRight ? width - Math.max(x0, x1) : -Math.min(x0, x1);
  if (Math.abs(shift) < 1) return;
  const [a, b] = [viewport.canvasToWorld([0, 0]), viewport.canvasToWorld([shift, 0])];
  const camera = viewport.getCamera();
  const moved = (point) => point.map((value, i) => value + a[i] - b[i]);
  viewport.setCamera({ focalPoint: moved(camera.focalPoint), position: moved(camera.position) }, true);
}

// A parallel camera's scale is half the height it shows, in world units (mm where the
// file gives the spacing): half the film's height fills the viewport's height exactly.
function fillHeight(viewport, imageId, plane) {
  if (plane.columns > plane.rows) return;
  const top = csUtils.imageToWorldCoords(imageId, [0, 0]);
  const bottom = csUtils.imageToWorldCoords(imageId, [0, plane.rows]);
  const height = Math.hypot(...top.map((value, i) => value - bottom[i]));
  if (height > 0) viewport.setCamera({ parallelScale: height / 2 }, true);
}
