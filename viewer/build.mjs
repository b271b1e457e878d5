// Bundle the case viewer into ../static/viewer/ (committed, so scripts/run needs no node).
//
//   node build.mjs            build into ../static/viewer/
//   node build.mjs --check    build into a temporary folder and fail if it differs from
//                             ../static/viewer/ (CI: the committed bundle is what the
//                             lockfile builds)
//
// Two bundles: viewer.js (the page) and decodeImageFrameWorker.js (Cornerstone's DICOM
// decoder, a module worker the loader starts from new URL(..., import.meta.url), which
// esbuild leaves as it is, so the worker must sit beside viewer.js). The worker keeps the
// codecs for JPEG baseline 8-bit (libjpeg-turbo), JPEG lossless (JS), JPEG-LS (CharLS),
// JPEG 2000 (OpenJPEG) and RLE, each WebAssembly file copied to codecs/ and fetched only
// when a frame needs it; HTJ2K (a 2 MB codec no mammography archive here sends) is left
// out, and JPEG 12-bit falls to the server: WADO-RS decodes any frame for a client that
// asks for uncompressed pixels.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "static", "viewer");
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "viewer-")) : target;
const loader = join(here, "node_modules", "@cornerstonejs", "dicom-image-loader", "dist", "esm");

const CODECS = {
  "codec-libjpeg-turbo-8bit/decodewasm": "libjpeg-turbo-8bit.wasm",
  "codec-charls/decodewasm": "charls.wasm",
  "codec-openjpeg/decodewasm": "openjpeg.wasm",
};
const WASM_FILES = {
  "codec-libjpeg-turbo-8bit/decodewasm": "libjpegturbowasm_decode.wasm",
  "codec-charls/decodewasm": "charlswasm_decode.wasm",
  "codec-openjpeg/decodewasm": "openjpegwasm_decode.wasm",
};

// Where Cornerstone writes a style *attribute* (measurement lines and text boxes), which the
// page's CSP (style-src 'self', no inline styles) refuses, the same declarations go through
// the CSSOM instead, which the CSP allows. A patch whose text is gone fails the build, so an
// upgrade cannot drop one silently.
const STYLE_BY_CSSOM = [
  [/drawingSvg[\\/]drawTextBox\.js$/, "textElement.setAttribute('style', combinedStyle);", "textElement.style.cssText = combinedStyle;"],
  [/drawingSvg[\\/]setNewAttributesIfValid\.js$/, "svgNode.setAttribute(key, newValue);", "if (key === 'style') svgNode.style.cssText = newValue; else svgNode.setAttribute(key, newValue);"],
  [/drawingSvg[\\/]setAttributesIfNecessary\.js$/, "svgNode.setAttribute(key, newValue);", "if (key === 'style') svgNode.style.cssText = newValue; else svgNode.setAttribute(key, newValue);"],
];

// The fetched frame goes to the decoder worker *transferred*, not copied: the loader computes
// a transfer list and never passes it, so Comlink structured-clones the 27 MB frame on the
// page's thread. Nothing on the page reads the fetched bytes after handing them to the worker
// (the viewer asks for whole frames, neither streamed nor by byte range), and the frame is
// transferred only where it is its buffer's whole content.
const SEND_FROM = "return webWorkerManager.executeTask('dicomImageLoader', 'decodeTask', {";
const SEND_TO =
  "const whole = pixelData && pixelData.buffer && pixelData.byteOffset === 0 && pixelData.byteLength === pixelData.buffer.byteLength;\n" +
  "    const send = (args) => (whole ? transfer(args, [pixelData.buffer]) : args);\n" +
  "    return webWorkerManager.executeTask('dicomImageLoader', 'decodeTask', send({";
const SEND_CLOSE_FROM = "        decodeConfig,\n    }, {";
const SEND_CLOSE_TO = "        decodeConfig,\n    }), {";

// The page bundle never decodes: the decoders live in the worker only.
const pageOnly = {
  name: "page",
  setup(b) {
    b.onLoad({ filter: /imageLoader[\\/]decodeImageFrame\.js$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      if (!source.includes(SEND_FROM) || !source.includes(SEND_CLOSE_FROM)) {
        throw new Error(`${args.path}: the transfer patch no longer applies`);
      }
      return {
        contents:
          "import { transfer } from 'comlink';\n" +
          source.replace(SEND_FROM, SEND_TO).replace(SEND_CLOSE_FROM, SEND_CLOSE_TO),
        loader: "js",
        resolveDir: dirname(args.path),
      };
    });
    for (const [filter, from, to] of STYLE_BY_CSSOM) {
      b.onLoad({ filter }, (args) => {
        const source = readFileSync(args.path, "utf8");
        if (!source.includes(from)) throw new Error(`${args.path}: the CSP patch no longer applies`);
        return { contents: source.replaceAll(from, to), loader: "js", resolveDir: dirname(args.path) };
      });
    }
    b.onResolve({ filter: /(decodeImageFrameWorker|shared\/decoders)(\.js)?$/ }, (args) =>
      args.importer.startsWith(loader) && args.importer.endsWith(join("esm", "index.js"))
        ? { path: args.path, namespace: "stub" }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "stub" }, () => ({
      contents:
        "export const decodeImageFrame = undefined, postProcessDecodedPixels = undefined, initializers = {}, decoders = {};",
    }));
  },
};

