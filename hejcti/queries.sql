-- Every query the project runs, each under `-- name: NAME`; Python calls them by name (hejcti/store.py).
-- All are parameterised; nothing is built from strings.

-- name: ingest_batch
-- One statement, one transaction, one commit for a batch of pushes. Unknown tokens give status 'unknown'.
SELECT b.n, a.id AS account_id,
       CASE WHEN a.id IS NULL THEN 'unknown' ELSE 'ok' END AS status,
       CASE WHEN a.id IS NULL THEN NULL ELSE hejcti_ingest(a.id, b.event, b.call_id, b.dedup, b.data) END AS event_id
  FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::jsonb[]) WITH ORDINALITY
       AS b(token_hash, event, call_id, dedup, data, n)
  LEFT JOIN accounts a ON a.webhook_token_hash = b.token_hash
 ORDER BY b.n;

-- name: ingest_for_account
SELECT hejcti_ingest($1, $2, $3, $4, $5::jsonb) AS event_id;

-- name: events_after
-- The listener's catch-up after a reconnect or a missed notification: recent events above its watermark,
-- and the ids below it that it has not seen yet (gaps left by transactions that committed out of order).
-- Two index ranges, not `id > $1 OR id = ANY($2)`: the generic plan of the OR read the whole table from its
-- first id on, every poll.
SELECT id, account_id, call_id, event, data, at FROM (
    (SELECT id, account_id, call_id, event, data, received_at AS at FROM call_events
      WHERE id > $1 AND received_at > now() - make_interval(secs => $3)
      ORDER BY id LIMIT $4)
    UNION ALL
    (SELECT id, account_id, call_id, event, data, received_at AS at FROM call_events
      WHERE id = ANY($2::bigint[]) AND id <= $1 AND received_at > now() - make_interval(secs => $3))
) e
 ORDER BY id
 LIMIT $4;

-- name: max_event_id
SELECT coalesce(max(id), 0) AS id FROM call_events;

-- name: events_resume
-- What a resuming session missed: its account's events after N, of calls from the last few minutes,
-- that ring for its user.
SELECT e.id, e.account_id, e.call_id, e.event, e.data, e.received_at AS at
  FROM call_events e
  JOIN calls c ON c.account_id = e.account_id AND c.call_id = e.call_id
 WHERE e.account_id = $1 AND e.id > $2 AND c.started_at > now() - make_interval(secs => $3)
   AND e.event IN ('newCall', 'answer', 'hangup')
   AND $4 = ANY(c.users)
 ORDER BY e.id;

