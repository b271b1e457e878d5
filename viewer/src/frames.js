// How the viewer fetches and decodes its DICOM films' frames (issue 24, fast under load).
//
// Each frame is asked for as one bare payload (PS3.18 single part) in whatever syntax the
// server picks: the loader's multipart parser would search a whole frame byte by byte for
// the closing boundary and then copy it. A film stored compressed comes as it lies; one
// stored native comes native, or, on a site that turns DICOMWEB_LOSSLESS_FRAMES on (a slow
// link to the reading rooms), as its JPEG-LS lossless frame, checked bit for bit when it was
// made (screening/imaging/lossless.py), half the bytes. The worker decodes every syntax
// (CharLS, OpenJPEG, RLE, ... in decodeImageFrameWorker.js), so the page's thread never
// decodes. The syntax a film came in is kept on its panel (data-syntax).
import { cache, Enums, eventTarget } from "@cornerstonejs/core";
import { init as initDicom } from "@cornerstonejs/dicom-image-loader";

export const FRAME_ACCEPT = "application/octet-stream; transfer-syntax=*";

export function initFrames(viewer) {
  initDicom({
    // One decoding worker per core, at most four: a JPEG-LS film is CPU work, and more
    // workers than cores only take turns.
    maxWebWorkers: Math.min(4, navigator.hardwareConcurrency || 1),
    beforeSend: () => ({ Accept: FRAME_ACCEPT }),
  });
  eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, (event) => {
    const { image } = event.detail;
    if (!image || !image.transferSyntaxUID) return;
    viewer.querySelectorAll(".panel").forEach((panel) => {
      if (panel.dataset.imageId === image.imageId) panel.dataset.syntax = image.transferSyntaxUID;
    });
  });
  // Test and benchmark hook: what a panel's film decoded to, so a test can hold the pixels
  // of the compressed path equal to the native path's and to the file's.
  window.mammoFrames = { facts: (selector) => frameFacts(viewer.querySelector(selector)) };
}

function frameFacts(panel) {
  const image = panel && panel.dataset.imageId && cache.getImage(panel.dataset.imageId);
  if (!image) return null;
  const pixels = image.getPixelData();
  let checksum = 0; // sum of value x ((index mod 65521) + 1), modulo 2^32
  for (let i = 0; i < pixels.length; i++) checksum = (checksum + pixels[i] * ((i % 65521) + 1)) % 4294967296;
  return {
    syntax: panel.dataset.syntax || null,
    rows: image.rows,
    columns: image.columns,
    min: image.minPixelValue,
    max: image.maxPixelValue,
    checksum,
    dataType: pixels.constructor.name,
  };
}
