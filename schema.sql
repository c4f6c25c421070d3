-- Hej CTI schema. Applied by `hejcti migrate` (and by `serve` at start); every statement is safe to run again.
-- Privacy (CONTRACT §6): ids, token hashes, call events and pending call records. No names, emails or CRM data.

CREATE TABLE IF NOT EXISTS accounts (
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    crm_kind            text NOT NULL CHECK (crm_kind IN
                            ('salesforce', 'hubspot', 'pipedrive', 'zendesk', 'sugarcrm', 'suitecrm', 'directory',
                             'none')),
    crm_instance        text,
    region              text NOT NULL DEFAULT 'DE',
    log_calls           boolean NOT NULL DEFAULT true,
    sipgate_account_id  text,
    sipgate_credential  bytea,                 -- encrypted with SECRET_KEY
    webhook_token_hash  bytea NOT NULL UNIQUE, -- sha256 of the token in the webhook URL
    webhook_nonce       bytea NOT NULL,        -- the token is HMAC(SECRET_KEY, id, nonce); rotate = new nonce
    admin_token_hash    bytea NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
-- set when sipgate rejects the stored credential (401 after a refresh): the account shows as disconnected,
-- and nobody calls sipgate with it again until an admin connects it anew (which clears this)
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS sipgate_rejected_at timestamptz;
-- one Hej CTI account per sipgate account: a sign-in finds its account by masterSipId
CREATE UNIQUE INDEX IF NOT EXISTS accounts_sipgate_account ON accounts (sipgate_account_id)
    WHERE sipgate_account_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS users (
    id            text PRIMARY KEY,
    account_id    text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    sipgate_user  text NOT NULL,               -- w0, w1, …
    crm_user      text,                        -- the CRM's id of the same person
    token_hash    bytea NOT NULL UNIQUE,       -- sha256 of the extension's token
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, sipgate_user)
);

-- One row per call leg: what the events so far say about it.
CREATE TABLE IF NOT EXISTS calls (
    account_id    text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    call_id       text NOT NULL,
    orig_call_id  text,
    xcid          text,
    direction     text,
    number        text,                        -- the other party, E.164, null when anonymous
    own_number    text,
    users         text[] NOT NULL DEFAULT '{}',-- the sipgate user ids it rings for
    voicemail     boolean NOT NULL DEFAULT false,
    started_at    timestamptz NOT NULL,
    answered_at   timestamptz,
    answered_by   text,
    ended_at      timestamptz,
    cause         text,
    duration_s    integer,
    PRIMARY KEY (account_id, call_id)
);
-- the user ids (users.id) it rings for, resolved at its newCall: its events go to those users' sessions only, so
-- a user removed since (or an earlier holder of the same sipgate id) gets none. NULL: a call from before.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS user_ids text[];
CREATE INDEX IF NOT EXISTS calls_open ON calls (started_at) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
CREATE INDEX IF NOT EXISTS calls_open_legs ON calls (account_id, xcid) WHERE ended_at IS NULL;

-- The event log. `id` is the `seq` sessions see; `data` holds the parsed push plus derived fields
-- (users, duration_s, voicemail), so every process renders the same message from it.
CREATE TABLE IF NOT EXISTS call_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    call_id      text NOT NULL,
    event        text NOT NULL CHECK (event IN ('newCall', 'answer', 'hangup', 'dtmf')),
    dedup        text NOT NULL DEFAULT '',     -- '' for newCall/answer/hangup; a body hash for dtmf
    data         jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (account_id, call_id, event, dedup)
);
CREATE INDEX IF NOT EXISTS call_events_received ON call_events (received_at);
CREATE INDEX IF NOT EXISTS call_events_account ON call_events (account_id, id);

