// The case page's film viewer, on Cornerstone3D: the screening hanging protocol, window/level
// on the stored pixels, linked zoom and pan, measurement, the prior beside the current, and
// the AI heatmap and region marks the server chose to send (nothing else is drawn).
//
// Films are panels the page lists (templates/screening/case_detail.html): DICOM films load
// through WADO-RS (metadata, then the frame at full bit depth); PNG/JPEG films from the
// role-checked image view, shown as they are. Bundled by viewer/build.mjs into static/viewer/.
import {
  cache,
  Enums,
  getShouldUseCPURendering,
  imageLoader,
  init as initCore,
  metaData,
  RenderingEngine,
  utilities as csUtils,
} from "@cornerstonejs/core";
import {
  addTool,
  Enums as ToolEnums,
  init as initTools,
  LengthTool,
  MagnifyTool,
  PanTool,
  ProbeTool,
  synchronizers,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
} from "@cornerstonejs/tools";
import { wadors } from "@cornerstonejs/dicom-image-loader";
import { initFrames } from "./frames.js";
import { createHanging, hangFilm } from "./hanging.js";
import { addMarkTools, markTools, setUpMarks } from "./marks.js";

const { Events, ViewportType } = Enums;
const { MouseBindings } = ToolEnums;
const PRIMARY_TOOLS = {
  w: WindowLevelTool.toolName,
  p: PanTool.toolName,
  m: LengthTool.toolName,
  v: ProbeTool.toolName,
  g: MagnifyTool.toolName,
  ...markTools(), // findings marked on the film: marks.js
};
const PRIMARY_TOOLS_BY_NAME = new Set(Object.values(PRIMARY_TOOLS));

const viewer = document.getElementById("viewer");
// W/L linked by default: a screening reader judges symmetry (left against right, CC against
// MLO), which holds only while every film is shown through the same window; one film windowed
// alone is the exception, chosen with the toggle.
const state = { active: null, tool: WindowLevelTool.toolName, linkWL: true };
let settingWindows = 0; // the viewer's own window changes (presets, loading): not propagated
let engine;
let group;
let hanging; // the hanging protocol in use (./hanging.js)
const loaded = new Map(); // panel -> Promise of its film shown

/** @type {(selector?: string) => HTMLElement[]} */
const panels = (selector = "") => Array.from(viewer.querySelectorAll(`.panel${selector}`));
const viewportId = (panel) => `film-${panel.dataset.image}`;
const viewportOf = (panel) => engine && engine.getViewport(viewportId(panel));

// --- Loading ------------------------------------------------------------------------------

const studyMetadata = new Map(); // study UID -> Promise of DICOM JSON instances

function metadataOf(study) {
  if (!studyMetadata.has(study)) {
    const url = `${viewer.dataset.dicomweb}/studies/${study}/metadata`;
    studyMetadata.set(
      study,
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/dicom+json" } }).then((r) => {
        if (!r.ok) throw new Error(`metadata ${r.status}`);
        return r.json();
      }),
    );
  }
  return studyMetadata.get(study);
}

function dicomImageId(panel) {
  const study = panel.dataset.study;
  return metadataOf(study).then((instances) => {
    const meta = instances.find((m) => m["00080018"].Value[0] === panel.dataset.sop);
    const series = meta["0020000E"].Value[0];
    const imageId =
      `wadors:${location.origin}${viewer.dataset.dicomweb}/studies/${study}` +
      `/series/${series}/instances/${panel.dataset.sop}/frames/1`;
    wadors.metaDataManager.add(imageId, meta);
    return imageId;
  });
}

// A mammogram has no ImageOrientationPatient (it is a projection), so the WADO-RS metadata
// provider marks its plane "default values" and Cornerstone would measure in pixels. The
// spacing in the file (PixelSpacing, else ImagerPixelSpacing) is real: say so.
function filmPlane(type, imageId) {
  if (type !== "imagePlaneModule" || !imageId.startsWith("wadors:")) return undefined;
  const meta = wadors.metaDataManager.get(imageId);
  const plane = wadors.metaData.metaDataProvider(type, imageId);
  const value = (meta && (meta["00280030"] || meta["00181164"]) || {}).Value;
  const spacing = Array.isArray(value) ? value : undefined;
  if (!plane || !spacing || spacing.length < 2) return plane;
  const [row, column] = spacing.map(Number);
  return { ...plane, pixelSpacing: [row, column], rowPixelSpacing: row, columnPixelSpacing: column, usingDefaultValues: false };
}

