// The load hook of extension-modules.mjs: a .js file under extension/ is an ES module.
const EXTENSION = new URL("../../extension/", import.meta.url).href;

export async function load(url, context, nextLoad) {
  if (url.startsWith(EXTENSION) && url.endsWith(".js")) return nextLoad(url, { ...context, format: "module" });
  return nextLoad(url, context);
}
