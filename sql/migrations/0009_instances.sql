-- Instances (docs/instances.md): what the scheduler wants run where, and what the agents say happens.
-- Like host liveness, these are command-side rows written in the same transaction as the events that
-- explain them: the scheduler appends InstancePlaced / InstanceStopRequested / InstanceLost to
-- instances-<env id>; agents' reports (InstanceStarted, InstanceExited ...) go to instance-<id>.

-- What each env runs: its release (set by deploy and rollback with EnvReleaseSet) and the counts and
-- sizes `platform scale` set over the manifest's (ProcessScaled).
CREATE TABLE core.env_runtime (
  env_id     text PRIMARY KEY REFERENCES core.resources(id),
  org_id     text NOT NULL,
  release_id text REFERENCES core.releases(id),
  scale      jsonb NOT NULL DEFAULT '{}'::jsonb,   -- process -> {count, memory_mib, cpu}
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Envs deployed before this migration: their newest EnvReleaseSet.
INSERT INTO core.env_runtime (env_id, org_id, release_id)
SELECT DISTINCT ON (e.stream_name) e.data->>'env_id', e.metadata->>'org_id', e.data->>'release_id'
FROM events e
WHERE e.category = 'releases' AND e.type = 'EnvReleaseSet'
ORDER BY e.stream_name, e.stream_version DESC;

-- Bumped whenever an instance's desired state changes: a host's assignment version is the largest
-- among its instances, so an agent's long poll knows when its set changed.
CREATE SEQUENCE core.assignment_versions;

CREATE TABLE core.instances (
  id             text PRIMARY KEY,
  name           text NOT NULL,                  -- "<process>-<ordinal>", never reused in its env
  ordinal        integer NOT NULL,
  org_id         text NOT NULL,
  app_id         text NOT NULL,
  env_id         text NOT NULL REFERENCES core.resources(id),
  process        text NOT NULL,
  release_id     text NOT NULL REFERENCES core.releases(id),
  host_id        text NOT NULL REFERENCES core.hosts(id),
  cpu            double precision NOT NULL,
  memory_mib     bigint NOT NULL,
  desired        text NOT NULL CHECK (desired IN ('run', 'stop')),
  desired_reason text NOT NULL,                  -- why placed, or why asked to stop
  assign_version bigint NOT NULL,
  -- What the agent reported last (report_seq orders reports; an older one never overwrites a newer).
  state          text NOT NULL DEFAULT 'assigned'
                 CHECK (state IN ('assigned', 'starting', 'running', 'exited', 'restarting', 'failed',
                                  'stopped', 'lost')),
  health         text NOT NULL DEFAULT 'unknown'
                 CHECK (health IN ('unknown', 'none', 'starting', 'healthy', 'unhealthy')),
  restarts       integer NOT NULL DEFAULT 0,
  last_exit      jsonb,                          -- {exit_code, signal, oom, reason, at}
  state_reason   text NOT NULL DEFAULT '',
  report_seq     bigint NOT NULL DEFAULT 0,
  created_at     timestamptz NOT NULL DEFAULT now(),
  started_at     timestamptz,
  state_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (env_id, name)
);
-- The scheduler's and the agents' working sets: instances not yet finished.
CREATE INDEX instances_active_by_env ON core.instances (env_id) WHERE state NOT IN ('stopped', 'lost');
CREATE INDEX instances_active_by_host ON core.instances (host_id) WHERE state NOT IN ('stopped', 'lost');
CREATE INDEX instances_by_host_version ON core.instances (host_id, assign_version);

-- Processes the scheduler could not place, with the reason in words; cleared once placed.
CREATE TABLE core.unschedulable (
  env_id     text NOT NULL REFERENCES core.resources(id),
  process    text NOT NULL,
  release_id text NOT NULL,
  missing    integer NOT NULL,
  reason     text NOT NULL,
  since      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (env_id, process)
);

-- For psql: every instance with its app, env, host and states.
CREATE VIEW audit.instances AS
SELECT i.id, i.name, a.name AS app, e.name AS env, i.process, r.number AS release, h.name AS host,
       i.desired, i.state, i.health, i.restarts, i.state_reason, i.desired_reason, i.created_at, i.state_at
FROM core.instances i
JOIN core.resources e ON e.id = i.env_id
JOIN core.resources a ON a.id = i.app_id
JOIN core.releases r ON r.id = i.release_id
JOIN core.hosts h ON h.id = i.host_id;