// The file's VOI LUT (the first table of its VOI LUT Sequence), where it has one: what the
// server's rendition applies (screening.imaging.dicom.rendition, what the AI scores), so the reader
// first sees the film as the file says to show it. Cornerstone's GPU path applies a window
// (LINEAR, LINEAR_EXACT or SIGMOID, from the file's VOI LUT Function) but not a table, so
// the table becomes a grey colour map over its input range: input first + i shows as
// entry i / (2^bits - 1), as PS3.3 C.11.2 says, inputs outside it as the first or last entry.
function fileVoiLut(imageId) {
  const meta = wadors.metaDataManager.get(imageId) || {};
  const item = ((meta["00283010"] || {}).Value || [])[0];
  const descriptor = item && (item["00283002"] || {}).Value;
  const data = item && item["00283006"];
  if (!descriptor || descriptor.length < 3 || !data) return null;
  const entries = Number(descriptor[0]) || 65536;
  let first = Number(descriptor[1]);
  const signed = ((meta["00280103"] || {}).Value || [0])[0] === 1;
  if (signed && first > 32767) first -= 65536;
  const bits = Number(descriptor[2]);
  let values = data.Value;
  if (!values && data.InlineBinary) {
    const bytes = Uint8Array.from(atob(data.InlineBinary), (c) => c.charCodeAt(0));
    values = bytes.length === entries ? bytes : new Uint16Array(bytes.buffer, 0, bytes.length >> 1);
  }
  if (!values || values.length < entries || !(bits >= 1 && bits <= 16)) return null;
  return { first, entries, top: 2 ** bits - 1, values };
}

const LUT_POINTS = 1024; // a 4096-entry table drawn through 1024 of its points, in order

function applyFileVoiLut(panel, viewport, imageId) {
  const lut = fileVoiLut(imageId);
  if (!lut) return;
  const inverted = viewport.getProperties().invert; // MONOCHROME1: dense tissue stays bright
  const last = lut.entries - 1;
  const step = Math.max(1, Math.floor(lut.entries / LUT_POINTS));
  const points = [];
  for (let i = 0; i <= last; i += Math.min(step, last - i || 1)) {
    const grey = lut.values[i] / lut.top;
    const shown = inverted ? 1 - grey : grey;
    points.push(last ? i / last : 0, shown, shown, shown);
    if (i === last) break;
  }
  const name = `file-voi-lut-${panel.dataset.image}`;
  csUtils.colormap.registerColormap({ Name: name, ColorSpace: "RGB", RGBPoints: points });
  viewport.setProperties({ voiRange: { lower: lut.first, upper: lut.first + last } });
  viewport.setProperties({ colormap: { name } });
  panel.dataset.voiLut = name;
}

// Back from the file's table to a straight grey ramp (a window chosen from the list).
function linearGrey(panel, viewport) {
  const [dark, light] = viewport.getProperties().invert ? [1, 0] : [0, 1];
  const name = `linear-grey-${dark}`;
  csUtils.colormap.registerColormap({ Name: name, ColorSpace: "RGB", RGBPoints: [0, dark, dark, dark, 1, light, light, light] });
  viewport.setProperties({ colormap: { name } });
  delete panel.dataset.voiLut;
}

// A PNG/JPEG film: decoded by the browser, its grey levels shown as they are (0-255). The
// "web:" loader builds the Cornerstone image from the role-checked image view.
const webSpacing = new Map(); // imageId -> mm per pixel, where the upload recorded it

