// Loaded with `node --import ./tests/js/extension-modules.mjs --test tests/js/` (tests/unit/test_extension_js.py):
// the extension's .js files are ES modules (Chrome loads them as such; there is no package.json to say so),
// which node 20.19+/22.12+ detects on its own but older node (Debian bookworm's nodejs is 18) reads as CommonJS.
// This registers a load hook that says "module" for them.
import { register } from "node:module";

register("./extension-modules-hooks.mjs", import.meta.url);