-- name: account_insert
-- $10: the sipgate account it is connected to (a sign-in's), else NULL; NULL when that one has an account already.
INSERT INTO accounts (id, name, crm_kind, crm_instance, region, log_calls, webhook_token_hash, webhook_nonce,
                      admin_token_hash, sipgate_account_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (sipgate_account_id) WHERE sipgate_account_id IS NOT NULL DO NOTHING
RETURNING id;

-- name: account_get
SELECT id, name, crm_kind, crm_instance, region, log_calls, sipgate_account_id, created_at,
       (SELECT count(*) FROM users u WHERE u.account_id = a.id) AS users
  FROM accounts a WHERE id = $1;

-- name: account_list
SELECT id, name, crm_kind, crm_instance, region, log_calls, sipgate_account_id, created_at,
       (SELECT count(*) FROM users u WHERE u.account_id = a.id) AS users
  FROM accounts a ORDER BY created_at, id;

-- name: account_delete
DELETE FROM accounts WHERE id = $1 RETURNING id;

-- name: account_rotate_webhook
UPDATE accounts SET webhook_token_hash = $2, webhook_nonce = $3 WHERE id = $1 RETURNING id;

-- name: account_webhook
SELECT id, region, webhook_token_hash, webhook_nonce FROM accounts WHERE id = $1;

-- name: account_settings
SELECT id, crm_kind, crm_instance, region, log_calls FROM accounts WHERE id = $1;

-- name: user_insert
INSERT INTO users (id, account_id, sipgate_user, crm_user, token_hash)
VALUES ($1, $2, $3, $4, $5)
RETURNING id;

-- name: user_list
SELECT id, account_id, sipgate_user, crm_user, created_at FROM users WHERE account_id = $1 ORDER BY sipgate_user;

-- name: user_get
SELECT id, account_id, sipgate_user, crm_user, created_at FROM users WHERE id = $1;

-- name: user_map
UPDATE users SET crm_user = $2 WHERE id = $1
RETURNING id, account_id, sipgate_user, crm_user, created_at;

-- name: user_token
UPDATE users SET token_hash = $2 WHERE id = $1 RETURNING id;

-- name: user_remove
DELETE FROM users WHERE id = $1 RETURNING id;

-- name: user_by_token
SELECT u.id, u.account_id, u.sipgate_user, u.crm_user, u.token_hash
  FROM users u WHERE u.token_hash = $1;

-- name: crm_users_of_account
SELECT sipgate_user, crm_user FROM users WHERE account_id = $1;

-- name: calls_overdue
-- Calls that never got their hangup: ringing too long, or talking too long.
SELECT account_id, call_id, orig_call_id, xcid, direction, number, own_number
  FROM calls
 WHERE ended_at IS NULL
   AND ((answered_at IS NULL AND started_at < now() - make_interval(secs => $1))
        OR (answered_at < now() - make_interval(secs => $2)))
 LIMIT 500;

-- name: purge_events
DELETE FROM call_events WHERE received_at < now() - make_interval(days => $1);

-- name: purge_calls
DELETE FROM calls WHERE started_at < now() - make_interval(days => $1);

-- name: purge_records
DELETE FROM call_records WHERE created_at < now() - make_interval(days => $1);

-- name: export_account
SELECT jsonb_build_object(
    'account', (SELECT to_jsonb(a) - 'webhook_token_hash' - 'webhook_nonce' - 'admin_token_hash' - 'sipgate_credential'
                       || jsonb_build_object('has_sipgate_credential', a.sipgate_credential IS NOT NULL)
                  FROM accounts a WHERE a.id = $1),
    'users', coalesce((SELECT jsonb_agg(to_jsonb(u) - 'token_hash' ORDER BY u.sipgate_user)
                         FROM users u WHERE u.account_id = $1), '[]'),
    'calls', coalesce((SELECT jsonb_agg(to_jsonb(c) ORDER BY c.started_at)
                         FROM calls c WHERE c.account_id = $1), '[]'),
    'call_events', coalesce((SELECT jsonb_agg(to_jsonb(e) ORDER BY e.id)
                               FROM call_events e WHERE e.account_id = $1), '[]'),
    'call_records', coalesce((SELECT jsonb_agg(to_jsonb(r) ORDER BY r.id)
                                FROM call_records r WHERE r.account_id = $1), '[]')
) AS export;

-- name: ping
SELECT 1;

-- name: record_claim
-- Ready jobs and notes to append; and a job still waiting for another leg (a forward) once it has waited two
-- minutes with no leg of its call still open (a forward to an outside number sends no further leg).
-- `= ANY(ARRAY(…))` makes the claimed ids one index lookup each; `IN (…)` got a plan that read the whole table.
UPDATE call_records r SET lease_until = now() + interval '60 seconds', attempts = attempts + 1,
       state = CASE WHEN r.state = 'waiting' THEN 'ready' ELSE r.state END, updated_at = now()
 WHERE r.id = ANY(ARRAY(SELECT j.id FROM call_records j
                 WHERE j.account_id = ANY($1::text[])
                   AND (j.lease_until IS NULL OR j.lease_until < now())
                   AND ((j.state = 'ready' OR j.note_pending) AND j.run_after <= now()
                        OR j.state = 'waiting' AND j.run_after <= now() - interval '2 minutes'
                           AND j.data ? 'first_call_id'
                           AND NOT EXISTS (SELECT 1 FROM calls o
                                            WHERE o.account_id = j.account_id AND o.ended_at IS NULL
                                              AND (o.xcid = j.record_key OR o.call_id = ANY(j.call_ids))))
                 ORDER BY j.run_after LIMIT $2 FOR UPDATE SKIP LOCKED))
RETURNING r.id, r.account_id, r.record_key, r.call_ids, r.state, r.data, r.note, r.note_pending, r.note_sent,
          r.note_head, r.attempts, r.crm_record_id, r.crm_url;

-- name: record_release
UPDATE call_records SET lease_until = NULL, attempts = greatest(attempts - 1, 0), run_after = now() + make_interval(secs => $2)
 WHERE id = $1;

-- name: record_first_create
-- What the record's first create is built from beyond the call's facts, fixed just before it is sent: how much
-- of the note it carries (note_head) and, as data's first_create ($3), the contact it links (crm, kind, id,
-- parent_id: ids only, CONTRACT §6) and its owner (the mapped CRM user). A retry sends the same body again
-- (Zendesk's idempotency key wants it unchanged) and looks for the record that body made; notes typed later
-- are appended. Each is set once: what an earlier attempt fixed stays (first_create: unless it was for another
-- CRM, the account's before it changed CRM).
UPDATE call_records SET note_head = coalesce(note_head, $2),
       data = CASE WHEN data->'first_create'->>'crm' IS NOT DISTINCT FROM $3::jsonb->>'crm' THEN data
                   ELSE coalesce(data, '{}'::jsonb) || jsonb_build_object('first_create', $3::jsonb) END,
       updated_at = now()
 WHERE id = $1;

-- name: record_done
-- $4: how many characters of the note the record holds. That text leaves the server now (CONTRACT §6: a note
-- only until its record is written), counted in note_sent; a note that came in meanwhile stays, pending, to
-- be appended alone.
UPDATE call_records SET state = 'done', crm_record_id = $2, crm_url = $3, lease_until = NULL, last_error = NULL,
       note = hejcti_note_rest(note, $4),
       note_sent = note_sent + coalesce(length(note), 0) - coalesce(length(hejcti_note_rest(note, $4)), 0),
       note_pending = hejcti_note_rest(note, $4) IS NOT NULL, updated_at = now()
 WHERE id = $1;

-- name: record_note_done
-- $2: how many characters of the note the CRM has now (the part just appended): they leave the server.
UPDATE call_records SET note = hejcti_note_rest(note, $2),
       note_sent = note_sent + coalesce(length(note), 0) - coalesce(length(hejcti_note_rest(note, $2)), 0),
       note_pending = hejcti_note_rest(note, $2) IS NOT NULL, lease_until = NULL, updated_at = now()
 WHERE id = $1;

-- name: record_retry
UPDATE call_records SET lease_until = NULL, run_after = now() + make_interval(secs => $2), last_error = $3,
       updated_at = now()
 WHERE id = $1;

-- name: record_fail
UPDATE call_records SET state = CASE WHEN state = 'done' THEN 'done' ELSE 'failed' END, note_pending = false,
       lease_until = NULL, last_error = $2, updated_at = now()
 WHERE id = $1;

-- name: record_note
-- A note is kept only where it will be written: the account logs calls and the job has not failed. The
-- answer says which: found (the call is this user's), log_calls, prior (the job's state before), state (the
-- job's state after; NULL when the note was not kept), prior_chars (the call's notes so far: those in the CRM
-- already, note_sent, and those still kept). $5: the most characters the notes of a call hold together, a
-- newline between each two included: a note that would pass it is not kept (the check sees the row as locked,
-- so notes sent at once cannot pass it together). The call is this user's when it rang for this user row ($6),
-- not merely for the sipgate id ($3): a later holder of the same id gets not_found (by id only for a call stored
-- before its user rows were kept).
WITH c AS (SELECT hejcti_record_key(account_id, call_id) AS key FROM calls
            WHERE account_id = $1 AND call_id = $2
              AND CASE WHEN user_ids IS NULL THEN $3 = ANY(users) ELSE $6 = ANY(user_ids) END),
     a AS (SELECT log_calls FROM accounts WHERE id = $1),
     up AS (
INSERT INTO call_records (account_id, record_key, call_ids, note, state)
SELECT $1, c.key, ARRAY[$2], $4, 'waiting' FROM c, a WHERE a.log_calls AND length($4) <= $5
ON CONFLICT (account_id, record_key) DO UPDATE SET
    note = CASE WHEN call_records.note IS NULL THEN excluded.note ELSE call_records.note || E'\n' || excluded.note END,
    note_pending = call_records.state = 'done',
    run_after = CASE WHEN call_records.state = 'done' THEN now() ELSE call_records.run_after END,
    updated_at = now()
 WHERE call_records.state <> 'failed'
   AND call_records.note_sent + coalesce(length(call_records.note), 0)
       + CASE WHEN call_records.note_sent > 0 OR call_records.note IS NOT NULL THEN 1 ELSE 0 END
       + length(excluded.note) <= $5
RETURNING id, state)
SELECT EXISTS (SELECT 1 FROM c) AS found, coalesce((SELECT log_calls FROM a), false) AS log_calls,
       (SELECT r.state FROM call_records r, c WHERE r.account_id = $1 AND r.record_key = c.key) AS prior,
       (SELECT state FROM up) AS state,
       (SELECT r.note_sent + coalesce(length(r.note), 0) FROM call_records r, c
         WHERE r.account_id = $1 AND r.record_key = c.key) AS prior_chars;

-- name: sipgate_connect
-- A (new) sipgate credential for the account: it is connected again, whatever sipgate said of the last one.
UPDATE accounts SET sipgate_account_id = $2, sipgate_credential = $3, sipgate_rejected_at = NULL
 WHERE id = $1 RETURNING id;

-- name: sipgate_credential
SELECT id, sipgate_account_id, sipgate_credential, sipgate_rejected_at FROM accounts WHERE id = $1;

-- name: sipgate_credential_lock
-- Held while one process refreshes the OAuth tokens, so that another waits and then reads the rotated ones.
SELECT id, sipgate_account_id, sipgate_credential, sipgate_rejected_at FROM accounts WHERE id = $1 FOR UPDATE;

-- name: sipgate_credential_rotated
UPDATE accounts SET sipgate_credential = $2 WHERE id = $1 AND sipgate_rejected_at IS NULL RETURNING id;

-- name: sipgate_rejected
UPDATE accounts SET sipgate_rejected_at = now() WHERE id = $1 AND sipgate_rejected_at IS NULL RETURNING id;

-- name: account_by_sipgate
SELECT id FROM accounts WHERE sipgate_account_id = $1;

-- name: sessions_revoked
-- The listener's sweep after a (re)connect: of this process's sessions ($1 user ids, $2 their token hashes,
-- $3 their accounts), those whose user row is gone or holds another token now; account_gone: the account too.
SELECT s.user_id, s.token_hash, s.account_id, a.id IS NULL AS account_gone
  FROM unnest($1::text[], $2::bytea[], $3::text[]) AS s(user_id, token_hash, account_id)
  LEFT JOIN users u ON u.id = s.user_id AND u.token_hash = s.token_hash
  LEFT JOIN accounts a ON a.id = s.account_id
 WHERE u.id IS NULL;

-- name: signin_state_insert
INSERT INTO signin_states (state_hash, browser_hash, verifier, purpose, redirect_uri) VALUES ($1, $2, $3, $4, $5);

-- name: signin_state_take
-- A sign-in's callback takes its state: one statement, so a state is used once however many callbacks race.
DELETE FROM signin_states WHERE state_hash = $1
RETURNING browser_hash, verifier, purpose, redirect_uri, created_at > now() - make_interval(secs => $2) AS fresh;

-- name: signin_states_purge
DELETE FROM signin_states WHERE created_at <= now() - make_interval(secs => $1);

-- name: account_by_sipgate_connected
SELECT id, sipgate_credential IS NOT NULL AS connected FROM accounts WHERE sipgate_account_id = $1;

-- name: user_by_sipgate
SELECT id FROM users WHERE account_id = $1 AND sipgate_user = $2;

-- name: presence
-- Who of an account is on the phone now, from the calls every process records (CONTRACT §5.1 directory.search):
-- one row per busy sipgate user, in_call true when talking, false when only ringing. An answered call not ended
-- is a call for whoever answered it; an outgoing leg not ended is one for the user who placed it (sipgate's
-- answer of an outgoing call names nobody); an unanswered incoming call not ended rings for the users it rings
-- for. A call past the reaper's bounds ($2 s of ringing, $3 s of talk) counts no more, reaped yet or not.
-- The partial index calls_open_legs (account_id, … WHERE ended_at IS NULL) finds the open calls.
SELECT p.sipgate_user, bool_or(p.in_call) AS in_call
  FROM calls c
 CROSS JOIN LATERAL (
       SELECT c.answered_by AS sipgate_user, true AS in_call
        WHERE c.answered_at IS NOT NULL AND c.direction IS DISTINCT FROM 'out'
       UNION ALL
       SELECT u, true FROM unnest(c.users) AS u WHERE c.direction = 'out'
       UNION ALL
       SELECT u, false FROM unnest(c.users) AS u
        WHERE c.answered_at IS NULL AND c.direction IS DISTINCT FROM 'out' AND NOT c.voicemail
 ) p
 WHERE c.account_id = $1 AND c.ended_at IS NULL AND p.sipgate_user IS NOT NULL
   AND CASE WHEN c.answered_at IS NULL THEN c.started_at > now() - make_interval(secs => $2)
            ELSE c.answered_at > now() - make_interval(secs => $3) END
 GROUP BY p.sipgate_user;

-- name: call_state
-- One call leg of an account, for the call control of a session (call.transfer, call.hangup): whose it is.
SELECT call_id, direction, users, answered_at IS NOT NULL AS answered, answered_by, ended_at IS NOT NULL AS ended,
       voicemail
  FROM calls WHERE account_id = $1 AND call_id = $2;

-- name: account_admin_token
SELECT admin_token_hash FROM accounts WHERE id = $1;

-- name: account_set_crm
UPDATE accounts SET crm_kind = $2, crm_instance = $3, log_calls = $4 WHERE id = $1 RETURNING id;

-- name: portal_calls
-- The portal's calls page: an account's calls newest first (of its last 100), each with its CRM record's state
-- (found through the GIN index call_records_calls: @>, which it serves, not = ANY, which it does not).
SELECT c.call_id, c.direction, c.number, c.users, c.answered_by, c.voicemail, c.started_at, c.answered_at,
       c.ended_at, c.cause, c.pop_ms, c.pop_resolved,
       r.state AS record_state, r.crm_record_id, r.crm_url, r.last_error
  FROM calls c
  LEFT JOIN LATERAL (SELECT j.state, j.crm_record_id, j.crm_url, j.last_error FROM call_records j
                      WHERE j.account_id = c.account_id AND j.call_ids @> ARRAY[c.call_id]
                      ORDER BY j.id LIMIT 1) r ON true
 WHERE c.account_id = $1
 ORDER BY c.started_at DESC, c.call_id
 LIMIT $2 OFFSET $3;

-- name: portal_calls_count
SELECT least(count(*), 100) FROM (SELECT 1 FROM calls WHERE account_id = $1 LIMIT 100) c;

-- name: calls_popped
-- Ring-to-pop of calls whose ringing went out, batched by the fan-out: the first (smallest) per call wins.
-- One primary-key probe per popped call whatever the table's size (a plain join on the keys hashed a seq scan of
-- all calls): the LATERAL probe locks the row's newest version (FOR UPDATE), so its ctid is still the row to update
-- when a concurrent write to the same call came first; the keys are sorted so two writers lock in one order.
UPDATE calls c SET pop_ms = least(coalesce(c.pop_ms, p.ms), p.ms), pop_resolved = coalesce(c.pop_resolved, p.resolved)
  FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::boolean[]) AS u(account_id, call_id, ms, resolved)
         ORDER BY 1, 2) p
  CROSS JOIN LATERAL (SELECT x.ctid FROM calls x WHERE x.account_id = p.account_id AND x.call_id = p.call_id
                         FOR UPDATE) k
 WHERE c.ctid = k.ctid;