function webModules(imageId, rows, columns) {
  const spacing = webSpacing.get(imageId);
  const known = Number.isFinite(spacing) && spacing > 0;
  return {
    imagePlaneModule: {
      rows,
      columns,
      rowPixelSpacing: known ? spacing : 1,
      columnPixelSpacing: known ? spacing : 1,
      pixelSpacing: known ? [spacing, spacing] : [1, 1],
      rowCosines: [1, 0, 0],
      columnCosines: [0, 1, 0],
      imageOrientationPatient: [1, 0, 0, 0, 1, 0],
      imagePositionPatient: [0, 0, 0],
      frameOfReferenceUID: imageId,
      usingDefaultValues: !known,
    },
    imagePixelModule: {
      samplesPerPixel: 1,
      photometricInterpretation: "MONOCHROME2",
      rows,
      columns,
      bitsAllocated: 8,
      bitsStored: 8,
      highBit: 7,
      pixelRepresentation: 0,
    },
    generalSeriesModule: { modality: "MG" },
    modalityLutModule: { rescaleSlope: 1, rescaleIntercept: 0 },
    voiLutModule: { windowCenter: [127.5], windowWidth: [256] },
  };
}

/** @returns {Promise<import("@cornerstonejs/core").Types.IImage>} */
async function loadWebImage(imageId) {
  const response = await fetch(imageId.slice("web:".length), { credentials: "same-origin" });
  if (!response.ok) throw new Error(`image ${response.status}`);
  const bitmap = await createImageBitmap(await response.blob());
  const { width, height } = bitmap;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, width, height).data;
  const grey = new Uint8Array(width * height);
  let min = 255;
  let max = 0;
  for (let i = 0; i < grey.length; i++) {
    const value = rgba[i * 4];
    grey[i] = value;
    if (value < min) min = value;
    if (value > max) max = value;
  }
  Object.entries(webModules(imageId, height, width)).forEach(([type, metadata]) =>
    csUtils.genericMetadataProvider.add(imageId, { type, metadata }),
  );
  const voxelManager = csUtils.VoxelManager.createImageVoxelManager({
    width,
    height,
    numberOfComponents: 1,
    scalarData: grey,
    id: imageId,
  });
  const plane = webModules(imageId, height, width).imagePlaneModule;
  return {
    imageId,
    intercept: 0,
    slope: 1,
    windowCenter: 127.5,
    windowWidth: 256,
    color: false,
    rgba: false,
    dataType: "Uint8Array",
    voiLUTFunction: Enums.VOILUTFunctionType.LINEAR,
    getCanvas: () => canvas,
    numberOfComponents: 1,
    minPixelValue: min,
    maxPixelValue: max,
    rows: height,
    columns: width,
    height,
    width,
    columnPixelSpacing: plane.columnPixelSpacing,
    rowPixelSpacing: plane.rowPixelSpacing,
    FrameOfReferenceUID: imageId,
    invert: false,
    getPixelData: () => voxelManager.getScalarData(),
    voxelManager,
    sizeInBytes: grey.byteLength,
  };
}

function webImageId(panel) {
  const imageId = `web:${panel.dataset.src}`;
  webSpacing.set(imageId, Number(panel.dataset.spacing));
  return imageId;
}

function show(panel) {
  if (loaded.has(panel)) return loaded.get(panel);
  const promise = (async () => {
    const imageId = await (panel.dataset.kind === "dicom" ? dicomImageId(panel) : webImageId(panel));
    panel.dataset.imageId = imageId;
    const viewport = viewportOf(panel);
    // Unlinked from its partner until it is hung and painted: the new stack's camera and
    // the turn are this film's own, and copying them would render the partner again (a
    // whole film's render in software WebGL) once per film loaded.
    unlinkPairs();
    /** @type {string | null} */
    let hungOn; // the canvas size the film was hung on
    try {
      await viewport.setStack([imageId]);
      performance.mark(`film-loaded-${panel.dataset.image}`); // fetched, decoded, on its texture
      if (panel.dataset.kind !== "dicom") viewport.setProperties({ voiRange: { lower: 0, upper: 255 } });
      else applyFileVoiLut(panel, viewport, imageId);
      hungOn = staleCanvas(panel) ? null : `${viewport.canvas.width}x${viewport.canvas.height}`;
      hangBackToBack(panel, viewport, imageId);
      panel.dataset.baseInvert = String(Boolean(viewport.getProperties().invert));
      const painted = new Promise((resolve) =>
        panel.querySelector(".viewport").addEventListener(Events.IMAGE_RENDERED, resolve, { once: true }),
      );
      viewport.render();
      await painted;
    } finally {
      relinkPairs();
    }
    performance.mark(`film-painted-${panel.dataset.image}`);
    markReference(panel, viewport);
    panel.dataset.loaded = "1";
    // Hung while its canvas awaited a resize, or resized since: hang it on the canvas it has.
    if (!panel.hidden && hungOn !== `${viewport.canvas.width}x${viewport.canvas.height}`) rehang([panel]);
    markInvert();
    fillPresets();
  })().catch((error) => {
    panel.dataset.loaded = "error";
    panel.querySelector(".vp-error").textContent = `This film could not be shown (${error.message}).`;
  });
  loaded.set(panel, promise);
  return promise;
}

