-- Projection checkpoints and the read models they maintain (DESIGN.md section 3).

CREATE SCHEMA projection;

-- One row per projection. A runner moves it forward in the same transaction as its upserts, with a fenced
-- UPDATE (WHERE tx_id = old AND position = old) so two runners can never both advance it.
CREATE TABLE projection.checkpoints (
  name       text PRIMARY KEY,
  tx_id      xid8   NOT NULL DEFAULT '0'::xid8,
  position   bigint NOT NULL DEFAULT 0,
  events     bigint NOT NULL DEFAULT 0,   -- events folded since the last rebuild
  updated_at timestamptz NOT NULL DEFAULT now(),
  runner     text NOT NULL DEFAULT ''
);

CREATE SCHEMA read_model;

-- Orgs, projects, apps and envs share one shape; "kind" tells them apart.
CREATE TABLE read_model.resources (
  id           text PRIMARY KEY,
  kind         text NOT NULL,
  org_id       text NOT NULL,
  parent_id    text,
  name         text NOT NULL,
  description  text NOT NULL DEFAULT '',
  labels       jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL,
  created_by   text NOT NULL,
  updated_at   timestamptz NOT NULL,
  deleted_at   timestamptz,
  deleted_by   text,
  version      bigint NOT NULL,            -- stream version last folded
  last_operation text NOT NULL
);
CREATE INDEX resources_by_parent ON read_model.resources (kind, parent_id, name);
CREATE INDEX resources_by_org ON read_model.resources (org_id, kind);

CREATE TABLE read_model.operations (
  id            text PRIMARY KEY,
  org_id        text NOT NULL,
  kind          text NOT NULL,             -- e.g. app.create
  actor         text NOT NULL,
  resource_id   text NOT NULL DEFAULT '',
  request_id    text NOT NULL DEFAULT '',
  started_at    timestamptz NOT NULL,
  finished_at   timestamptz NOT NULL,
  event_count   integer NOT NULL,
  first_position bigint NOT NULL,
  last_tx_id    xid8 NOT NULL,
  last_position bigint NOT NULL
);
CREATE INDEX operations_by_org ON read_model.operations (org_id, started_at DESC);
