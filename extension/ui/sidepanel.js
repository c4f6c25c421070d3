// The side panel: renders the service worker's state (who is signed in, the call cards, colleagues) and
// sends it intents. It keeps nothing of its own but what is being typed.

import { localize, t } from "../i18n.js";
import { answeredByColleague, lookupText, talkTime } from "../calls.js";
import { connect, el, showNotice, textOf, wireSignIn } from "./common.js";

localize();
const $ = (id) => document.getElementById(id);
let current = null;
const cardNodes = new Map();

const send = connect(render);

wireSignIn(send);
$("options").addEventListener("click", () => chrome.runtime.openOptionsPage());
$("crm-open").addEventListener("click", () => chrome.runtime.openOptionsPage());
$("q").addEventListener("input", () => send({ intent: "search", q: $("q").value }));
$("dial-form").addEventListener("submit", (event) => {
  event.preventDefault();
  send({ intent: "dial", to: $("dial-number").value.trim() });
});

function render(state) {
  current = state;
  const signedIn = state.status !== "signed_out";
  $("signin").hidden = signedIn;
  $("main").hidden = !signedIn;
  $("signout").hidden = !signedIn;
  if (!signedIn && state.server && !$("server").value) $("server").value = state.server;
  if (!signedIn) $("q").value = ""; // the last search goes with the sign-in
  $("who").textContent = whoText(state);
  $("who").dataset.status = state.status;
  showNotice($("notice"), state.notice);
  $("crm-needed").hidden = !(signedIn && ["needed", "expired"].includes(state.crmState));
  $("crm-needed-text").textContent = t(state.crmState === "expired" ? "crmSignInAgain" : "crmSignInNeeded");
  renderCards(state.cards);
  renderPeople(state.search);
}

function whoText(state) {
  const status = t(`status_${state.status}`);
  const name = state.me?.name;
  return name ? `${name} · ${status}` : status;
}

// -- call cards --------------------------------------------------------------------------------------------

function renderCards(cards) {
  $("no-calls").hidden = cards.length > 0;
  const container = $("cards");
  const keys = new Set(cards.map((c) => c.key));
  for (const [key, node] of cardNodes) {
    if (!keys.has(key)) {
      node.root.remove();
      cardNodes.delete(key);
    }
  }
  cards.forEach((card, index) => {
    let node = cardNodes.get(card.key);
    if (!node) {
      node = buildCard(card.key);
      cardNodes.set(card.key, node);
    }
    if (container.children[index] !== node.root) container.insertBefore(node.root, container.children[index] || null);
    fillCard(node, card);
  });
}

function buildCard(key) {
  const n = {};
  n.title = el("h3", { class: "caller", id: `title-${key}` });
  n.sub = el("p", { class: "sub" });
  n.state = el("p", { class: "state", role: "status" });
  n.contacts = el("ul", { class: "contacts", "aria-label": t("contactsLabel") });
  n.lookup = el("p", { class: "quiet lookup" });
  n.noteInput = el("textarea", { id: `note-${key}`, rows: "2", maxlength: "30000" });
  n.noteStatus = el("span", { class: "note-status", role: "status", "aria-live": "polite" });
  n.notes = el("ul", { class: "notes", "aria-label": t("notesSavedLabel") });
  n.noteSave = el("button", { type: "submit", text: t("saveNote") });
  n.noteForm = el("form", { class: "note", onsubmit: (e) => {
    e.preventDefault();
    if (n.noteSave.disabled || !n.noteInput.value.trim()) return;
    n.noteSave.disabled = n.noteInput.readOnly = true; // until the reply: one note is sent once
    send({ intent: "note", key, text: n.noteInput.value });
  } },
  n.notes, el("label", { for: `note-${key}`, text: t("noteLabel") }), n.noteInput,
  el("div", { class: "row" }, n.noteSave, n.noteStatus));
  n.logged = el("p", { class: "logged" });
  n.hangup = el("button", { type: "button", text: t("hangUp"), onclick: () => send({ intent: "hangup", key }) });
  n.dismiss = el("button", { type: "button", class: "link", text: t("dismiss"), onclick: () => send({ intent: "dismiss", key }) });
  n.root = el("article", { class: "card", "aria-labelledby": `title-${key}`, tabindex: "0", "data-key": key },
    n.title, n.sub, n.state, n.lookup, n.contacts, n.noteForm, n.logged, el("div", { class: "row actions" }, n.hangup, n.dismiss));
  return n;
}