// --- Hanging protocol ---------------------------------------------------------------------

// Back to back: a right film with its chest wall on the right, a left film on the left, so
// the chest walls meet in the middle. The header's PatientOrientation says where the
// columns run; without it the chest wall is the edge with the tissue on it.
// The turn and the slide are ./hanging.js's (hangFilm), with the fill to the viewport's height.
function hangBackToBack(panel, viewport, imageId) {
  const side = panel.dataset.side;
  if (side === "R" || side === "L") {
    const orientation = metaData.get("generalImageModule", imageId)?.patientOrientation;
    let wallOnRight;
    const rows = Array.isArray(orientation) ? String(orientation[0] || "") : "";
    if (rows.includes("P") || rows.includes("A")) {
      wallOnRight = rows.includes("P");
    } else {
      wallOnRight = tissueOnRight(imageId);
    }
    if (wallOnRight !== undefined) panel.dataset.flip = String(side === "R" ? !wallOnRight : wallOnRight);
  }
  hangFilm(panel, viewport);
}

function tissueOnRight(imageId) {
  const image = cache.getImage(imageId);
  if (!image) return undefined;
  const pixels = image.getPixelData();
  const { columns, rows } = image;
  const band = Math.max(1, Math.floor(columns / 10));
  let left = 0;
  let right = 0;
  for (let y = 0; y < rows; y += 4) {
    for (let x = 0; x < band; x++) {
      left += pixels[y * columns + x];
      right += pixels[y * columns + columns - 1 - x];
    }
  }
  const monochrome1 = metaData.get("imagePixelModule", imageId)?.photometricInterpretation === "MONOCHROME1";
  return monochrome1 ? right < left : right > left;
}

function visiblePanels() {
  return hanging.shown();
}

// A new hanging (./hanging.js): the films now in view are loaded where they are not yet,
// and hung again once the new grid is laid out (and the resize observer has run).
function hungAgain(shown) {
  markInvert();
  requestAnimationFrame(() =>
    resizeFilms(false, () => {
      shown.forEach((panel) => show(panel));
      requestAnimationFrame(() => rehang([...shown]));
    }),
  );
}

// Cornerstone (4.22) does not resize while a render of its own is pending: it notes the new
// size and returns, and the film is then drawn and hung against the canvas's old size (a
// quick change of protocol left a film 280 px off its chest-wall edge). So a resize is asked
// again on the next frame, after that render, until every film's canvas has the size it is
// shown at; then `done` runs.
function resizeFilms(keepCamera, done = () => {}, tries = 30) {
  engine.resize(true, keepCamera);
  if (tries > 0 && panels().some(staleCanvas)) {
    requestAnimationFrame(() => resizeFilms(keepCamera, done, tries - 1));
  } else {
    done();
  }
}

// A film in view whose canvas has not yet been resized to the size the page shows it at.
function staleCanvas(panel) {
  const viewport = viewportOf(panel);
  if (!viewport || panel.hidden) return false;
  const { canvas } = viewport;
  const ratio = window.devicePixelRatio || 1;
  const [width, height] = [Math.round(canvas.clientWidth * ratio), Math.round(canvas.clientHeight * ratio)];
  return width > 0 && height > 0 && (canvas.width !== width || canvas.height !== height);
}

// --- AI overlay: the heatmap and marks sit on the film, following zoom, pan and flip ----

