// The sites where tel.js turns tel: and callto: links into click-to-call: each an optional host permission the
// user granted on the options page; tel.js is registered for those only (and for none when there are none).

export async function registerTel(sites) {
  const granted = [];
  for (const site of sites) {
    if (await chrome.permissions.contains({ origins: [site] })) granted.push(site);
  }
  const existing = await chrome.scripting.getRegisteredContentScripts({ ids: ["tel"] });
  if (existing.length) await chrome.scripting.unregisterContentScripts({ ids: ["tel"] });
  if (granted.length) {
    await chrome.scripting.registerContentScripts([
      { id: "tel", matches: granted, js: ["tel.js"], runAt: "document_idle", persistAcrossSessions: true },
    ]);
  }
}
