-- append_events, second version: same contract, two changes.
--
-- 1. The wake-up can be sent after commit. A NOTIFY inside a transaction takes PostgreSQL's global
--    notify lock from pre-commit until the commit record is flushed, so every notifying transaction
--    in the cluster commits one at a time and concurrent writers lose group commit (the benchmark
--    showed 16 writers no faster than one). A session that sets
--        SET platform.notify_after_commit = on
--    promises to send the wake-up itself once its transaction has committed (platformd's pool rings a
--    coalescing doorbell: see engine/doorbell.h). Every other session (psql, scripts) still gets one
--    NOTIFY per transaction from here, so nothing that appends is ever left without a wake-up.
--    Either way `platform.notified` is set for the rest of the transaction, so it sends at most one.
-- 2. The duplicate-id check and the current stream version are read by one statement, not three.
CREATE OR REPLACE FUNCTION append_events(p_stream text, p_expected bigint, p_events jsonb)
RETURNS TABLE (global_position bigint, tx_id xid8, stream_version bigint, event_id uuid, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
  v_ids      uuid[];
  v_found    integer;
  v_current  bigint;
  v_category text;
BEGIN
  IF p_stream IS NULL OR p_stream = '' THEN
    RAISE EXCEPTION 'stream name is empty' USING ERRCODE = '22023';
  END IF;
  IF jsonb_typeof(p_events) IS DISTINCT FROM 'array' OR jsonb_array_length(p_events) = 0 THEN
    RAISE EXCEPTION 'append_events needs a non-empty JSON array of events' USING ERRCODE = '22023';
  END IF;

  -- 1. Serialise writers of this stream only. Every read below starts after the lock is held.
  PERFORM pg_advisory_xact_lock(hashtextextended('stream:' || p_stream, 0));

  -- 2. Idempotency by event id, and the stream's current version, in one statement.
  SELECT i.ids,
         (SELECT count(*) FROM events ev WHERE ev.event_id = ANY (i.ids)),
         (SELECT max(ev.stream_version) FROM events ev WHERE ev.stream_name = p_stream)
    INTO v_ids, v_found, v_current
    FROM (SELECT array_agg((e->>'event_id')::uuid) AS ids FROM jsonb_array_elements(p_events) e) i;
  IF v_found > 0 THEN
    IF v_found = cardinality(v_ids) AND NOT EXISTS (
         SELECT 1 FROM events ev WHERE ev.event_id = ANY (v_ids) AND ev.stream_name <> p_stream) THEN
      RETURN QUERY
        SELECT ev.global_position, ev.tx_id, ev.stream_version, ev.event_id, true
        FROM events ev WHERE ev.event_id = ANY (v_ids) ORDER BY ev.stream_version;
      RETURN;
    END IF;
    RAISE EXCEPTION 'event ids already recorded: % of % ids in this append exist (or exist in another stream)',
      v_found, cardinality(v_ids)
      USING ERRCODE = 'PI001',
            HINT = 'Retry with exactly the same events, or with fresh event ids.';
  END IF;

  -- 3. Expected version.
  v_current := coalesce(v_current, -1);
  IF p_expected IS NOT NULL AND p_expected <> v_current THEN
    RAISE EXCEPTION 'wrong expected version for stream %: expected %, stream is at %',
      p_stream, p_expected, v_current
      USING ERRCODE = 'PW001',
            HINT = 'Someone else changed this resource first: re-read it and retry.';
  END IF;

  -- 4. Insert (a racing duplicate fails loudly on the unique indexes; nothing is dropped silently).
  v_category := split_part(p_stream, '-', 1);
  RETURN QUERY
    INSERT INTO events (stream_name, category, stream_version, event_id, type, schema_version, data, metadata)
    SELECT p_stream, v_category, v_current + e.ord,
           (e.value->>'event_id')::uuid,
           e.value->>'type',
           coalesce((e.value->>'schema_version')::integer, 1),
           coalesce(e.value->'data', '{}'::jsonb),
           coalesce(e.value->'metadata', '{}'::jsonb)
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(value, ord)
    ORDER BY e.ord
    RETURNING events.global_position, events.tx_id, events.stream_version, events.event_id, false;

  -- 5. One small wake-up per transaction, now or (when the session promised it) after commit.
  IF current_setting('platform.notified', true) IS DISTINCT FROM 'yes' THEN
    PERFORM set_config('platform.notified', 'yes', true);
    IF current_setting('platform.notify_after_commit', true) IS DISTINCT FROM 'on' THEN
      PERFORM pg_notify('platform_events', v_category);
    END IF;
  END IF;
END $$;