function placeOverlay(panel) {
  const layers = panel.querySelector(".layers");
  const viewport = viewportOf(panel);
  const imageId = panel.dataset.imageId;
  if (!layers || !viewport || !imageId || panel.hidden) return;
  const plane = metaData.get("imagePlaneModule", imageId);
  if (!plane) return;
  const corner = (col, row) => viewport.worldToCanvas(csUtils.imageToWorldCoords(imageId, [col, row]));
  const [x0, y0] = corner(0, 0);
  const [x1, y1] = corner(plane.columns, plane.rows);
  layers.style.left = `${Math.min(x0, x1)}px`;
  layers.style.top = `${Math.min(y0, y1)}px`;
  layers.style.width = `${Math.abs(x1 - x0)}px`;
  layers.style.height = `${Math.abs(y1 - y0)}px`;
  layers.classList.toggle("flipped", x1 < x0);
  panel.dataset.zoom = viewport.getZoom().toFixed(3);
  const voi = viewport.getProperties().voiRange;
  if (voi) panel.dataset.voi = `${Math.round(voi.lower)},${Math.round(voi.upper)}`;
}

// Only what the server sent can be drawn (a heatmap or marks the version's evidence lets
// readers see; screening.ai.queries.overlay_drawable decides the first page): without it
// the overlay controls and H are not offered. While the AI may still arrive in place the
// page keeps their room ("unavailable", not shown), so the films do not move when it comes.
function overlayDrawable() {
  return Boolean(viewer.querySelector(".panel.current .layers img.heatmap, .panel.current .layers svg.marks"));
}

function applyOverlay() {
  const controls = document.getElementById("overlay-controls");
  if (controls && overlayDrawable()) {
    controls.hidden = false;
    controls.classList.remove("unavailable");
  } else if (controls && !controls.hidden) controls.classList.add("unavailable");
  const toggle = /** @type {HTMLInputElement | null} */ (document.getElementById("overlay-toggle"));
  const opacity = /** @type {HTMLInputElement | null} */ (document.getElementById("overlay-opacity"));
  const on = !toggle || toggle.checked;
  panels(".current").forEach((panel) => {
    /** @type {NodeListOf<HTMLImageElement>} */ (panel.querySelectorAll("img.heatmap")).forEach((img) => {
      img.style.display = on ? "block" : "none";
      img.style.opacity = String(opacity ? Number(opacity.value) / 100 : 0.5);
    });
    /** @type {NodeListOf<SVGSVGElement>} */ (panel.querySelectorAll("svg.marks")).forEach((svg) => {
      svg.style.display = on ? "block" : "none";
    });
  });
  const legend = document.getElementById("heat-legend");
  if (legend) legend.hidden = !on || !viewer.querySelector("img.heatmap");
}

// --- Window/level presets from the files ------------------------------------------------

function fillPresets() {
  const select = /** @type {HTMLSelectElement | null} */ (document.getElementById("voi-preset"));
  if (!select) return;
  const seen = new Set(Array.from(select.options).map((o) => o.value));
  panels(".current").forEach((panel) => {
    const imageId = panel.dataset.imageId;
    if (!imageId || panel.dataset.kind !== "dicom") return;
    const voi = metaData.get("voiLutModule", imageId) || {};
    (voi.windowCenter || []).forEach((center, i) => {
      const width = (voi.windowWidth || [])[i];
      if (width === undefined) return;
      const value = `${center}/${width}`;
      if (seen.has(value)) return;
      seen.add(value);
      select.add(new Option(`File window ${i + 1}: C ${center} W ${width}`, value));
    });
  });
}

function applyPreset(value) {
  const targets = hanging.protocol === "single" ? visiblePanels() : panels(".current");
  settingWindows += 1;
  try {
    targets.forEach((panel) => setPreset(panel, value));
  } finally {
    settingWindows -= 1;
  }
  markInvert();
}

function setPreset(panel, value) {
  const viewport = viewportOf(panel);
  const image = panel.dataset.imageId && cache.getImage(panel.dataset.imageId);
  if (!viewport || !image) return;
  let range;
  if (value === "file") {
    viewport.resetProperties();
    if (panel.dataset.kind !== "dicom") viewport.setProperties({ voiRange: { lower: 0, upper: 255 } });
    else applyFileVoiLut(panel, viewport, panel.dataset.imageId);
    viewport.render();
    markReference(panel, viewport);
    return;
  }
  if (panel.dataset.voiLut) linearGrey(panel, viewport); // a window replaces the file's table
  if (value === "full") range = { lower: image.minPixelValue, upper: image.maxPixelValue };
  else {
    const [center, width] = value.split("/").map(Number);
    range = csUtils.windowLevel.toLowHighRange(width, center);
  }
  viewport.setProperties({ voiRange: range });
  viewport.render();
  markReference(panel, viewport);
}