-- name: session_presence_write
-- One process's changes since its last write, in one statement: its heartbeat ($1) is refreshed, the users whose
-- counts changed ($2, $3) upserted, those down to no session ($4) deleted; processes whose heartbeat is older
-- than $5 seconds (stopped without leaving) are purged with their rows. Returns whether the heartbeat was new
-- (the first write, or one after this process was purged as stale: then it must write all its counts).
WITH beat AS (INSERT INTO session_presence_processes (process_id, seen_at) VALUES ($1, now())
                ON CONFLICT (process_id) DO UPDATE SET seen_at = EXCLUDED.seen_at
                RETURNING xmax = 0 AS new),
     gone AS (DELETE FROM session_presence WHERE process_id = $1 AND user_id = ANY($4::text[])),
     kept AS (INSERT INTO session_presence (process_id, user_id, sessions, seen_at)
              SELECT $1, p.user_id, p.n, now() FROM unnest($2::text[], $3::int[]) AS p(user_id, n)
              ON CONFLICT (process_id, user_id) DO UPDATE SET sessions = EXCLUDED.sessions, seen_at = EXCLUDED.seen_at),
     dead AS (DELETE FROM session_presence_processes
               WHERE process_id <> $1 AND seen_at < now() - make_interval(secs => $5) RETURNING process_id),
     purged AS (DELETE FROM session_presence WHERE process_id IN (SELECT process_id FROM dead))
SELECT new FROM beat;

-- name: session_presence_orphans_purge
-- At a writer's start: rows of processes that have no heartbeat at all (written before heartbeats, or left by a
-- purge that raced a write) and were not refreshed for $1 seconds. A seq scan, once per process start.
DELETE FROM session_presence p
 WHERE p.seen_at < now() - make_interval(secs => $1)
   AND NOT EXISTS (SELECT 1 FROM session_presence_processes h WHERE h.process_id = p.process_id);

-- name: session_presence_leave
WITH beat AS (DELETE FROM session_presence_processes WHERE process_id = $1)
DELETE FROM session_presence WHERE process_id = $1;

-- name: session_presence_of_account
-- The portal's Users page: open sessions per user of an account on the other processes whose heartbeat is fresh.
SELECT p.user_id, sum(p.sessions)::int AS sessions
  FROM session_presence p
  JOIN session_presence_processes h ON h.process_id = p.process_id
  JOIN users u ON u.id = p.user_id
 WHERE u.account_id = $1 AND p.process_id <> $2 AND h.seen_at >= now() - make_interval(secs => $3)
 GROUP BY p.user_id;
