-- Instance logs (docs/logs.md): every line an instance wrote to stdout or stderr, shipped by its agent in
-- batches. A line is identified by its run, stream and byte offset, so a resent batch (after an agent
-- restart the agent reads a run's files from the start again) stores nothing twice. Kept for the
-- retention period (platformd serve --log-retention), then removed by the reconcilers role.
CREATE TABLE core.log_lines (
  id            bigserial PRIMARY KEY,
  org_id        text NOT NULL,
  env_id        text NOT NULL,
  instance_id   text NOT NULL,
  instance_name text NOT NULL,
  process       text NOT NULL,
  run           text NOT NULL,            -- "<instance id>-r<n>": one run of the instance
  stream        text NOT NULL CHECK (stream IN ('stdout', 'stderr')),
  byte_offset   bigint NOT NULL,
  at            timestamptz NOT NULL,     -- when the agent read the line
  message       text NOT NULL,
  tx_id         xid8 NOT NULL DEFAULT pg_current_xact_id(),  -- readers follow by (tx_id, id), as for events
  UNIQUE (run, stream, byte_offset)
);
CREATE INDEX log_lines_by_env ON core.log_lines (env_id, tx_id, id);
CREATE INDEX log_lines_by_time ON core.log_lines (at);
