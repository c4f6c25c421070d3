// calls.js, the call cards: one card a call whatever order and how often its events come.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as calls from "../../extension/calls.js";

const JULIA = { crm: "hubspot", kind: "contact", id: "51", name: "Julia Schmidt", company: "Acme GmbH", url: "https://crm/51" };

function ringing(callId, seq, extra = {}) {
  return { type: "call.ringing", call_id: callId, seq, direction: "in", number: "+4915791234567", display: "0157 91234567",
           anonymous: false, users: ["w0"], contacts: [JULIA], resolved: true, orig_call_id: null,
           at: "2026-12-06T10:00:00Z", ...extra };
}

/** Apply events in order; the last result, with the changes of each. */
function play(events, state = calls.newCards(), now = 1000) {
  const changes = [];
  let result = { state };
  for (const event of events) {
    result = calls.apply(result.state, event, now);
    changes.push(result.change);
  }
  return { ...result, changes };
}

test("an event seen again (same seq, a resume that overlaps) changes nothing", () => {
  const { state, changes } = play([ringing("A", 5), ringing("A", 5), { type: "call.answered", call_id: "A", seq: 6, by: "w0" },
                                   { type: "call.answered", call_id: "A", seq: 6, by: "w0" }]);
  assert.deepEqual(changes, ["new", "duplicate", "updated", "duplicate"]);
  assert.equal(state.cards.length, 1);
  assert.equal(state.cards[0].state, "answered");
  assert.equal(state.lastSeq, 6);
});

test("a transferred leg (orig_call_id) rings on the first leg's card: one card, not two", () => {
  const { state, changes } = play([
    ringing("A", 1, { users: ["w0", "w1"] }), { type: "call.answered", call_id: "A", seq: 2, by: "w1" },
    ringing("B", 3, { orig_call_id: "A" }), { type: "call.ended", call_id: "A", seq: 4, duration_s: 30 },
  ]);
  assert.deepEqual(changes, ["new", "updated", "joined", "updated"]);
  assert.equal(state.cards.length, 1);
  assert.equal(state.cards[0].state, "ringing"); // ringing again, for this user
  assert.equal(calls.noteCallId(state.cards[0]), "A");
  const after = play([{ type: "call.answered", call_id: "B", seq: 5, by: "w0" }, { type: "call.ended", call_id: "B", seq: 6, duration_s: 65 }], state);
  assert.equal(after.state.cards[0].state, "ended");
  assert.equal(calls.talkTime(after.state.cards[0].duration_s), "01:05");
});

test("events out of order: a late answer does not reopen an ended call, an event of an unknown call is ignored", () => {
  const { state, changes } = play([
    { type: "call.answered", call_id: "A", seq: 2, by: "w0" }, // before its ringing: a call this session never saw
    ringing("A", 1), { type: "call.ended", call_id: "A", seq: 4, duration_s: 12 },
    { type: "call.answered", call_id: "A", seq: 3, by: "w0", at: "2026-12-06T10:00:05Z" },
  ]);
  assert.deepEqual(changes, ["ignored", "new", "updated", "updated"]);
  const [card] = state.cards;
  assert.equal(card.state, "ended");
  assert.equal(card.duration_s, 12);
  assert.equal(card.answeredAt, Date.parse("2026-12-06T10:00:05Z")); // talk time from the event's time
  assert.equal(state.lastSeq, 4);
});

test("a removed card stays removed when its events come again", () => {
  let { state } = play([ringing("A", 1), { type: "call.ended", call_id: "A", seq: 2, duration_s: null }]);
  state = calls.dismiss(state, "A");
  assert.equal(state.cards.length, 0);
  const again = play([ringing("A", 1), { type: "call.logged", call_id: "A", crm: "hubspot", record_id: "9", url: null },
                      ringing("B", 3, { orig_call_id: "A" }), ringing("C", 4)], state);
  assert.deepEqual(again.changes, ["ignored", "ignored", "ignored", "new"]);
  assert.deepEqual(again.state.cards.map((c) => c.key), ["C"]);
});

