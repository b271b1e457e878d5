// Findings marked on the films (issue 24). Cornerstone3D's probe, ellipse and arrow place a
// mark on a current film; the mark leaves the viewer as the film's pixel coordinates (the
// stored film's, (0, 0) its top left corner, as a DICOM SR's SCOORD counts them) in a
// "viewer:marked" event, which the read form (static/js/findings.js) puts in a finding row
// of the film's breast. Every mark the page holds is drawn on its film, over the film in its
// .layers (which the viewer keeps on the film through zoom, pan and flip): the marks of the
// reads the server sent (#film-marks: only the reads this user may see, so a blind second
// reader is sent none of the first's) and those of the read being entered.
import { Enums, eventTarget, utilities as csUtils } from "@cornerstonejs/core";
import {
  addTool,
  annotation,
  ArrowAnnotateTool,
  EllipticalROITool,
  Enums as ToolEnums,
  ProbeTool,
  utilities as toolUtils,
} from "@cornerstonejs/tools";

class FindingPointTool extends ProbeTool {
  static toolName = "FindingPoint";
}
class FindingEllipseTool extends EllipticalROITool {
  static toolName = "FindingEllipse";
}
class FindingArrowTool extends ArrowAnnotateTool {
  static toolName = "FindingArrow";
}

// Tool -> the shape it stores (screening.choices.MarkShape) and the key that picks it.
const SHAPES = {
  [FindingPointTool.toolName]: { shape: "point", key: "k", tool: FindingPointTool },
  [FindingEllipseTool.toolName]: { shape: "ellipse", key: "e", tool: FindingEllipseTool },
  [FindingArrowTool.toolName]: { shape: "arrow", key: "x", tool: FindingArrowTool },
};
const READ_SIGNS = { first: "1", second: "2", arbitration: "A" };
const SVG = "http://www.w3.org/2000/svg";

const form = () => document.getElementById("read-form");

// The mark tools by key, for the viewer's primary tools: only where this user is entering a
// read (a mark is a finding of one's own read; nobody else has a form to put it in).
export function markTools() {
  if (!form()) return {};
  return Object.fromEntries(Object.entries(SHAPES).map(([name, { key }]) => [key, name]));
}

export function addMarkTools(group) {
  if (!form()) return;
  Object.entries(SHAPES).forEach(([name, { tool }]) => {
    addTool(tool);
    group.addTool(name, name === FindingArrowTool.toolName ? { getTextCallback: (done) => done("finding") } : {});
    group.setToolPassive(name);
  });
}

// The annotation's handles as the stored shape's points, in the film's pixel coordinates:
// a point; an arrow's tail then head (Cornerstone keeps the head first); an ellipse's ends
// of one axis then of the other. A handle dragged off the film is held to its edge.
function filmPoints(placed, imageId, shape) {
  const handles = placed.data.handles.points;
  const ordered = shape === "arrow" ? [handles[1], handles[0]] : handles;
  return ordered.map((world) => csUtils.worldToImageCoords(imageId, world));
}

function clampTo(points, columns, rows) {
  const round = (value) => Math.round(value * 10) / 10;
  return points.map(([x, y]) => [round(Math.min(Math.max(x, 0), columns)), round(Math.min(Math.max(y, 0), rows))]);
}

