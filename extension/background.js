// The service worker: it holds the state (sign-in, the session on /ws, the call cards, the CRM's tokens) and
// is the only part that talks to the server. The pages in ui/ render the state it sends them and send it
// intents; tel.js sends it numbers to dial. MV3 may stop this worker at any time: everything it needs to carry
// on is in storage.js, and a restart resumes the session with the last `seq` seen.

import * as storage from "./storage.js";
import { Socket } from "./socket.js";
import { CRMS, CrmSignInError, needsRefresh, singleFlight } from "./crm.js";
import { crmRefresh, crmSignIn, pastedToken, serverBase, signInWithSipgate } from "./auth.js";
import * as calls from "./calls.js";
import { registerTel } from "./sites.js";
import { onPopClicked, pop, repop, unpop, unpopAll } from "./ui/notifications.js";

const state = {
  status: "signed_out", // signed_out | connecting | online | offline
  notice: null, // {key, kind: "info"|"error"}
  server: null,
  me: null,
  crm: null, // {kind, subdomain|url, …} as set on the options page
  crmState: "none", // none | signed_in | needed | expired (a refresh was refused) | refreshing
  cards: calls.newCards(),
  search: { q: "", users: [], error: null },
  names: {}, // sipgate user id → name, from `me` and the directory's answers: "Answered by Grace Hopper"
  telSites: [],
};
let socket = null;
let crmTokens = null;
/** The CRM sign-in's generation: a sign-out, a CRM sign-in or sign-out and a new CRM set-up each start a new
 * one, and a refresh that was begun in an earlier one (its answer comes after) is discarded, not stored. */
let crmGeneration = 0;
const ports = new Set();
const ready = init();

async function init() {
  state.server = await storage.get("server");
  state.crm = await storage.get("crm");
  state.telSites = await storage.get("telSites", []);
  crmTokens = await storage.get("crmTokens");
  state.cards = { cards: calls.restored(await storage.get("calls", [])), lastSeq: await storage.get("lastSeq"),
                  dismissed: await storage.get("dismissed", []) };
  state.crmState = crmTokens ? "signed_in" : needsCrmSignIn() ? "needed" : "none";
  const token = await storage.get("token");
  if (state.server && token) startSocket(token);
  await registerTel(state.telSites);
}

function needsCrmSignIn() {
  return !!state.crm && ["oauth", "password"].includes(CRMS[state.crm.kind]?.signIn);
}

// -- what the pages see ----------------------------------------------------------------------------------

function view() {
  const info = CRMS[state.crm?.kind] || null;
  return {
    status: state.status, notice: state.notice, server: state.server, me: state.me,
    crm: state.crm && { ...state.crm, clientSecret: undefined, hasClientSecret: !!state.crm.clientSecret, label: info?.label, signIn: info?.signIn, state: state.crmState },
    crmState: state.crmState, cards: state.cards.cards, search: state.search, telSites: state.telSites,
    names: state.names,
  };
}

function render() {
  const snapshot = view();
  for (const port of ports) port.postMessage({ type: "state", state: snapshot });
}

const INFO_SHOWN_MS = 6000;

/** The line above the page. An error stays until the next notice; information goes after a few seconds. The
 * pages show the message only; `detail` (a server's or the CRM's English words) goes to this console. */
function notice(key, kind = "info", detail = null) {
  if (detail) console.warn("hejcti.notice", key, detail);
  const shown = (state.notice = key ? { key, kind } : null);
  if (shown && kind === "info") {
    setTimeout(() => {
      if (state.notice === shown) notice(null);
    }, INFO_SHOWN_MS);
  }
  render();
}

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== "ui") return;
  ports.add(port);
  port.onDisconnect.addListener(() => ports.delete(port));
  port.onMessage.addListener(async (message) => {
    await ready;
    try {
      await intent(message);
    } catch (e) {
      notice("errorGeneric", "error", e?.message || String(e));
    }
  });
  ready.then(() => port.postMessage({ type: "state", state: view() }));
});

// -- the session ----------------------------------------------------------------------------------------

function startSocket(token) {
  socket?.stop();
  state.status = "connecting";
  socket = new Socket({
    server: state.server, token,
    resume,
    onStatus, onMessage,
    wake: (when) => chrome.alarms.create("reconnect", { when }),
  });
  socket.start();
  chrome.alarms.create("keepalive", { periodInMinutes: 1 });
}