-- Durable call-record jobs: one per call (legs sharing an xcid are one call), written once.
CREATE TABLE IF NOT EXISTS call_records (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    record_key     text NOT NULL,              -- xcid, else the first leg's callId
    call_ids       text[] NOT NULL DEFAULT '{}',
    state          text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'ready', 'done', 'failed')),
    data           jsonb NOT NULL DEFAULT '{}',-- direction, number, answered, duration_s, users, answered_by…
    note           text,
    note_pending   boolean NOT NULL DEFAULT false, -- a note arrived after the record was written
    attempts       integer NOT NULL DEFAULT 0,
    run_after      timestamptz NOT NULL DEFAULT now(),
    lease_until    timestamptz,
    crm_record_id  text,
    crm_url        text,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, record_key)
);
CREATE INDEX IF NOT EXISTS call_records_due ON call_records (run_after) WHERE state = 'ready' OR note_pending;
-- How many characters of the call's notes are in the CRM record (the record's own description at the write,
-- then every appended part). Since note_head, that text is also gone from `note`, which keeps only the rest
-- (hejcti_note_rest); before, `note` kept everything and this said how much of it was sent.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_name = 'call_records' AND column_name = 'note_sent'
                      AND table_schema = current_schema()) THEN
        ALTER TABLE call_records ADD COLUMN note_sent integer NOT NULL DEFAULT 0;
        -- rows written before this column: what they hold is in the CRM already
        UPDATE call_records SET note_sent = coalesce(length(note), 0) WHERE state = 'done' AND NOT note_pending;
    END IF;
END;
$$;
-- waiting jobs whose call has ended on every leg are promoted by the claim after a while (a forward out)
CREATE INDEX IF NOT EXISTS call_records_waiting ON call_records (run_after) WHERE state = 'waiting';
CREATE INDEX IF NOT EXISTS call_records_calls ON call_records USING gin (call_ids);
-- What is left of a note once its first p_sent characters are in the CRM (notes only grow at the end, each
-- joined by a newline, which goes with the part before it); NULL when nothing is left. A note is kept only
-- until the record holding it is written (CONTRACT §6): the queries that record a write keep just this.
CREATE OR REPLACE FUNCTION hejcti_note_rest(p_note text, p_sent integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT nullif(CASE WHEN p_sent > 0 AND substr(p_note, p_sent + 1, 1) = E'\n' THEN substr(p_note, p_sent + 2)
                       ELSE substr(p_note, greatest(p_sent, 0) + 1) END, '')
$$;
-- How many characters of `note` the record's first create carries, fixed just before it is sent (NULL until
-- then): a retry sends the same body, so a create under an idempotency key (Zendesk) is the same request.
-- Added with it: notes already written leave the server (only their unsent rest stays).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_name = 'call_records' AND column_name = 'note_head'
                      AND table_schema = current_schema()) THEN
        ALTER TABLE call_records ADD COLUMN IF NOT EXISTS note_head integer;
        UPDATE call_records SET note = hejcti_note_rest(note, note_sent) WHERE state = 'done' AND note_sent > 0;
    END IF;
END;
$$;

