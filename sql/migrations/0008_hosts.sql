-- Hosts: machines running platform-agent. They belong to the platform, not to an org: only platform
-- operators (core.users.is_operator) may issue join tokens and see hosts; to everyone else they do
-- not exist (404). Liveness is a mutable row (a heartbeat every few seconds would flood the log); its
-- transitions (up, down) are events in the stream host-<id> (docs/hosts.md).

ALTER TABLE core.users ADD COLUMN is_operator boolean NOT NULL DEFAULT false;

-- Single-use, expiring enrolment secrets; only a SHA-256 hash is stored.
CREATE TABLE core.host_join_tokens (
  id          text PRIMARY KEY,
  secret_hash text NOT NULL UNIQUE,
  created_by  text NOT NULL REFERENCES core.users(id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_by     text,            -- the host it enrolled
  used_at     timestamptz
);

CREATE TABLE core.hosts (
  id              text PRIMARY KEY,
  name            text NOT NULL UNIQUE,
  credential_hash text NOT NULL UNIQUE,  -- the agent's credential, hashed
  join_token_id   text NOT NULL REFERENCES core.host_join_tokens(id),
  enrolled_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE core.host_liveness (
  host_id   text PRIMARY KEY REFERENCES core.hosts(id),
  state     text NOT NULL CHECK (state IN ('up', 'down')),
  last_seen timestamptz NOT NULL,
  report    jsonb NOT NULL,       -- the newest heartbeat: capacity, runtime and why
  changed_at timestamptz NOT NULL  -- when state last changed
);
