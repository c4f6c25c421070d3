// Storage behind one module. What is kept, and where:
// - chrome.storage.local (on disk, this browser profile only, never synced): the server URL, the Hej CTI
//   token, the CRM's tokens (and SugarCRM/SuiteCRM's sign-in), the CRM set-up, the sites where tel: links
//   become click-to-call.
// - chrome.storage.session (in memory only, gone when the browser closes): the last event number seen
//   (`seq`, to resume after the service worker was stopped), when this sign-in was first online, and the
//   open call cards (and the calls whose cards the user removed), so that a restarted
//   service worker shows each call once and no contact data is written to disk.

const LOCAL_KEYS = ["server", "token", "crm", "crmTokens", "telSites"];
const SESSION_KEYS = ["lastSeq", "calls", "onlineSince", "dismissed"];

function area(key) {
  if (LOCAL_KEYS.includes(key)) return chrome.storage.local;
  if (SESSION_KEYS.includes(key)) return chrome.storage.session;
  throw new Error(`storage: unknown key ${key}`);
}

export async function get(key, fallback = null) {
  const found = await area(key).get(key);
  return found[key] ?? fallback;
}

export async function set(key, value) {
  await area(key).set({ [key]: value });
}

export async function remove(...keys) {
  for (const key of keys) await area(key).remove(key);
}

/** Sign-out: every token goes (Hej CTI's and the CRM's), and the session's calls with them. */
export async function forgetTokens() {
  await chrome.storage.local.remove(["token", "crmTokens"]);
  await chrome.storage.session.remove(SESSION_KEYS);
}

export function onChange(listener) {
  chrome.storage.onChanged.addListener((changes, areaName) => {
    for (const [key, change] of Object.entries(changes)) listener(key, change.newValue, areaName);
  });
}