export function setUpMarks({ panels, planeOf, viewportId }) {
  const sent = JSON.parse((document.getElementById("film-marks") || {}).textContent || "[]");
  let version = 0;

  function formMarks() {
    const found = [];
    const entry = form();
    if (!entry) return found;
    /** @type {NodeListOf<HTMLInputElement>} */ (entry.querySelectorAll("input[data-mark]")).forEach((input) => {
      if (!input.value) return;
      try {
        const mark = JSON.parse(input.value);
        found.push({ ...mark, read: "this", sign: input.dataset.mark.replace("_", ""), label: `This read: ${input.dataset.mark}` });
      } catch (error) {
        // not drawn; the server refuses it and says so
      }
    });
    return found;
  }

  function draw(panel) {
    const layers = panel.querySelector(".layers");
    const plane = planeOf(panel);
    if (!layers || !plane) return;
    panel.dataset.marksVersion = String(version);
    layers.querySelectorAll("svg.finding-marks").forEach((svg) => svg.remove());
    const image = Number(panel.dataset.image);
    const marks = [...sent, ...formMarks()].filter((mark) => mark.image === image);
    panel.dataset.findingMarks = String(marks.length);
    if (!marks.length) return;
    const { columns, rows } = plane;
    const size = Math.max(columns, rows);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "finding-marks");
    svg.setAttribute("viewBox", `0 0 ${columns} ${rows}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("font-size", String(Math.max(1, Math.round(size / 40))));
    marks.forEach((mark) => svg.appendChild(shapeOf(mark, size)));
    layers.appendChild(svg);
  }

  function redraw() {
    version += 1;
    panels(".current").forEach(draw);
  }

  // A mark placed: it leaves as coordinates, and the annotation itself goes (the form's
  // row, not Cornerstone's state, holds the read's marks, so removing a row removes it).
  eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, (event) => {
    const placed = event.detail.annotation;
    const kind = placed && SHAPES[placed.metadata.toolName];
    if (!kind) return;
    const imageId = placed.metadata.referencedImageId;
    const panel = panels().find((p) => p.dataset.imageId === imageId);
    // Removed once the tool has finished with it (the arrow still labels it after this).
    setTimeout(() => {
      annotation.state.removeAnnotation(placed.annotationUID);
      if (panel) toolUtils.triggerAnnotationRenderForViewportIds([viewportId(panel)]);
    }, 0);
    if (!panel) return;
    const plane = planeOf(panel);
    const detail = { image: Number(panel.dataset.image), breast: panel.dataset.side, film: panel.querySelector(".vp-label")?.textContent || "" };
    if (panel.classList.contains("prior")) detail.refused = "Findings are marked on the current films, not the prior's.";
    else if (detail.breast !== "R" && detail.breast !== "L") detail.refused = "This film does not say which breast it is: record the finding without a mark.";
    else {
      detail.shape = kind.shape;
      detail.points = clampTo(filmPoints(placed, imageId, kind.shape), plane.columns, plane.rows);
    }
    document.dispatchEvent(new CustomEvent("viewer:marked", { detail }));
    redraw();
  });

  const entry = form();
  if (entry) entry.addEventListener("change", redraw);
  document.addEventListener("marks:changed", redraw);
  panels(".current").forEach((panel) => {
    panel.querySelector(".viewport").addEventListener(Enums.Events.IMAGE_RENDERED, () => {
      if (panel.dataset.marksVersion !== String(version)) draw(panel);
    });
  });
  redraw();
}

function shapeOf(mark, size) {
  const group = document.createElementNS(SVG, "g");
  group.setAttribute("class", `finding-mark read-${mark.read}`);
  group.dataset.read = mark.read;
  group.dataset.shape = mark.shape;
  group.dataset.points = JSON.stringify(mark.points);
  group.setAttribute("aria-label", mark.label || "");
  const title = document.createElementNS(SVG, "title");
  title.textContent = mark.label || "";
  group.appendChild(title);
  const points = mark.points;
  let path;
  let anchor;
  if (mark.shape === "ellipse" && points.length === 4) {
    const [a1, a2, b1, b2] = points;
    const centre = [(a1[0] + a2[0]) / 2, (a1[1] + a2[1]) / 2];
    const u = [(a2[0] - a1[0]) / 2, (a2[1] - a1[1]) / 2];
    const v = [(b2[0] - b1[0]) / 2, (b2[1] - b1[1]) / 2];
    const around = Array.from({ length: 48 }, (_, i) => {
      const t = (2 * Math.PI * i) / 48;
      return [centre[0] + Math.cos(t) * u[0] + Math.sin(t) * v[0], centre[1] + Math.cos(t) * u[1] + Math.sin(t) * v[1]];
    });
    path = `M${around.map((p) => p.join(" ")).join("L")}Z`;
    anchor = [centre[0], Math.min(...around.map((p) => p[1]))];
  } else if (mark.shape === "arrow" && points.length === 2) {
    const [tail, head] = points;
    const length = Math.hypot(head[0] - tail[0], head[1] - tail[1]) || 1;
    const barb = Math.min(length * 0.35, size / 40);
    const back = [(tail[0] - head[0]) / length, (tail[1] - head[1]) / length];
    const turn = (angle) => [
      head[0] + barb * (back[0] * Math.cos(angle) - back[1] * Math.sin(angle)),
      head[1] + barb * (back[0] * Math.sin(angle) + back[1] * Math.cos(angle)),
    ];
    const [left, right] = [turn(0.45), turn(-0.45)];
    path = `M${tail.join(" ")}L${head.join(" ")}M${left.join(" ")}L${head.join(" ")}L${right.join(" ")}`;
    anchor = tail;
  } else {
    const [x, y] = points[0];
    const r = size / 80;
    path = `M${x - r} ${y}a${r} ${r} 0 1 0 ${2 * r} 0a${r} ${r} 0 1 0 ${-2 * r} 0M${x - 2 * r} ${y}h${r}M${x + r} ${y}h${r}M${x} ${y - 2 * r}v${r}M${x} ${y + r}v${r}`;
    anchor = [x, y - 2 * r];
  }
  const line = document.createElementNS(SVG, "path");
  line.setAttribute("d", path);
  group.appendChild(line);
  const sign = document.createElementNS(SVG, "text");
  sign.setAttribute("x", String(anchor[0]));
  sign.setAttribute("y", String(anchor[1]));
  sign.setAttribute("dy", "-0.3em");
  sign.textContent = READ_SIGNS[mark.read] || mark.sign || "";
  group.appendChild(sign);
  return group;
}
