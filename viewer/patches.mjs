// The patches build.mjs applies to Cornerstone3D's published files, as data: each names the
// package and the exact version it was written against, the file it edits, and each edit as
// text that must occur exactly `count` times (1 unless said). build.mjs refuses to build when
// an installed package's version differs from a patch's, or an edit's text is not found the
// stated number of times: an upgrade re-reads every patch, and none is dropped silently.
// (OHIF keeps its dependency patches as versioned patch files for the same reason.)

// Where Cornerstone writes a style *attribute* (measurement lines and text boxes), which the
// page's CSP (style-src 'self', no inline styles) refuses, the same declarations go through
// the CSSOM instead, which the CSP allows.
const STYLE_BY_CSSOM = "if (key === 'style') svgNode.style.cssText = newValue; else svgNode.setAttribute(key, newValue);";

export const PATCHES = [
  {
    name: "text box style through the CSSOM (CSP)",
    package: "@cornerstonejs/tools",
    version: "4.22.13",
    bundle: "page",
    file: /drawingSvg[\\/]drawTextBox\.js$/,
    edits: [{ from: "textElement.setAttribute('style', combinedStyle);", to: "textElement.style.cssText = combinedStyle;" }],
  },
  {
    name: "new SVG attributes' style through the CSSOM (CSP)",
    package: "@cornerstonejs/tools",
    version: "4.22.13",
    bundle: "page",
    file: /drawingSvg[\\/]setNewAttributesIfValid\.js$/,
    edits: [{ from: "svgNode.setAttribute(key, newValue);", to: STYLE_BY_CSSOM }],
  },
  {
    name: "changed SVG attributes' style through the CSSOM (CSP)",
    package: "@cornerstonejs/tools",
    version: "4.22.13",
    bundle: "page",
    file: /drawingSvg[\\/]setAttributesIfNecessary\.js$/,
    edits: [{ from: "svgNode.setAttribute(key, newValue);", to: STYLE_BY_CSSOM }],
  },
  // The fetched frame goes to the decoder worker *transferred*, not copied: the loader
  // computes a transfer list and never passes it, so Comlink structured-clones the 27 MB
  // frame on the page's thread. Nothing on the page reads the fetched bytes after handing
  // them to the worker (the viewer asks for whole frames, neither streamed nor by byte
  // range), and the frame is transferred only where it is its buffer's whole content.
  {
    name: "the frame transferred to the decoder worker",
    package: "@cornerstonejs/dicom-image-loader",
    version: "4.22.13",
    bundle: "page",
    file: /imageLoader[\\/]decodeImageFrame\.js$/,
    prepend: "import { transfer } from 'comlink';\n",
    edits: [
      {
        from: "return webWorkerManager.executeTask('dicomImageLoader', 'decodeTask', {",
        to:
          "const whole = pixelData && pixelData.buffer && pixelData.byteOffset === 0 && pixelData.byteLength === pixelData.buffer.byteLength;\n" +
          "    const send = (args) => (whole ? transfer(args, [pixelData.buffer]) : args);\n" +
          "    return webWorkerManager.executeTask('dicomImageLoader', 'decodeTask', send({",
      },
      { from: "        decodeConfig,\n    }, {", to: "        decodeConfig,\n    }), {" },
    ],
  },
  // The decoded frame goes back to the page *transferred*, not copied: Comlink
  // structured-clones a return value unless told otherwise, which costs the page's thread a
  // 27 MB copy per film. The worker keeps no reference to a frame it has returned.
  {
    name: "the decoded frame transferred back to the page",
    package: "@cornerstonejs/dicom-image-loader",
    version: "4.22.13",
    bundle: "worker",
    file: /esm[\\/]decodeImageFrameWorker\.js$/,
    edits: [
      { from: "import { expose } from 'comlink';", to: "import { expose, transfer } from 'comlink';" },
      {
        from: "return decodeImageFrame(imageFrame, transferSyntax, pixelData, decodeConfig, options, callbackFn);",
        to:
          "return decodeImageFrame(imageFrame, transferSyntax, pixelData, decodeConfig, options, callbackFn)" +
          ".then((frame) => frame && frame.pixelData && frame.pixelData.buffer ? transfer(frame, [frame.pixelData.buffer]) : frame);",
      },
    ],
  },
];

// The installed version of each patched package, checked before anything is built.
export function checkVersions(installedVersion) {
  const stale = PATCHES.filter((patch) => installedVersion(patch.package) !== patch.version);
  if (stale.length) {
    const lines = stale.map((p) => `  ${p.name}: written for ${p.package} ${p.version}, installed ${installedVersion(p.package)}`);
    throw new Error(`viewer/patches.mjs: patches written for another version:\n${lines.join("\n")}\nRe-read each against the new files, then update its version.`);
  }
}

// The patched text of one file: every edit found exactly as often as stated, or an error.
export function applyPatch(patch, source, path) {
  let text = source;
  for (const { from, to, count = 1 } of patch.edits) {
    const found = text.split(from).length - 1;
    if (found !== count) {
      throw new Error(`${path}: patch "${patch.name}" expects its text ${count} time(s), found ${found}: it no longer applies`);
    }
    text = text.split(from).join(to);
  }
  return (patch.prepend || "") + text;
}