// chrome.alarms: Chrome stops an MV3 service worker after 30 s without events, and a pending setTimeout does
// not count. While online the pings every 20 s keep it; while waiting to reconnect the backoff stays below that
// (socket.js), and the "reconnect" alarm (Chrome runs it 30 s on at the earliest in a packed extension) starts a
// worker that was stopped anyway. "keepalive" wakes a stopped worker each minute while signed in: init() then
// connects again with the stored token and resumes from the last seq.
chrome.alarms.onAlarm.addListener(async (alarm) => {
  await ready;
  if (alarm.name === "reconnect" || alarm.name === "keepalive") socket?.retryNow();
});

function stopAlarms() {
  chrome.alarms.clear("reconnect");
  chrome.alarms.clear("keepalive");
}

/** The `seq` to resume after. Before any event was seen, a reconnect of a sign-in that was online already
 * resumes after 0 (the server's last five minutes), so that a call that rang in the gap is not lost; the
 * calls that rang before the sign-in are skipped in onMessage. The very first connection resumes nothing. */
async function resume() {
  const lastSeq = await storage.get("lastSeq");
  if (lastSeq !== null) return lastSeq;
  return (await storage.get("onlineSince")) !== null ? 0 : undefined;
}

const CLOCK_SKEW_MS = 30000;

async function onStatus(status, detail) {
  if (status === "signed_out") {
    // 4500-4999: this token is no good any more (revoked, account deleted, unknown): forget it, stay off
    const why = { 4500: "signedOutInvalid", 4502: "signedOutRevoked", 4503: "signedOutAccountDeleted" };
    await signedOutByServer(why[detail.code] || "signedOut");
    return;
  }
  state.status = status;
  if (status === "online") {
    chrome.alarms.clear("reconnect");
    if ((await storage.get("onlineSince")) === null) await storage.set("onlineSince", Date.now());
    if (state.notice?.key?.startsWith("signedOut")) state.notice = null;
    render();
    await sendCredentials();
    await loadMe();
  }
  render();
}

/** The server refused the Hej CTI token (the session's close code, or a 401 of the CRM's OAuth refresh): it is
 * forgotten and the panel asks for a sign-in. The CRM's tokens stay: they were not what was refused. */
async function signedOutByServer(key) {
  socket?.stop();
  socket = null;
  stopAlarms();
  state.me = null;
  await storage.remove("token");
  state.status = "signed_out";
  notice(key, "error");
}

async function loadMe() {
  try {
    const reply = await socket.request({ type: "me" });
    state.me = reply.type === "me" ? { ...reply.user, crm_user: reply.crm_user } : { error: reply.code };
    if (state.me.id) learnNames([state.me]);
  } catch {
    state.me = null;
  }
  render();
}

async function onMessage(msg) {
  if (msg.type === "crm.credentials_required") {
    await credentialsRequired(msg.reason);
    return;
  }
  if (!msg.type?.startsWith("call.")) return;
  const since = await storage.get("onlineSince");
  if (msg.type === "call.ringing" && since !== null && Date.parse(msg.at) < since - CLOCK_SKEW_MS) return;
  const { state: cards, card, change } = calls.apply(state.cards, msg);
  state.cards = cards;
  await storage.set("calls", cards.cards);
  if (cards.lastSeq !== null) await storage.set("lastSeq", cards.lastSeq);
  if (card && (change === "new" || change === "joined") && card.direction === "in") await pop(card); // one id a card
  if (card && change === "new" && !card.contacts.length && card.number && !card.colleague) {
    // the pop is up already ("Unknown caller"); an internal call is a colleague's, named when the directory answers
    render();
    const named = await nameColleague(card.key, card.number);
    if (named?.direction === "in" && named.state === "ringing") await repop(named);
  }
  if (card && msg.type === "call.resolved" && card.state === "ringing") await pop(card);
  if (card && msg.type === "call.answered") unpop(card); // answered, here or by a colleague: no longer ringing
  if (card && msg.type === "call.ended" && card.state === "ended") unpop(card);
  render();
}

function learnNames(users) {
  for (const u of users) if (u.id) state.names[u.id] = u.name || u.email || u.id;
}

/** The colleague whose sipgate number this is (from `directory.search`), onto the card, which is returned;
 * null when sipgate is not connected or the number is nobody's. */
async function nameColleague(key, number) {
  let reply;
  try {
    reply = await socket.request({ type: "directory.search", q: number, limit: 2 }, 2000);
  } catch {
    return null;
  }
  if (reply.type === "directory.result") learnNames(reply.users);
  const match = reply.type === "directory.result" ? reply.users.filter((u) => (u.numbers || []).includes(number)) : [];
  if (match.length !== 1) return null;
  const { name, extension } = match[0];
  state.cards = calls.setColleague(state.cards, key, { name: name || match[0].email, extension });
  await storage.set("calls", state.cards.cards);
  return state.cards.cards.find((c) => c.key === key && c.colleague) || null;
}

