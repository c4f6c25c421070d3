// What both pages share: the connection to the service worker (state in, intents out), host permissions
// asked for when the user sets a server or a CRM instance, and the notice line.

import { t } from "../i18n.js";

/** Connect to the service worker; `onState(state)` on every change. Reconnects when the worker was stopped
 * (which also starts it again). Returns `send(intent)`. */
export function connect(onState) {
  let port = null;
  const open = () => {
    port = chrome.runtime.connect({ name: "ui" });
    port.onMessage.addListener((m) => m.type === "state" && onState(m.state));
    port.onDisconnect.addListener(() => {
      port = null;
      setTimeout(open, 200);
    });
  };
  open();
  return (message) => {
    if (!port) open();
    port.postMessage(message);
  };
}

/** `https://host/*` for a URL; null when it is none. */
export function originPattern(url) {
  try {
    const u = new URL(url);
    if (u.protocol !== "https:" && u.protocol !== "http:") return null;
    return `${u.protocol}//${u.hostname}/*`;
  } catch {
    return null;
  }
}

/** Ask for host access to these origins (must run in a click's handler). True when granted already or now. */
export async function askHosts(patterns) {
  const origins = patterns.filter(Boolean);
  if (!origins.length) return true;
  if (await chrome.permissions.contains({ origins })) return true;
  try {
    return await chrome.permissions.request({ origins });
  } catch {
    return false;
  }
}

/** The message `key`, or `fallback`'s when there is none (an error code this version does not know). */
export function textOf(key, fallback) {
  const text = t(key);
  return text === key ? t(fallback) : text;
}

/** The notice line: the message in the user's language only (a server's or the CRM's own words, in English,
 * go to the service worker's console); an error is an alert, information a status. */
export function showNotice(el, notice) {
  el.textContent = notice ? textOf(notice.key, "errorGeneric") : "";
  el.className = notice ? `notice ${notice.kind}` : "notice";
  el.setAttribute("role", notice?.kind === "error" ? "alert" : "status");
  el.hidden = !notice;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** The sign-in form both pages have (#signin-form with #server and #token, the #sipgate button, #signout):
 * host access to the server is asked for on the click, then the intent goes to the service worker. */
export function wireSignIn(send) {
  const $ = (id) => document.getElementById(id);
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    await askHosts([originPattern($("server").value)]);
    send({ intent: "signInToken", server: $("server").value, token: $("token").value });
    $("token").value = "";
  });
  $("sipgate").addEventListener("click", async () => {
    if (!$("server").reportValidity()) return;
    await askHosts([originPattern($("server").value)]);
    send({ intent: "signInSipgate", server: $("server").value });
  });
  $("signout").addEventListener("click", () => send({ intent: "signOut" }));
}
