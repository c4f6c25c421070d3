// The call cards: what the side panel shows of each call, built from the server's events. Pure functions of
// (cards, event), no chrome.* and no I/O, so that the service worker can keep them in session storage and
// rebuild them after a restart.
//
// - One card per call: a leg that was forwarded or transferred from another (`orig_call_id`) joins the card of
//   that leg, so a transfer never pops twice.
// - An event whose `seq` the card has seen already is dropped (a resume after a reconnect may overlap).

export const MAX_CARDS = 20;
/** How long an unresolved card says "looking the caller up" after it rang here: the server's lookup deadline
 * has passed by then, and a `call.resolved` that comes later still fills the card. */
export const LOOKUP_WAIT_MS = 10000;

export const MAX_DISMISSED = 100;

/** cards: newest first; lastSeq: the highest `seq` seen; dismissed: the legs of the cards the user removed, so
 * that an event of theirs that comes again (a resume overlaps) does not bring the card back. */
export function newCards() {
  return { cards: [], lastSeq: null, dismissed: [] };
}

function cardOf(state, callId) {
  return state.cards.find((c) => c.legs[callId] !== undefined) || null;
}

/** The card's state is its newest leg's that has not ended: a call transferred to this user rings again on
 * the same card; ended once every leg has. */
function overall(card) {
  const open = Object.values(card.legs).filter((s) => s !== "ended");
  return open.length ? open[open.length - 1] : "ended";
}

/** Apply one server event. Returns {state, card, change}: change is "new" (a new card rang), "joined" (a
 * forwarded or transferred leg rang on a card there was), "updated", "duplicate" or "ignored". The state is a new object; the input is not changed. */
export function apply(state, event, now = Date.now()) {
  const type = event.type || "";
  if (!type.startsWith("call.") || !event.call_id) return { state, card: null, change: "ignored" };
  const next = { cards: state.cards.map((c) => ({ ...c, legs: { ...c.legs }, seqs: [...c.seqs] })), lastSeq: state.lastSeq,
                 dismissed: state.dismissed || [] };
  const seq = Number.isInteger(event.seq) ? event.seq : null;
  if (seq !== null) next.lastSeq = Math.max(next.lastSeq ?? 0, seq);
  if (next.dismissed.includes(event.call_id) || (event.orig_call_id && next.dismissed.includes(event.orig_call_id))) {
    return { state: next, card: null, change: "ignored" };
  }
  let card = cardOf(next, event.call_id);
  if (card && seq !== null && card.seqs.includes(seq)) return { state: next, card, change: "duplicate" };
  let change = "updated";
  if (type === "call.ringing") {
    if (!card && event.orig_call_id) card = cardOf(next, event.orig_call_id);
    if (!card) {
      card = {
        key: event.call_id, legs: {}, seqs: [], direction: event.direction, number: event.number ?? null,
        display: event.display ?? null, anonymous: !!event.anonymous, contacts: event.contacts || [],
        users: event.users || [], receivedAt: now,
        resolved: event.resolved !== false, at: event.at || new Date(now).toISOString(), answeredAt: null,
        endedAt: null, duration_s: null, cause: null, by: null, voicemail: false, logged: null, colleague: null,
        note: { status: "idle" }, state: "ringing",
      };
      next.cards.unshift(card);
      change = "new";
    } else if (event.resolved !== false && event.contacts?.length) {
      Object.assign(card, { contacts: event.contacts, resolved: true });
    }
    if (card.legs[event.call_id] === undefined) {
      card.legs[event.call_id] = "ringing";
      if (change !== "new") change = "joined";  // another leg of a call on this card: the same pop again
    }
  } else if (!card) {
    return { state: next, card: null, change: "ignored" };  // a call that rang before this session knew it
  } else if (type === "call.resolved") {
    Object.assign(card, { contacts: event.contacts || [], resolved: true });
  } else if (type === "call.answered") {
    if (card.legs[event.call_id] !== "ended") card.legs[event.call_id] = "answered"; // a late answer reopens nothing
    Object.assign(card, { by: event.by ?? null, voicemail: !!event.voicemail, answeredAt: card.answeredAt ?? eventTime(event, now) });
  } else if (type === "call.ended") {
    card.legs[event.call_id] = "ended";
    if (overall(card) === "ended") {
      Object.assign(card, { endedAt: now, cause: event.cause ?? null });
      if (event.duration_s !== null && event.duration_s !== undefined) card.duration_s = event.duration_s;
    }
  } else if (type === "call.logged") {
    card.logged = { crm: event.crm, record_id: event.record_id, url: event.url || null };
  } else {
    return { state: next, card, change: "ignored" };
  }
  if (seq !== null) card.seqs.push(seq);
  card.state = overall(card);
  next.cards = next.cards.slice(0, MAX_CARDS);
  return { state: next, card, change };
}

