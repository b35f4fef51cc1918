-- `platform exec`: a command to run inside a running instance (docs/instances.md#exec). The API writes
-- the request (and appends InstanceExecRequested), the agent of the instance's host takes it, runs it in
-- the instance's current run and writes the result (and appends InstanceExecFinished); the waiting
-- request answers with it. A request and its output are deleted an hour after it was made (the host
-- liveness reconciler's housekeeping); who ran what, when and how it ended stays in the event log.
CREATE TABLE core.exec_requests (
  id           text PRIMARY KEY,                 -- exec_…
  org_id       text NOT NULL,
  env_id       text NOT NULL,
  instance_id  text NOT NULL REFERENCES core.instances(id),
  host_id      text NOT NULL REFERENCES core.hosts(id),
  command      jsonb NOT NULL,                   -- argv
  env          jsonb NOT NULL DEFAULT '{}'::jsonb,
  timeout_ms   integer NOT NULL CHECK (timeout_ms BETWEEN 1000 AND 600000),
  requested_by text NOT NULL,
  requested_at timestamptz NOT NULL DEFAULT now(),
  taken_at     timestamptz,                      -- the agent took it
  finished_at  timestamptz,
  exit_code    integer,
  timed_out    boolean,
  output       bytea,                            -- stdout and stderr as they came, capped
  truncated    boolean,
  error        text                              -- the agent could not run it: why
);
CREATE INDEX exec_requests_waiting ON core.exec_requests (host_id) WHERE taken_at IS NULL;
