// The load hook of extension-modules.mjs: a .js file under extension/ is an ES module (with a query too: the
// tests import background.js afresh as background.js?instance=N).
const EXTENSION = new URL("../../extension/", import.meta.url).href;

export async function load(url, context, nextLoad) {
  if (url.startsWith(EXTENSION) && new URL(url).pathname.endsWith(".js")) return nextLoad(url, { ...context, format: "module" });
  return nextLoad(url, context);
}
