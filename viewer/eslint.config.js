// ESLint (flat config) for the project's own JavaScript: the viewer's sources (ES modules,
// bundled by build.mjs) and the pages' scripts in static/js/ (classic scripts, each its own
// IIFE). Run from the repository root by scripts/test:
//   viewer/node_modules/.bin/eslint --config viewer/eslint.config.js
import js from "@eslint/js";
import globals from "globals";

export default [
  {
    // The committed bundle is esbuild's output, not source; the build script runs on Node.
    ignores: ["static/viewer/**", "viewer/node_modules/**"],
  },
  js.configs.recommended,
  {
    files: ["viewer/src/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.browser } },
  },
  {
    files: ["static/js/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "script", globals: { ...globals.browser } },
  },
  {
    files: ["viewer/*.js", "viewer/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
  {
    rules: {
      eqeqeq: ["error", "always"],
      "no-unused-vars": ["error", { args: "after-used", caughtErrors: "none" }],
      "no-var": "error",
      "prefer-const": "error",
      "no-implicit-globals": "error",
      "no-shadow": "error",
      "no-use-before-define": ["error", { functions: false, classes: true, variables: true }],
      "no-throw-literal": "error",
      "no-implied-eval": "error",
      "no-new-func": "error",
      "no-eval": "error",
      strict: ["error", "function"],
    },
  },
];