// -- the pop (ui/notifications.js) --------------------------------------------------------------------------

onPopClicked(async (key) => {
  await ready;
  const card = state.cards.cards.find((c) => c.key === key);
  return card?.contacts[0]?.url || card?.logged?.url || null;
});

// -- the CRM's tokens -------------------------------------------------------------------------------------

async function sendCredentials() {
  if (!needsCrmSignIn()) return;
  if (!crmTokens) {
    state.crmState = "needed";
    return;
  }
  if (needsRefresh(crmTokens) && !(await refreshCrm())) return;
  socket?.send({ type: "crm.credentials", access_token: crmTokens.access_token,
                 instance_url: crmTokens.instance_url || undefined });
}

/** A refresh without the user; false (and "sign in to your CRM again") when only a new sign-in helps. One at
 * a time: who asks while one runs gets its outcome (singleFlight). */
const refreshCrm = singleFlight(async () => {
  const generation = crmGeneration;
  state.crmState = "refreshing";
  render();
  try {
    const tokens = await crmRefresh(state.server, state.crm, crmTokens, await storage.get("token"));
    if (generation !== crmGeneration) return false; // signed out (or in anew) meanwhile: these are not wanted
    crmTokens = tokens;
    await storage.set("crmTokens", crmTokens);
    state.crmState = "signed_in";
    return true;
  } catch (e) {
    if (generation !== crmGeneration) return false;
    if (e instanceof CrmSignInError && e.kind === "refused") {
      crmTokens = null;
      await storage.remove("crmTokens");
      state.crmState = "expired"; // the panel's banner says so, with the way to the settings
    } else if (e instanceof CrmSignInError && e.kind === "signed_out") {
      state.crmState = "signed_in"; // not "the CRM does not answer": the server refused the Hej CTI token
      await signedOutByServer("signedOutInvalid");
    } else {
      state.crmState = "signed_in";
      notice("crmUnreachable", "error");
    }
    return false;
  } finally {
    render();
  }
});

async function credentialsRequired(reason) {
  if (!crmTokens) {
    // the server needs a CRM token, whatever the options page says (or when no CRM was chosen there yet)
    if (state.crmState !== "expired") state.crmState = "needed"; // the banner says so
    render();
    return;
  }
  if (reason === "expired" && !(await refreshCrm())) return;
  await sendCredentials();
}

// -- intents from the pages -----------------------------------------------------------------------------

async function signedIn(server, token) {
  state.server = serverBase(server);
  await storage.set("server", state.server);
  await storage.set("token", token);
  await storage.remove("lastSeq", "calls", "onlineSince", "dismissed");
  state.cards = calls.newCards();
  state.notice = null;
  startSocket(token);
  render();
}

async function signOut() {
  socket?.stop();
  socket = null;
  stopAlarms();
  crmGeneration += 1;
  crmTokens = null;
  await storage.forgetTokens();
  Object.assign(state, { status: "signed_out", me: null, cards: calls.newCards(), crmState: needsCrmSignIn() ? "needed" : "none",
                         search: { q: "", users: [], error: null }, names: {} }); // nothing of the account stays
  await unpopAll();
  notice("signedOutByUser");
}

async function actionReply(request, okKey) {
  if (!socket?.online) return notice("offlineNow", "error");
  let reply;
  try {
    reply = await socket.request(request);
  } catch {
    return notice("noAnswer", "error");
  }
  if (reply.type === "error") return notice(`error_${reply.code}`, "error", reply.message || null);
  notice(okKey);
  return reply;
}