test("call.resolved fills an unresolved card; the lookup line says what happened", () => {
  const start = play([ringing("A", 1, { contacts: [], resolved: false })], calls.newCards(), 0);
  assert.equal(calls.lookupText(start.state.cards[0], 1000), "lookingUp");
  assert.equal(calls.lookupText(start.state.cards[0], calls.LOOKUP_WAIT_MS), "lookupFailed"); // no answer in time
  const filled = play([{ type: "call.resolved", call_id: "A", contacts: [JULIA] }], start.state);
  assert.deepEqual(filled.state.cards[0].contacts, [JULIA]);
  assert.equal(calls.lookupText(filled.state.cards[0], 0), null);
  const none = play([{ type: "call.resolved", call_id: "A", contacts: [] }], start.state);
  assert.equal(calls.lookupText(none.state.cards[0], 0), "noMatch");
  const ended = play([{ type: "call.ended", call_id: "A", seq: 2, duration_s: null }], start.state);
  assert.equal(calls.lookupText(ended.state.cards[0], 0), "lookupFailed");
  const anonymous = play([ringing("Z", 9, { number: null, anonymous: true, contacts: [] })]);
  assert.equal(calls.lookupText(anonymous.state.cards[0], 0), null);
});

test("an unresolved card whose CRM sign-in is missing or expired says so, not that the CRM did not answer", () => {
  const start = play([ringing("A", 1, { contacts: [], resolved: false })], calls.newCards(), 0);
  const card = start.state.cards[0];
  for (const crmState of ["needed", "expired"]) { // no sign-in, or the session asked crm.credentials_required
    assert.equal(calls.lookupText(card, calls.LOOKUP_WAIT_MS, crmState), "lookupNeedsCrmSignIn");
    assert.equal(calls.lookupText(card, 1000, crmState), "lookingUp"); // the wait is not over yet
  }
  for (const crmState of ["signed_in", "none", undefined]) {
    assert.equal(calls.lookupText(card, calls.LOOKUP_WAIT_MS, crmState), "lookupFailed");
  }
  for (const lang of ["en", "de"]) { // the message is there in both languages
    const messages = JSON.parse(readFileSync(new URL(`../../extension/_locales/${lang}/messages.json`, import.meta.url)));
    assert.ok(messages.lookupNeedsCrmSignIn?.message, lang);
  }
});

test("answered by a colleague: by someone else than the user, known from me or the one user it rang for", () => {
  const { state } = play([ringing("A", 1, { users: ["w0", "w1"] }), { type: "call.answered", call_id: "A", seq: 2, by: "w1" }]);
  assert.equal(calls.answeredByColleague(state.cards[0], "w0"), "w1");
  assert.equal(calls.answeredByColleague(state.cards[0], "w1"), null);
  assert.equal(calls.answeredByColleague(state.cards[0], null), null); // who the user is is not known
  const mine = play([ringing("B", 1), { type: "call.answered", call_id: "B", seq: 2, by: "w0" }]);
  assert.equal(calls.answeredByColleague(mine.state.cards[0], null), null);
  const voicemail = play([ringing("C", 1), { type: "call.answered", call_id: "C", seq: 2, by: null, voicemail: true }]);
  assert.equal(calls.answeredByColleague(voicemail.state.cards[0], "w0"), null);
});

test("at most MAX_CARDS cards; the oldest goes", () => {
  const events = Array.from({ length: calls.MAX_CARDS + 1 }, (_, i) => ringing(`C${i}`, i + 1));
  const { state } = play(events);
  assert.equal(state.cards.length, calls.MAX_CARDS);
  assert.equal(state.cards.at(-1).key, "C1");
});

test("a note still saving when the worker stopped is not saving after its restart: Save works again", () => {
  const { state } = play([ringing("A", 1)]);
  const saving = calls.setNote(state, "A", { status: "saving", text: "Call back", saved: ["First"] });
  const [card] = calls.restored(saving.cards);
  assert.deepEqual(card.note, { status: "error", code: "offline", saved: ["First"] });
  assert.deepEqual(calls.restored(state.cards), state.cards);
});