// --- Linked window/level -------------------------------------------------------------------

// Each film's reference window: the one it was first shown with (its file's window or table,
// over its own bit depth) or last given by a preset. A change dragged on one film is carried
// to the others as the same change relative to their own reference: width scaled by the same
// factor, centre moved by the same fraction of the reference width. A 12-bit and a 16-bit
// film, or two films with different presets, so stay windowed alike.
function markReference(panel, viewport) {
  const voi = viewport.getProperties().voiRange;
  if (voi) panel.dataset.reference = `${voi.lower},${voi.upper}`;
}

function referenceOf(panel) {
  const [lower, upper] = (panel.dataset.reference || "").split(",").map(Number);
  return upper > lower ? { centre: (lower + upper) / 2, width: upper - lower } : null;
}

function windowChanged(source, range) {
  if (!state.linkWL || settingWindows || source.dataset.loaded !== "1" || !range) return;
  const reference = referenceOf(source);
  if (!reference) return;
  const scale = (range.upper - range.lower) / reference.width;
  const shift = ((range.lower + range.upper) / 2 - reference.centre) / reference.width;
  settingWindows += 1;
  try {
    panels().forEach((panel) => {
      const viewport = viewportOf(panel);
      const own = referenceOf(panel);
      if (panel === source || panel.dataset.loaded !== "1" || !viewport || !own) return;
      const centre = own.centre + shift * own.width;
      const width = own.width * scale;
      viewport.setProperties({ voiRange: { lower: centre - width / 2, upper: centre + width / 2 } });
      viewport.render();
    });
  } finally {
    settingWindows -= 1;
  }
}

function toggleLinkWL() {
  state.linkWL = !state.linkWL;
  const button = document.getElementById("link-wl");
  if (button) button.setAttribute("aria-pressed", String(state.linkWL));
  viewer.dataset.linkWl = String(state.linkWL);
}

function invert() {
  settingWindows += 1;
  try {
    panels(":not([hidden])").forEach((panel) => {
      const viewport = viewportOf(panel);
      if (!viewport || !panel.dataset.imageId) return;
      viewport.setProperties({ invert: !viewport.getProperties().invert });
      viewport.render();
    });
  } finally {
    settingWindows -= 1;
  }
  markInvert();
}

// A film is inverted when it is shown the other way from how it first hung (a MONOCHROME1
// film is drawn inverted to begin with, so that alone is not "Inverted"). Each such film
// says so on itself; the button is pressed while a film in view is.
function markInvert() {
  let shownInverted = false;
  panels().forEach((panel) => {
    const viewport = viewportOf(panel);
    if (!viewport || panel.dataset.loaded !== "1") return;
    const inverted = String(Boolean(viewport.getProperties().invert)) !== panel.dataset.baseInvert;
    panel.dataset.inverted = String(inverted);
    /** @type {HTMLElement | null} */
    const label = panel.querySelector(".vp-inverted");
    if (label) label.hidden = !inverted;
    if (inverted && !panel.hidden) shownInverted = true;
  });
  const button = document.getElementById("invert");
  if (button) button.setAttribute("aria-pressed", String(shownInverted));
}

function resetView() {
  rehang(panels());
}

function useTool(name) {
  if (!PRIMARY_TOOLS_BY_NAME.has(name)) return;
  group.setToolPassive(state.tool);
  group.setToolActive(name, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  state.tool = name;
  /** @type {NodeListOf<HTMLElement>} */ (viewer.querySelectorAll("[data-tool]")).forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.tool === name)));
  viewer.dataset.tool = name;
}

// --- Setup --------------------------------------------------------------------------------

