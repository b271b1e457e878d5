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
//
// Five of Cornerstone3D's files are edited as they are bundled: viewer/patches.mjs holds the
// edits, each with the package version it was written for; a mismatch stops the build.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { applyPatch, checkVersions, PATCHES } from "./patches.mjs";

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

// Cornerstone3D's files as patches.mjs edits them, for one bundle ("page" or "worker"); the
// patches' package versions are checked against node_modules before anything is built.
const installedVersion = (pkg) => JSON.parse(readFileSync(join(here, "node_modules", pkg, "package.json"), "utf8")).version;
checkVersions(installedVersion);
const applied = new Set();
const patched = (bundle) => ({
  name: `patches-${bundle}`,
  setup(b) {
    for (const patch of PATCHES.filter((p) => p.bundle === bundle)) {
      b.onLoad({ filter: patch.file }, (args) => {
        applied.add(patch);
        return { contents: applyPatch(patch, readFileSync(args.path, "utf8"), args.path), loader: "js", resolveDir: dirname(args.path) };
      });
    }
  },
});

// The page bundle never decodes: the decoders live in the worker only.
const pageOnly = {
  name: "page",
  setup(b) {
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

// The worker: codec URLs point at the copied .wasm files; HTJ2K is not bundled.
const workerCodecs = {
  name: "worker-codecs",
  setup(b) {
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
await build({ ...common, entryPoints: { viewer: join(here, "src", "viewer.js") }, outdir: out, plugins: [patched("page"), pageOnly] });
await build({
  ...common,
  entryPoints: { decodeImageFrameWorker: join(loader, "decodeImageFrameWorker.js") },
  outdir: out,
  plugins: [patched("worker"), workerCodecs],
});
// A patch whose file was never bundled (renamed or moved by an upgrade) fails as loudly.
const missed = PATCHES.filter((patch) => !applied.has(patch));
if (missed.length) throw new Error(`viewer/patches.mjs: no bundled file matched ${missed.map((p) => `"${p.name}"`).join(", ")}`);
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