// The decoded frame goes back to the page *transferred*, not copied: Comlink structured-clones
// a return value unless told otherwise, which costs the page's thread a 27 MB copy per film.
// The worker keeps no reference to a frame it has returned. A patch whose text is gone fails
// the build.
const TRANSFER_FROM = "return decodeImageFrame(imageFrame, transferSyntax, pixelData, decodeConfig, options, callbackFn);";
const TRANSFER_TO =
  "return decodeImageFrame(imageFrame, transferSyntax, pixelData, decodeConfig, options, callbackFn)" +
  ".then((frame) => frame && frame.pixelData && frame.pixelData.buffer ? transfer(frame, [frame.pixelData.buffer]) : frame);";

// The worker: codec URLs point at the copied .wasm files; HTJ2K is not bundled.
const workerCodecs = {
  name: "worker-codecs",
  setup(b) {
    b.onLoad({ filter: /esm[\\/]decodeImageFrameWorker\.js$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      if (!source.includes(TRANSFER_FROM) || !source.includes("import { expose } from 'comlink';")) {
        throw new Error(`${args.path}: the transfer patch no longer applies`);
      }
      return {
        contents: source
          .replace("import { expose } from 'comlink';", "import { expose, transfer } from 'comlink';")
          .replace(TRANSFER_FROM, TRANSFER_TO),
        loader: "js",
        resolveDir: dirname(args.path),
      };
    });
    b.onLoad({ filter: /shared[\\/]decoders[\\/]decode[A-Za-z0-9]+\.js$/ }, (args) => {
      if (args.path.endsWith("decodeHTJ2K.js")) {
        return {
          contents:
            "export function initialize() { return Promise.resolve(); }\n" +
            "export default async function decodeHTJ2K() { throw new Error('HTJ2K is not supported by this viewer'); }",
        };
      }
      let source = readFileSync(args.path, "utf8");
      for (const [from, to] of Object.entries(CODECS)) {
        source = source.replaceAll(`new URL('@cornerstonejs/${from}', import.meta.url)`, `new URL('./codecs/${to}', import.meta.url)`);
      }
      return { contents: source, loader: "js", resolveDir: dirname(args.path) };
    });
  },
};

const common = {
  bundle: true,
  minify: true,
  format: "esm",
  platform: "browser",
  target: ["es2020"],
  legalComments: "linked",
  logLevel: "warning",
  // Emscripten's glue names Node's modules on a path the browser never takes.
  external: ["fs", "path", "crypto", "module", "url", "worker_threads"],
};

mkdirSync(join(out, "codecs"), { recursive: true });
await build({ ...common, entryPoints: { viewer: join(here, "src", "viewer.js") }, outdir: out, plugins: [pageOnly] });
await build({
  ...common,
  entryPoints: { decodeImageFrameWorker: join(loader, "decodeImageFrameWorker.js") },
  outdir: out,
  plugins: [workerCodecs],
});
for (const [from, to] of Object.entries(CODECS)) {
  const [pkg] = from.split("/");
  cpSync(join(here, "node_modules", "@cornerstonejs", pkg, "dist", WASM_FILES[from]), join(out, "codecs", to));
}

function digests(folder) {
  const found = {};
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else found[relative(folder, path)] = createHash("sha256").update(readFileSync(path)).digest("hex");
    }
  };
  walk(folder);
  return found;
}

const built = digests(out);
for (const [name, digest] of Object.entries(built)) {
  console.log(`${digest.slice(0, 12)}  ${String(statSync(join(out, name)).size).padStart(9)}  ${name}`);
}
if (check) {
  const committed = digests(target);
  const names = new Set([...Object.keys(built), ...Object.keys(committed)]);
  const differ = [...names].filter((name) => built[name] !== committed[name]);
  rmSync(out, { recursive: true, force: true });
  if (differ.length) {
    console.error(`static/viewer/ is not what the lockfile builds: ${differ.join(", ")}. Run: cd viewer && npm ci && npm run build`);
    process.exit(1);
  }
  console.log("static/viewer/ matches the lockfile's build.");
}