async function intent(m) {
  switch (m.intent) {
    case "signInToken": {
      const token = pastedToken(m.token);
      if (!token) return notice("tokenInvalid", "error");
      return signedIn(m.server, token);
    }
    case "signInSipgate": {
      notice("signingIn");
      try {
        return await signedIn(m.server, await signInWithSipgate(m.server));
      } catch (e) {
        return notice("signInFailed", "error", e.message);
      }
    }
    case "signOut":
      return signOut();
    case "saveCrm": {
      const crm = keepSecret(state.crm, m.crm);
      const changed = JSON.stringify(state.crm) !== JSON.stringify(crm);
      state.crm = crm;
      await storage.set("crm", crm);
      if (changed) {
        crmGeneration += 1;
        crmTokens = null;
        await storage.remove("crmTokens");
      }
      state.crmState = crmTokens ? "signed_in" : needsCrmSignIn() ? "needed" : "none";
      return notice("saved");
    }
    case "crmSignIn": {
      if (!state.server) return notice("serverFirst", "error");
      try {
        crmTokens = await crmSignIn(state.server, state.crm, m.login || {});
      } catch (e) {
        return notice(e.kind === "unreachable" ? "crmUnreachable" : "crmSignInFailed", "error", e.message);
      }
      crmGeneration += 1;
      await storage.set("crmTokens", crmTokens);
      state.crmState = "signed_in";
      await sendCredentials();
      return notice("crmSignedIn");
    }
    case "crmSignOut":
      crmGeneration += 1;
      crmTokens = null;
      await storage.remove("crmTokens");
      state.crmState = needsCrmSignIn() ? "needed" : "none";
      return notice("crmSignedOut");
    case "note": {
      const card = state.cards.cards.find((c) => c.key === m.key);
      if (!card) return;
      // the server appends each note to the call's record: a note is sent once, and the panel empties its
      // field once it is saved (the saved notes show above it), so that a second save adds only what is new
      if (card.note.status === "saving") return;
      const text = String(m.text || "").trim();
      if (!text) return;
      const saved = card.note.saved || [];
      setNote(card.key, { status: "saving", text, saved });
      let reply;
      try {
        reply = await socket.request({ type: "call.note", call_id: calls.noteCallId(card), text });
      } catch {
        return setNote(card.key, { status: "error", code: "offline", saved });
      }
      return setNote(card.key, reply.type === "result" && reply.ok ? { status: "saved", text, saved: [...saved, text] }
        : { status: "error", code: reply.code, saved });
    }
    case "dismiss":
      state.cards = calls.dismiss(state.cards, m.key);
      await storage.set("calls", state.cards.cards);
      await storage.set("dismissed", state.cards.dismissed);
      return render();
    case "search": {
      const q = String(m.q || "").slice(0, 100);
      state.search = { ...state.search, q };
      if (!socket?.online) return render();
      try {
        const reply = await socket.request({ type: "directory.search", q, limit: 20 });
        if (state.search.q !== q) return; // a later search is on its way
        if (reply.type === "directory.result") learnNames(reply.users);
        state.search = reply.type === "directory.result" ? { q, users: reply.users, error: null } : { q, users: [], error: reply.code };
      } catch {
        state.search = { q, users: [], error: "offline" };
      }
      return render();
    }
    case "dial": {
      const reply = await actionReply({ type: "call.dial", to: m.to }, "dialling");
      // sipgate says 200 for an offline phone too, and then nothing rings: say so plainly. The reply names the
      // device the call was placed from and whether it was online then (another device of the user may be)
      if (reply?.device?.online === false) notice("deviceOffline", "error");
      return;
    }
    case "transfer": {
      const card = state.cards.cards.find((c) => c.key === m.key);
      const leg = card && Object.entries(card.legs).find(([, s]) => s === "answered")?.[0];
      if (!leg) return notice("error_not_your_call", "error");
      return actionReply({ type: "call.transfer", call_id: leg, to: m.to }, "transferring");
    }
    case "hangup": {
      const card = state.cards.cards.find((c) => c.key === m.key);
      const leg = card && Object.entries(card.legs).find(([, s]) => s !== "ended")?.[0];
      if (!leg) return;
      return actionReply({ type: "call.hangup", call_id: leg }, "hangingUp");
    }
    case "telSites":
      state.telSites = m.sites;
      await storage.set("telSites", m.sites);
      await registerTel(state.telSites);
      return notice("saved");
    case "reconnect":
      return render();
    default:
      return notice("errorGeneric", "error", `unknown intent ${m.intent}`);
  }
}

/** The options page never shows the SuiteCRM client secret again: an empty field there means "unchanged",
 * so the stored secret (and with it the CRM's tokens) stays when the same instance and client are saved. */
function keepSecret(before, crm) {
  if (crm?.kind !== "suitecrm" || crm.clientSecret) return crm;
  const same = before?.kind === "suitecrm" && before.url === crm.url && before.clientId === crm.clientId;
  return { ...crm, clientSecret: same ? before.clientSecret || "" : "" };
}

function setNote(key, note) {
  state.cards = calls.setNote(state.cards, key, note);
  storage.set("calls", state.cards.cards);
  render();
}

// -- tel: links (tel.js runs on the sites the user allowed; sites.js registers it) ---------------------------

chrome.runtime.onMessage.addListener((message, sender, respond) => {
  if (message?.intent !== "dial" || !sender.tab) return false;
  ready.then(() => intent({ intent: "dial", to: String(message.to || "").slice(0, 64) })).then(() => respond({ ok: true }));
  return true;
});

chrome.runtime.onInstalled.addListener(() => {
  chrome.sidePanel.setPanelBehavior({ openPanelOnActionClick: true }).catch(() => {});
});