function fillCard(n, card) {
  const best = card.contacts[0];
  const number = card.display || card.number || "";
  const out = card.direction === "out";
  const who = best?.name || card.colleague?.name;
  n.title.textContent = who || (card.anonymous || !card.number ? t("anonymous") : out ? number : t("unknownCaller"));
  const company = best?.company || (card.colleague ? t("colleague") : null);
  n.sub.textContent = [company, who || !out ? number : null, t(out ? "outgoing" : "incoming")].filter(Boolean).join(" · ");
  n.root.dataset.state = card.state;
  n.state.textContent = stateText(card);
  showLookup(n, card);
  n.contacts.replaceChildren(...card.contacts.map((c) => el("li", {},
    el("span", { class: "name", text: c.name || "?" }),
    c.company ? el("span", { class: "company", text: ` · ${c.company}` }) : null,
    c.url ? el("a", { href: c.url, target: "_blank", rel: "noopener", text: c.crm === "directory" ? t("openRecord") : t("openIn", crmLabel(c.crm)), "aria-label": t("openRecordOf", c.name || "", crmLabel(c.crm)) }) : null)));
  n.noteStatus.textContent = card.note.status === "saved" ? t("noteSaved") : card.note.status === "saving" ? t("noteSaving")
    : card.note.status === "error" ? textOf(`noteError_${card.note.code}`, "noteError_other") : "";
  n.noteStatus.dataset.status = card.note.status;
  const saved = card.note.saved || [];
  if (n.notes.children.length !== saved.length) n.notes.replaceChildren(...saved.map((text) => el("li", { text })));
  if (card.note.status === "saved" && n.noteInput.readOnly && n.noteInput.value.trim() === card.note.text) n.noteInput.value = "";
  n.noteSave.disabled = n.noteInput.readOnly = card.note.status === "saving";
  if (card.logged) {
    n.logged.replaceChildren(card.logged.url ? el("a", { href: card.logged.url, target: "_blank", rel: "noopener", text: t("loggedIn", crmLabel(card.logged.crm)) })
      : document.createTextNode(t("loggedIn", crmLabel(card.logged.crm))));
  } else {
    n.logged.replaceChildren();
  }
  n.hangup.hidden = card.state === "ended" || !!colleagueOf(card); // a colleague's call is theirs to end
  n.dismiss.hidden = card.state !== "ended";
}

function crmLabel(kind) {
  return { salesforce: "Salesforce", hubspot: "HubSpot", pipedrive: "Pipedrive", zendesk: "Zendesk", sugarcrm: "SugarCRM", suitecrm: "SuiteCRM", directory: t("directoryName") }[kind] || kind || "CRM";
}

function colleagueOf(card) {
  return answeredByColleague(card, current?.me?.id);
}

function stateText(card) {
  if (card.state === "ringing") return t("ringing");
  const colleague = colleagueOf(card);
  if (colleague) return t("answeredBy", current.names?.[colleague] || colleague);
  if (card.state === "answered") return card.voicemail ? t("voicemail") : t("answeredFor", talkTime((Date.now() - card.answeredAt) / 1000));
  if (card.duration_s !== null) return t("endedAfter", talkTime(card.duration_s));
  return card.answeredAt ? t("ended") : t("missed");
}

function showLookup(n, card) {
  const key = lookupText(card, Date.now(), current?.crmState);
  n.lookup.hidden = !key;
  n.lookup.textContent = key ? t(key) : "";
}

setInterval(() => {
  if (!current) return;
  for (const card of current.cards) {
    if (card.state === "answered") cardNodes.get(card.key).state.textContent = stateText(card);
    if (!card.resolved) showLookup(cardNodes.get(card.key), card); // the lookup's wait runs out
  }
}, 1000);

// -- colleagues ----------------------------------------------------------------------------------------------

function renderPeople(search) {
  const answered = current.cards.find((c) => c.state === "answered" && c.direction && !colleagueOf(c));
  const items = search.users.map((u) => el("li", { class: "person" },
    el("span", { class: `presence ${u.presence}`, role: "img", "aria-label": t(`presence_${u.presence}`), title: t(`presence_${u.presence}`) }),
    el("span", { class: "name", text: u.name || u.email || u.id }),
    u.extension ? el("span", { class: "quiet", text: ` ${u.extension}` }) : null,
    el("button", { type: "button", text: t("call"), "aria-label": t("callPerson", u.name || u.id), onclick: () => send({ intent: "dial", to: { user: u.id } }) }),
    answered ? el("button", { type: "button", text: t("transfer"), "aria-label": t("transferTo", u.name || u.id), onclick: () => send({ intent: "transfer", key: answered.key, to: { user: u.id } }) }) : null));
  if (search.q && !items.length) items.push(el("li", { class: "quiet", text: search.error ? textOf(`error_${search.error}`, "errorGeneric") : t("nobodyFound") }));
  $("people").replaceChildren(...items);
}