function setUpTools() {
  [WindowLevelTool, PanTool, ZoomTool, LengthTool, ProbeTool, MagnifyTool].forEach((tool) => addTool(tool));
  group = ToolGroupManager.createToolGroup("films");
  [WindowLevelTool, PanTool, ZoomTool, LengthTool, ProbeTool, MagnifyTool].forEach((tool) => group.addTool(tool.toolName));
  group.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
  group.setToolActive(ZoomTool.toolName, {
    bindings: [{ mouseButton: MouseBindings.Secondary }, { mouseButton: MouseBindings.Wheel }],
  });
  [LengthTool, ProbeTool, MagnifyTool].forEach((tool) => group.setToolPassive(tool.toolName));
  addMarkTools(group);
}

const pairSyncs = [];
let unlinked = 0; // films being loaded or hung again: the pairs stay unlinked until none is

function unlinkPairs() {
  unlinked += 1;
  pairSyncs.forEach((sync) => sync.setEnabled(false));
}

function relinkPairs() {
  unlinked -= 1;
  if (unlinked === 0) pairSyncs.forEach((sync) => sync.setEnabled(true));
}

// Hang films again (after a reset or a new layout) with the pairs unlinked, so one film's
// new camera is not copied onto its partner half-way.
function rehang(targets) {
  // A film whose canvas is still to be resized is hung once it has been (see resizeFilms).
  const later = targets.filter(staleCanvas);
  if (later.length) requestAnimationFrame(() => resizeFilms(true, () => rehang(later)));
  targets = targets.filter((panel) => !later.includes(panel));
  unlinkPairs();
  try {
    targets.forEach((panel) => {
      const viewport = viewportOf(panel);
      if (!viewport || panel.dataset.loaded !== "1") return;
      viewport.resetCamera();
      hangFilm(panel, viewport);
    });
  } finally {
    relinkPairs();
  }
  targets.forEach((panel) => viewportOf(panel)?.render());
}

function linkPairs() {
  // Zoom and pan move a pair together: RCC with LCC, RMLO with LMLO (and the prior's pairs).
  const pairs = new Map();
  panels().forEach((panel) => {
    if (!panel.dataset.view) return;
    const key = `${panel.classList.contains("prior") ? panel.dataset.case : "current"}-${panel.dataset.view}`;
    if (!pairs.has(key)) pairs.set(key, []);
    pairs.get(key).push(panel);
  });
  pairs.forEach((members, key) => {
    if (members.length < 2) return;
    const sync = synchronizers.createZoomPanSynchronizer(`pair-${key}`);
    pairSyncs.push(sync);
    members.forEach((panel) => sync.add({ renderingEngineId: engine.id, viewportId: viewportId(panel) }));
  });
}

// The films' previews (server-rendered, in the page) are painted before the viewer's
// start-up (WebGL, workers, tools) holds the page's thread: the case page's first image
// within 300 ms (issue 16). The current study's metadata is asked for meanwhile; the wait
// ends after at most PREVIEW_WAIT_MS, so a slow preview never holds the full films back.
const PREVIEW_WAIT_MS = 300;

function previewsPainted() {
  const previews = panels(".current").map((panel) => /** @type {HTMLImageElement | null} */ (panel.querySelector("img.preview")));
  const decoded = Promise.allSettled(previews.filter(Boolean).map((img) => img.decode()));
  const limit = new Promise((resolve) => setTimeout(resolve, PREVIEW_WAIT_MS));
  return Promise.race([decoded, limit]).then(
    () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))),
  );
}

