// The pop as a system notification: one per call card (its id is the card's, so a transferred leg or a
// resolved lookup replaces it instead of adding a second), the caller's name, company and national number,
// or "Unknown caller"/"Anonymous". Clicking it opens the CRM record.

import { t } from "../i18n.js";

const PREFIX = "call:";

export function popText(card) {
  const best = card.contacts[0];
  const number = card.display || card.number || "";
  if (best) return { title: best.name || number, message: [best.company, number].filter(Boolean).join(" · ") };
  if (card.colleague) return { title: card.colleague.name, message: [t("colleague"), number].join(" · ") };
  if (card.anonymous || !card.number) return { title: t("anonymous"), message: "" };
  return { title: t("unknownCaller"), message: number };
}

export async function pop(card) {
  const { title, message } = popText(card);
  await chrome.notifications.create(PREFIX + card.key, {
    type: "basic", iconUrl: chrome.runtime.getURL("icons/icon128.png"), title,
    message: message || t("incomingCall"), contextMessage: t("incomingCall"), requireInteraction: true,
    priority: 2,
  });
}

/** The pop of a card again with what is known now (a colleague's name), when it still shows: one the user
 * closed stays closed. */
export function repop(card) {
  const { title, message } = popText(card);
  return chrome.notifications.update(PREFIX + card.key, { title, message: message || t("incomingCall") });
}

export function unpop(card) {
  return chrome.notifications.clear(PREFIX + card.key);
}

export async function unpopAll() {
  const shown = await chrome.notifications.getAll();
  await Promise.all(Object.keys(shown).map((id) => chrome.notifications.clear(id)));
}

/** `urlOf(cardKey)` gives the record to open (or null) when the user clicks a pop. */
export function onPopClicked(urlOf) {
  chrome.notifications.onClicked.addListener(async (id) => {
    if (!id.startsWith(PREFIX)) return;
    const url = await urlOf(id.slice(PREFIX.length));
    if (url) await chrome.tabs.create({ url });
    chrome.notifications.clear(id);
  });
}