/** What the card says of the CRM lookup (a message key), or null: "lookingUp" while an unresolved card waits
 * for `call.resolved`, "lookupFailed" once the call ended or the wait is over without it ("lookupNeedsCrmSignIn"
 * instead when `crmState`, background.js's, says the CRM sign-in is missing or expired: no sign-in, or the
 * session asked for one with `crm.credentials_required`), "noMatch" when the CRM answered and knows nobody with
 * this number. */
export function lookupText(card, now = Date.now(), crmState = null) {
  if (!card.resolved) {
    if (card.state !== "ended" && now - (card.receivedAt ?? 0) < LOOKUP_WAIT_MS) return "lookingUp";
    return ["needed", "expired"].includes(crmState) ? "lookupNeedsCrmSignIn" : "lookupFailed";
  }
  if (card.contacts.length || card.colleague || card.anonymous || !card.number) return null;
  return "noMatch";
}

/** The call id a card's note goes to: the first leg (a transferred call is one call on the server). */
export function noteCallId(card) {
  return Object.keys(card.legs)[0];
}

/** The cards a restarted service worker read back: a note whose save the stopped worker never heard back
 * about is not being saved any more, so it says "not saved" and Save works again. */
export function restored(cards) {
  return cards.map((c) => (c.note?.status === "saving"
    ? { ...c, note: { status: "error", code: "offline", saved: c.note.saved || [] } } : c));
}

export function setNote(state, key, note) {
  return { ...state, cards: state.cards.map((c) => (c.key === key ? { ...c, note } : c)) };
}

/** A caller with no CRM contact who is a colleague (a sipgate user of the account): name and extension. */
export function setColleague(state, key, colleague) {
  return { ...state, cards: state.cards.map((c) => (c.key === key && !c.contacts.length ? { ...c, colleague } : c)) };
}

/** The sipgate user id of a colleague who answered this call, or null (nobody yet, the user, voicemail). `me`
 * is the user's sipgate id; unknown (sipgate not connected), a call that rang for one user only was theirs. */
export function answeredByColleague(card, me) {
  if (card.state !== "answered" || !card.by) return null;
  const own = me || (card.users?.length === 1 ? card.users[0] : null);
  return own && card.by !== own ? card.by : null;
}

export function dismiss(state, key) {
  const gone = state.cards.find((c) => c.key === key);
  const dismissed = [...(gone ? Object.keys(gone.legs) : []), ...(state.dismissed || [])].slice(0, MAX_DISMISSED);
  return { ...state, cards: state.cards.filter((c) => c.key !== key), dismissed };
}

/** When the event happened (its `at`), in ms; `now` for an event without a readable one. Talk time counts
 * from the answer, not from when a resume delivered it. */
function eventTime(event, now) {
  const at = Date.parse(event.at ?? "");
  return Number.isFinite(at) ? at : now;
}

/** "01:05" for 65 s, "1:01:05" past an hour. */
export function talkTime(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}
