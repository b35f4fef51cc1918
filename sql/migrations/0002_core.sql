-- Command-side tables: the few facts a command must check atomically before it appends
-- (unique names, parents that exist, memberships, tokens, idempotency keys).
-- They are written only by the command functions below, in the same transaction as the events.

CREATE SCHEMA core;

CREATE TABLE core.users (
  id         text PRIMARY KEY,
  name       text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- API tokens: only a SHA-256 hash of the secret is stored.
CREATE TABLE core.tokens (
  id          text PRIMARY KEY,
  user_id     text NOT NULL REFERENCES core.users(id),
  org_id      text,                     -- NULL: every org the user belongs to
  description text NOT NULL DEFAULT '',
  secret_hash text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

-- Every org, project, app and env: the registry that keeps names unique within their parent.
CREATE TABLE core.resources (
  id         text PRIMARY KEY,
  kind       text NOT NULL CHECK (kind IN ('org', 'project', 'app', 'env')),
  org_id     text NOT NULL,
  parent_id  text REFERENCES core.resources(id),
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX resources_live_name ON core.resources (kind, coalesce(parent_id, ''), name)
  WHERE deleted_at IS NULL;
CREATE INDEX resources_parent ON core.resources (parent_id) WHERE deleted_at IS NULL;

CREATE TABLE core.memberships (
  org_id     text NOT NULL REFERENCES core.resources(id),
  user_id    text NOT NULL REFERENCES core.users(id),
  role       text NOT NULL CHECK (role IN ('owner', 'member')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, user_id)
);

-- Idempotency-Key: the first response for (user, key) is replayed for every retry with the same request.
CREATE TABLE core.idempotency_keys (
  user_id      text NOT NULL,
  key          text NOT NULL,
  request_hash text NOT NULL,
  http_status  integer NOT NULL,
  response     jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, key)
);

-- create_resource: checks the parent, reserves the name and appends the Created event, atomically.
-- SQLSTATEs: PN001 name taken, PN002 parent missing or deleted.
CREATE FUNCTION core.create_resource(p_kind text, p_id text, p_org text, p_parent text, p_name text,
                                     p_user text, p_events jsonb)
RETURNS TABLE (global_position bigint, tx_id xid8, stream_version bigint, event_id uuid, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
  v_parent_kind text;
BEGIN
  IF p_parent IS NOT NULL THEN
    SELECT r.kind INTO v_parent_kind FROM core.resources r
      WHERE r.id = p_parent AND r.deleted_at IS NULL FOR SHARE;
    IF NOT FOUND THEN
      RAISE EXCEPTION '% % does not exist or was deleted', split_part(p_parent, '_', 1), p_parent
        USING ERRCODE = 'PN002';
    END IF;
  END IF;
  -- Re-running the same create (same event ids) returns the original result.
  IF EXISTS (SELECT 1 FROM core.resources r WHERE r.id = p_id) THEN
    RETURN QUERY SELECT * FROM append_events(p_kind || '-' || p_id, NULL, p_events);
    RETURN;
  END IF;
  BEGIN
    INSERT INTO core.resources (id, kind, org_id, parent_id, name) VALUES (p_id, p_kind, p_org, p_parent, p_name);
  EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION '% "%" already exists here', p_kind, p_name
      USING ERRCODE = 'PN001',
            HINT = 'Choose another name, or describe the existing one.';
  END;
  IF p_kind = 'org' THEN
    INSERT INTO core.memberships (org_id, user_id, role) VALUES (p_id, p_user, 'owner');
  END IF;
  RETURN QUERY SELECT * FROM append_events(p_kind || '-' || p_id, -1, p_events);
END $$;

-- delete_resource: refuses while live children exist, frees the name, appends the Deleted event.
-- p_expected: the stream version the caller last saw (If-Match), or NULL.
-- SQLSTATEs: PN003 not found, PN004 still has live children, PW001 stale expected version.
CREATE FUNCTION core.delete_resource(p_id text, p_events jsonb, p_expected bigint DEFAULT NULL)
RETURNS TABLE (global_position bigint, tx_id xid8, stream_version bigint, event_id uuid, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
  v_kind     text;
  v_deleted  timestamptz;
  v_children integer;
  v_example  text;
BEGIN
  SELECT r.kind, r.deleted_at INTO v_kind, v_deleted FROM core.resources r WHERE r.id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'resource % does not exist', p_id USING ERRCODE = 'PN003';
  END IF;
  IF v_deleted IS NOT NULL THEN
    -- A retry of the same delete is answered with the original events; anything else is "not found".
    IF EXISTS (SELECT 1 FROM events ev WHERE ev.event_id = (p_events->0->>'event_id')::uuid) THEN
      RETURN QUERY SELECT * FROM append_events(v_kind || '-' || p_id, NULL, p_events);
      RETURN;
    END IF;
    RAISE EXCEPTION '% % was deleted at %', v_kind, p_id, v_deleted USING ERRCODE = 'PN003';
  END IF;
  SELECT count(*), min(c.kind || ' ' || c.name) INTO v_children, v_example
    FROM core.resources c WHERE c.parent_id = p_id AND c.deleted_at IS NULL;
  IF v_children > 0 THEN
    RAISE EXCEPTION '% % still has % live child resource(s), e.g. %', v_kind, p_id, v_children, v_example
      USING ERRCODE = 'PN004',
            HINT = 'Delete the children first.';
  END IF;
  UPDATE core.resources SET deleted_at = now() WHERE id = p_id;
  RETURN QUERY SELECT * FROM append_events(v_kind || '-' || p_id, p_expected, p_events);
END $$;