async function start() {
  panels(".current[data-kind='dicom']").forEach((panel) => metadataOf(panel.dataset.study).catch(() => {}));
  await previewsPainted();
  // init() fills what is not given from its defaults, though its type asks for every field.
  await initCore(/** @type {import("@cornerstonejs/core").Types.Cornerstone3DConfig} */ ({ rendering: { webGlContextCount: 1 } }));
  initTools();
  initFrames(viewer); // the frames' loader and decoding workers: frames.js
  metaData.addProvider(filmPlane, 10000);
  imageLoader.registerImageLoader("web", (imageId) => ({ promise: loadWebImage(imageId) }));
  engine = new RenderingEngine("films");
  engine.setViewports(
    panels().map((panel) => ({
      viewportId: viewportId(panel),
      type: ViewportType.STACK,
      element: panel.querySelector(".viewport"),
      defaultOptions: { background: [0, 0, 0] },
    })),
  );
  setUpTools();
  setUpMarks({ panels, viewportId, planeOf: (panel) => panel.dataset.imageId && metaData.get("imagePlaneModule", panel.dataset.imageId) });
  panels().forEach((panel) => {
    group.addViewport(viewportId(panel), engine.id);
    const element = panel.querySelector(".viewport");
    element.addEventListener(Events.IMAGE_RENDERED, () => placeOverlay(panel));
    element.addEventListener(Events.VOI_MODIFIED, (event) => windowChanged(panel, /** @type {CustomEvent} */ (event).detail.range));
    element.addEventListener("contextmenu", (event) => event.preventDefault());
    element.addEventListener("pointerdown", () => {
      state.active = panel;
      panels().forEach((p) => p.classList.toggle("active", p === panel));
    });
  });
  linkPairs();
  viewer.dataset.linkWl = String(state.linkWL);
  new ResizeObserver(() => resizeFilms(true)).observe(document.getElementById("hanging"));
  hanging = createHanging({ viewer, panels, active: () => state.active, changed: hungAgain });
  hanging.apply();
  applyOverlay();
  await Promise.all(visiblePanels().map((panel) => show(panel)));
  viewer.dataset.readyMs = String(Math.round(performance.now())); // from the navigation's start
  viewer.dataset.ready = "1";
}

function handleKey(key, shift = false) {
  if (!hanging) return; // the viewer is still starting
  if (PRIMARY_TOOLS[key]) return useTool(PRIMARY_TOOLS[key]);
  const actions = {
    h: () => {
      const toggle = /** @type {HTMLInputElement | null} */ (document.getElementById("overlay-toggle"));
      if (toggle && overlayDrawable()) {
        toggle.checked = !toggle.checked;
        applyOverlay();
      }
    },
    r: resetView,
    l: () => hanging.cycle(shift ? -1 : 1),
    f: () => hanging.step(shift ? -1 : 1),
    i: invert,
    c: () => hanging.togglePrior(),
  };
  if (actions[key]) actions[key]();
}

if (viewer) {
  document.addEventListener("viewer:key", (event) => {
    const { key, shift } = /** @type {CustomEvent} */ (event).detail;
    handleKey(key, shift);
  });
  document.addEventListener("ai:arrived", () => {
    applyOverlay();
    panels(".current").forEach(placeOverlay);
  });
  viewer.addEventListener("click", (event) => {
    if (!(event.target instanceof Element)) return;
    /** @type {HTMLButtonElement | null} */
    const button = event.target.closest("button[data-key]");
    if (button) handleKey(button.dataset.key);
    if (event.target.closest("#link-wl")) toggleLinkWL();
  });
  const opacity = document.getElementById("overlay-opacity");
  if (opacity) opacity.addEventListener("input", applyOverlay);
  const toggle = document.getElementById("overlay-toggle");
  if (toggle) toggle.addEventListener("change", applyOverlay);
  const preset = /** @type {HTMLSelectElement | null} */ (document.getElementById("voi-preset"));
  if (preset) preset.addEventListener("change", () => applyPreset(preset.value));
  // Test and benchmark hook: where an image pixel of a panel is on the page, and how the
  // film is rendered (GPU or the CPU fallback).
  window.mammoViewer = {
    describe(selector) {
      const panel = /** @type {HTMLElement} */ (viewer.querySelector(selector));
      const viewport = viewportOf(panel);
      const data = viewport.getImageData();
      return {
        cpu: getShouldUseCPURendering(),
        hasPixelSpacing: data.hasPixelSpacing,
        spacing: Array.from(data.spacing),
        plane: metaData.get("imagePlaneModule", panel.dataset.imageId),
      };
    },
    imageToPage(selector, col, row) {
      const panel = /** @type {HTMLElement} */ (viewer.querySelector(selector));
      const viewport = viewportOf(panel);
      const [x, y] = viewport.worldToCanvas(csUtils.imageToWorldCoords(panel.dataset.imageId, [col, row]));
      const box = panel.querySelector(".viewport").getBoundingClientRect();
      return { x: box.left + x, y: box.top + y };
    },
  };
  start().catch((error) => {
    viewer.dataset.ready = "error";
    const note = document.getElementById("viewer-error");
    if (note) {
      note.hidden = false;
      note.textContent = `The viewer could not start: ${error.message}`;
    }
  });
}