-- Store one pushed event: insert it (a repeat is a no-op), update the call, and NOTIFY the listeners.
-- Returns the event id, or NULL for a repeated delivery. The event's data gains `users` (the sipgate user ids it
-- rings for) and `recipients` (their users.id, the same order; null for a call stored before they were kept).
CREATE OR REPLACE FUNCTION hejcti_ingest(p_account text, p_event text, p_call_id text, p_dedup text, p_data jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz := clock_timestamp();
    v_call   calls%ROWTYPE;
    v_users  text[];
    v_uids   text[];
    v_data   jsonb := p_data;
    v_id     bigint;
    v_vm     boolean;
    v_note   text;
BEGIN
    IF EXISTS (SELECT 1 FROM call_events
               WHERE account_id = p_account AND call_id = p_call_id AND event = p_event AND dedup = p_dedup) THEN
        RETURN NULL;
    END IF;

    IF p_event = 'newCall' THEN
        v_vm := coalesce((p_data->>'voicemail')::boolean, false);
        IF v_vm THEN
            -- a voicemail leg rings for nobody; its answer and hangup go to whoever the first leg rang for
            SELECT coalesce(c.users, '{}'), coalesce(c.user_ids, '{}') INTO v_users, v_uids
              FROM (SELECT 1) one
              LEFT JOIN calls c ON c.account_id = p_account AND c.call_id = p_data->>'orig_call_id'
                               AND c.call_id <> p_call_id;
        ELSIF jsonb_array_length(coalesce(p_data->'user_ids', '[]')) > 0 THEN
            -- one index probe per rung user (the LATERAL … LIMIT 1 keeps it so), in the push's order. Not a
            -- join or `sipgate_user = ANY(ids)`: plpgsql caches a generic plan, and for `account_id = $1` that
            -- plan read every user of the account (1,000 per push in the benchmark, most of PostgreSQL's time).
            SELECT coalesce(array_agg(x.id ORDER BY x.n), '{}'), coalesce(array_agg(known.id ORDER BY x.n), '{}')
              INTO v_users, v_uids
              FROM (SELECT e.id, min(e.n) AS n   -- a user listed twice rings once
                      FROM jsonb_array_elements_text(p_data->'user_ids') WITH ORDINALITY AS e(id, n)
                     GROUP BY e.id) x
             CROSS JOIN LATERAL (SELECT u.id FROM users u
                                  WHERE u.account_id = p_account AND u.sipgate_user = x.id LIMIT 1) known;
        ELSE
            SELECT coalesce(array_agg(sipgate_user ORDER BY sipgate_user), '{}'),
                   coalesce(array_agg(id ORDER BY sipgate_user), '{}')
              INTO v_users, v_uids
              FROM users WHERE account_id = p_account;
        END IF;
        v_data := v_data || jsonb_build_object('users', to_jsonb(v_users), 'recipients', to_jsonb(v_uids));
    ELSE
        SELECT * INTO v_call FROM calls WHERE account_id = p_account AND call_id = p_call_id FOR UPDATE;
        v_users := coalesce(v_call.users, '{}');
        v_data := v_data || jsonb_build_object('users', to_jsonb(v_users),
                                               'recipients', CASE WHEN v_call.call_id IS NULL THEN '[]'::jsonb
                                                                  ELSE to_jsonb(v_call.user_ids) END,
                                               'voicemail', coalesce(v_call.voicemail, false)
                                                   OR coalesce((p_data->>'voicemail')::boolean, false));
        IF p_event = 'hangup' THEN
            v_data := v_data || jsonb_build_object(
                'answered', v_call.answered_at IS NOT NULL,
                'answered_by', v_call.answered_by,
                'duration_s', CASE WHEN v_call.answered_at IS NULL THEN NULL
                                   ELSE floor(extract(epoch FROM v_now - v_call.answered_at))::int END);
        END IF;
    END IF;

    INSERT INTO call_events (account_id, call_id, event, dedup, data, received_at)
    VALUES (p_account, p_call_id, p_event, p_dedup, v_data, v_now)
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RETURN NULL;
    END IF;

    IF p_event = 'newCall' THEN
        INSERT INTO calls (account_id, call_id, orig_call_id, xcid, direction, number, own_number, users,
                           user_ids, voicemail, started_at)
        VALUES (p_account, p_call_id, p_data->>'orig_call_id', p_data->>'xcid', p_data->>'direction',
                p_data->>'number', p_data->>'own_number', v_users, v_uids, v_vm, v_now)
        ON CONFLICT (account_id, call_id) DO NOTHING;
    ELSIF p_event = 'answer' THEN
        IF v_call.call_id IS NULL THEN
            INSERT INTO calls (account_id, call_id, orig_call_id, xcid, direction, number, own_number,
                               started_at, answered_at, answered_by, voicemail)
            VALUES (p_account, p_call_id, p_data->>'orig_call_id', p_data->>'xcid', p_data->>'direction',
                    p_data->>'number', p_data->>'own_number', v_now, v_now, p_data->>'by',
                    coalesce((p_data->>'voicemail')::boolean, false))
            ON CONFLICT (account_id, call_id) DO NOTHING;
        ELSE
            UPDATE calls SET answered_at = coalesce(answered_at, v_now),
                             answered_by = coalesce(answered_by, p_data->>'by'),
                             voicemail = voicemail OR coalesce((p_data->>'voicemail')::boolean, false)
             WHERE account_id = p_account AND call_id = p_call_id;
        END IF;
    ELSIF p_event = 'hangup' THEN
        IF v_call.call_id IS NULL THEN
            INSERT INTO calls (account_id, call_id, orig_call_id, xcid, direction, number, own_number,
                               started_at, ended_at, cause)
            VALUES (p_account, p_call_id, p_data->>'orig_call_id', p_data->>'xcid', p_data->>'direction',
                    p_data->>'number', p_data->>'own_number', v_now, v_now, p_data->>'cause')
            ON CONFLICT (account_id, call_id) DO NOTHING;
        ELSE
            UPDATE calls SET ended_at = v_now, cause = p_data->>'cause', duration_s = (v_data->>'duration_s')::int
             WHERE account_id = p_account AND call_id = p_call_id;
        END IF;
        PERFORM hejcti_record_leg(p_account, p_call_id);
    END IF;

    v_note := json_build_object('id', v_id, 'account_id', p_account, 'call_id', p_call_id, 'event', p_event,
                                'data', v_data, 'at', v_now)::text;
    IF octet_length(v_note) > 7900 THEN
        -- NOTIFY payloads stop at 8000 bytes: send the id only, the listener reads the row
        v_note := json_build_object('id', v_id, 'account_id', p_account)::text;
    END IF;
    PERFORM pg_notify('hejcti_events', v_note);
    RETURN v_id;
END;
$$;

-- The call-record job key of a call leg: legs of one call share the xcid (else the first leg's callId).
CREATE OR REPLACE FUNCTION hejcti_record_key(p_account text, p_call_id text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(c.xcid, ''), nullif(c.orig_call_id, ''), c.call_id)
      FROM calls c WHERE c.account_id = p_account AND c.call_id = p_call_id
$$;

-- After a leg's hangup: create or extend the call-record job of the whole call. The job becomes ready a few
-- seconds after the last leg ends; a leg that ended `forwarded` waits for the next leg (the record claim
-- promotes a job that waited two minutes with no leg still open: a forward to an outside number).
CREATE OR REPLACE FUNCTION hejcti_record_leg(p_account text, p_call_id text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_call  calls%ROWTYPE;
    v_log   boolean;
    v_leg   jsonb;
    v_state text;
BEGIN
    SELECT log_calls INTO v_log FROM accounts WHERE id = p_account;
    IF NOT coalesce(v_log, false) THEN
        RETURN;
    END IF;
    SELECT * INTO v_call FROM calls WHERE account_id = p_account AND call_id = p_call_id;
    IF nullif(v_call.xcid, '') IS NOT NULL THEN
        -- one leg of a call at a time: two legs hanging up at once (on two processes) would otherwise each see
        -- the other still open (READ COMMITTED) and both leave the job waiting. The next statement's snapshot
        -- sees what the leg before us committed.
        PERFORM pg_advisory_xact_lock(hashtextextended(p_account || ':' || v_call.xcid, 0));
    END IF;
    -- a forwarded leg waits for the next leg; so does any leg while another leg of the call still runs
    -- (a transfer: the first leg ends when it is handed over, the second talks on)
    v_state := CASE WHEN v_call.cause = 'forwarded' THEN 'waiting'
                    WHEN nullif(v_call.xcid, '') IS NOT NULL AND EXISTS (
                        SELECT 1 FROM calls o WHERE o.account_id = p_account AND o.xcid = v_call.xcid
                           AND o.call_id <> p_call_id AND o.ended_at IS NULL) THEN 'waiting'
                    ELSE 'ready' END;
    v_leg := jsonb_build_object(
        'direction', v_call.direction, 'number', v_call.number, 'own_number', v_call.own_number,
        'users', to_jsonb(v_call.users), 'recipients', to_jsonb(v_call.user_ids),
        'started_at', v_call.started_at, 'ended_at', v_call.ended_at,
        'answered', v_call.answered_at IS NOT NULL AND NOT v_call.voicemail, 'voicemail', v_call.voicemail,
        'answered_by', CASE WHEN v_call.voicemail THEN NULL ELSE v_call.answered_by END,
        'duration_s', CASE WHEN v_call.voicemail THEN NULL ELSE v_call.duration_s END,
        'cause', v_call.cause, 'call_id', p_call_id, 'first_call_id', p_call_id);
    INSERT INTO call_records (account_id, record_key, call_ids, state, data, run_after)
    VALUES (p_account, hejcti_record_key(p_account, p_call_id), ARRAY[p_call_id], v_state, v_leg,
            now() + interval '3 seconds')
    ON CONFLICT (account_id, record_key) DO UPDATE SET
        call_ids = CASE WHEN p_call_id = ANY(call_records.call_ids) THEN call_records.call_ids
                        ELSE call_records.call_ids || p_call_id END,
        state = CASE WHEN call_records.state IN ('done', 'failed') THEN call_records.state
                     WHEN v_state = 'waiting' THEN call_records.state ELSE 'ready' END,
        -- the first leg's facts (direction, number, start) stay; the merged ones follow every leg
        data = v_leg || jsonb_strip_nulls(call_records.data) || jsonb_build_object(
            'call_id', p_call_id,
            'ended_at', v_call.ended_at,
            'cause', v_call.cause,
            'users', (SELECT coalesce(to_jsonb(array_agg(DISTINCT u)), '[]'::jsonb) FROM
                        (SELECT jsonb_array_elements_text(coalesce(call_records.data->'users', '[]')) AS u
                         UNION SELECT unnest(v_call.users)) s),
            -- the user rows it rang for (NULL while any leg is from before they were kept): call.logged and
            -- the CRM token go to these users' sessions only, never to a later holder of the same sipgate id
            'recipients', CASE WHEN v_call.user_ids IS NULL OR (call_records.data ? 'users'
                                    AND jsonb_typeof(call_records.data->'recipients') IS DISTINCT FROM 'array')
                               THEN NULL
                               ELSE (SELECT coalesce(to_jsonb(array_agg(DISTINCT r)), '[]'::jsonb) FROM
                                      (SELECT jsonb_array_elements_text(coalesce(call_records.data->'recipients',
                                                                                 '[]')) AS r
                                       UNION SELECT unnest(v_call.user_ids)) s) END,
            'answered', coalesce((call_records.data->>'answered')::boolean, false)
                        OR (v_call.answered_at IS NOT NULL AND NOT v_call.voicemail),
            'voicemail', coalesce((call_records.data->>'voicemail')::boolean, false) OR v_call.voicemail,
            'answered_by', coalesce(CASE WHEN v_call.voicemail THEN NULL ELSE v_call.answered_by END,
                                    call_records.data->>'answered_by'),
            'duration_s', CASE WHEN (call_records.data->>'duration_s') IS NULL
                                    AND (v_call.duration_s IS NULL OR v_call.voicemail) THEN NULL
                               ELSE coalesce((call_records.data->>'duration_s')::int, 0)
                                    + CASE WHEN v_call.voicemail THEN 0 ELSE coalesce(v_call.duration_s, 0) END
                          END),
        run_after = now() + interval '3 seconds',
        updated_at = now();
END;
$$;

-- Revocation reaches live sessions (CONTRACT §5): a user's new token, a user's removal and an account's deletion
-- NOTIFY `hejcti_revoked` in the transaction that does them, whoever does them (CLI, portal, SQL). Every
-- process's listener hears it and closes the sessions it names: {"user_id", "token_hash"} (hex of the replaced
-- token's hash) closes that token's sessions, {"user_id"} all of a removed user's, {"account_id"} an account's.
CREATE OR REPLACE FUNCTION hejcti_user_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.token_hash IS DISTINCT FROM OLD.token_hash THEN
            PERFORM pg_notify('hejcti_revoked', json_build_object('user_id', OLD.id,
                                                                  'token_hash', encode(OLD.token_hash, 'hex'))::text);
        END IF;
    -- a user deleted with its account (the cascade runs after the account's row is gone): the account's own
    -- notification closes the sessions, with the account's code
    ELSIF EXISTS (SELECT 1 FROM accounts WHERE id = OLD.account_id) THEN
        PERFORM pg_notify('hejcti_revoked', json_build_object('user_id', OLD.id)::text);
    END IF;
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS users_revoked ON users;
CREATE TRIGGER users_revoked AFTER UPDATE OF token_hash OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION hejcti_user_revoked();

CREATE OR REPLACE FUNCTION hejcti_account_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hejcti_revoked', json_build_object('account_id', OLD.id)::text);
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS accounts_deleted ON accounts;
CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION hejcti_account_deleted();

-- Sign in with sipgate (CONTRACT §8). An account made by an admin's first sign-in has no CRM yet: crm_kind
-- 'none' (lookups find nobody, log_calls is off) until the portal sets one. Databases made before 'none'
-- existed get it added to the CHECK here.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'accounts'::regclass AND conname = 'accounts_crm_kind_check'
                      AND pg_get_constraintdef(oid) LIKE '%''none''%') THEN
        ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_crm_kind_check;
        ALTER TABLE accounts ADD CONSTRAINT accounts_crm_kind_check CHECK (crm_kind IN
            ('salesforce', 'hubspot', 'pipedrive', 'zendesk', 'sugarcrm', 'suitecrm', 'directory', 'none'));
    END IF;
END;
$$;
-- A started sign-in, from GET /auth/sipgate until its callback takes it (once: DELETE … RETURNING) or ten
-- minutes pass. In the database, not in memory: the callback may reach another process than the start.
-- The state and the browser's value are kept only as hashes. The PKCE verifier is kept as it is: it is of no
-- use without the one-time code, which sipgate hands only to the browser, and the client secret, which is
-- only in the servers' environment; and it is gone at the callback or after ten minutes.
CREATE TABLE IF NOT EXISTS signin_states (
    state_hash    bytea PRIMARY KEY,          -- sha256 of the `state` sent to sipgate
    browser_hash  bytea NOT NULL,             -- sha256 of the random value in the browser's sign-in cookie
    verifier      text NOT NULL,              -- the PKCE code_verifier
    purpose       text NOT NULL CHECK (purpose IN ('portal', 'extension')),
    redirect_uri  text,                       -- the extension's, checked against EXTENSION_IDS at the start
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS signin_states_created ON signin_states (created_at);
-- Ring-to-pop (the portal's calls page): milliseconds from the newCall's receipt to its ringing handed to the first
-- session, and whether that pop found the caller. Written by the fan-out after the fact, batched, never on the
-- webhook path; NULL when no session got the call.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS pop_ms integer;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS pop_resolved boolean;
-- Open extension sessions per user and process (the portal's Users page counts them across processes, CONTRACT
-- §7): each worker process writes the counts that changed since its last write every PRESENCE_INTERVAL_S, in one
-- statement with its heartbeat (session_presence_processes); rows of a process whose heartbeat is older than three
-- intervals are of a process that stopped, ignored by readers and purged by the writers.
CREATE TABLE IF NOT EXISTS session_presence (
    process_id  text NOT NULL,                  -- proc_…, new at each start
    user_id     text NOT NULL,
    sessions    integer NOT NULL CHECK (sessions > 0),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (process_id, user_id)
);
CREATE INDEX IF NOT EXISTS session_presence_user ON session_presence (user_id);
-- One heartbeat per worker process (its presence writer refreshes it every PRESENCE_INTERVAL_S): the process's
-- session_presence rows are written only when its counts change, so readers count a process's rows only while its
-- heartbeat is fresh (three intervals), and writers purge the rows of processes whose heartbeat went stale.
CREATE TABLE IF NOT EXISTS session_presence_processes (
    process_id  text PRIMARY KEY,               -- proc_…, as in session_presence
    seen_at     timestamptz NOT NULL DEFAULT now()
);
