-- The append-only event log (DESIGN.md section 3).

CREATE TABLE events (
  global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
  stream_name     text        NOT NULL,
  category        text        NOT NULL,
  stream_version  bigint      NOT NULL CHECK (stream_version >= 0),
  event_id        uuid        NOT NULL UNIQUE,
  type            text        NOT NULL,
  schema_version  integer     NOT NULL DEFAULT 1,
  data            jsonb       NOT NULL,
  metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
  recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  UNIQUE (stream_name, stream_version)
);

COMMENT ON TABLE events IS
  'Append-only event log. Readers order by (tx_id, global_position) and read below pg_snapshot_xmin(pg_current_snapshot()).';

CREATE INDEX events_cursor_idx    ON events (tx_id, global_position);
CREATE INDEX events_org_idx       ON events ((metadata->>'org_id'), tx_id, global_position);
CREATE INDEX events_operation_idx ON events ((metadata->>'operation_id'));
CREATE INDEX events_resource_idx  ON events ((metadata->>'resource_id'));

-- Events are never rewritten: UPDATE, DELETE and TRUNCATE are refused.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are append-only: % is not allowed on the event log', TG_OP
    USING ERRCODE = 'PA001',
          HINT = 'Record a new event that corrects the state instead of changing history.';
END $$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- append_events(stream, expected_version, events)
--   p_expected: NULL = any version, -1 = the stream must not exist, n = the stream must be at version n.
--   p_events:   JSON array of {event_id, type, schema_version, data, metadata}.
-- Returns one row per event. When every event id already exists in this stream the original rows are
-- returned with duplicate = true and nothing is written.
-- SQLSTATEs: PW001 wrong expected version, PI001 event ids partly present (or present in another stream).
CREATE FUNCTION append_events(p_stream text, p_expected bigint, p_events jsonb)
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
  IF jsonb_typeof(p_events) <> 'array' OR jsonb_array_length(p_events) = 0 THEN
    RAISE EXCEPTION 'append_events needs a non-empty JSON array of events' USING ERRCODE = '22023';
  END IF;

  -- 1. Serialise writers of this stream only.
  PERFORM pg_advisory_xact_lock(hashtextextended('stream:' || p_stream, 0));

  -- 2. Idempotency by event id.
  SELECT array_agg((e->>'event_id')::uuid) INTO v_ids FROM jsonb_array_elements(p_events) e;
  SELECT count(*) INTO v_found FROM events ev WHERE ev.event_id = ANY (v_ids);
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
  SELECT max(ev.stream_version) INTO v_current FROM events ev WHERE ev.stream_name = p_stream;
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

  -- 5. One small wake-up per transaction; the payload is only a hint, never the event.
  IF current_setting('platform.notified', true) IS DISTINCT FROM 'yes' THEN
    PERFORM set_config('platform.notified', 'yes', true);
    PERFORM pg_notify('platform_events', v_category);
  END IF;
END $$;

-- The safe read horizon: every transaction below it has finished, so no event can appear below it later.
CREATE FUNCTION event_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
  SELECT pg_snapshot_xmin(pg_current_snapshot())
$$;
