-- `platform exec -i` / `-it`: an interactive session in a running instance (docs/instances.md#sessions).
-- The API writes the session (and appends InstanceSessionOpened); the agent of the instance's host takes
-- it, starts the command (on a terminal with -t) and relays its bytes. Bytes go both ways as numbered
-- chunks through exec_session_chunks; each insert sends NOTIFY platform_sessions '<id>:i' (input, for
-- the agent) or '<id>:o' (output, for the CLI), which wakes the long poll waiting on that side in any API
-- process. A reader acknowledges chunks by asking for the ones after them; acknowledged ones are deleted.
-- Keystrokes never enter the event log: it only says who opened what, and how it ended.
CREATE TABLE core.exec_sessions (
  id               text PRIMARY KEY,                 -- ses_…
  org_id           text NOT NULL,
  env_id           text NOT NULL,
  instance_id      text NOT NULL REFERENCES core.instances(id),
  host_id          text NOT NULL REFERENCES core.hosts(id),
  command          jsonb NOT NULL,                   -- argv
  env              jsonb NOT NULL DEFAULT '{}'::jsonb,
  tty              boolean NOT NULL,
  rows             integer NOT NULL CHECK (rows BETWEEN 1 AND 1000),
  cols             integer NOT NULL CHECK (cols BETWEEN 1 AND 1000),
  requested_by     text NOT NULL,
  requested_at     timestamptz NOT NULL DEFAULT now(),
  taken_at         timestamptz,                      -- the agent took it
  client_seen_at   timestamptz NOT NULL DEFAULT now(), -- the CLI's last request
  agent_seen_at    timestamptz,                      -- the agent's last request
  close_requested  boolean NOT NULL DEFAULT false,   -- the CLI ended it
  finished_at      timestamptz,
  exit_code        integer,
  error            text                              -- why it could not run, or why it ended without a status
);
CREATE INDEX exec_sessions_waiting ON core.exec_sessions (host_id) WHERE taken_at IS NULL;

-- Unlogged: the bytes of a live terminal are not worth a WAL flush per keystroke, and a database crash
-- loses nothing the sessions could still use.
CREATE UNLOGGED TABLE core.exec_session_chunks (
  session_id text NOT NULL,
  stream     "char" NOT NULL CHECK (stream IN ('i', 'o')),  -- i: to the command; o: from it
  seq        bigint NOT NULL CHECK (seq > 0),                -- numbered by the writer, from 1
  data       bytea NOT NULL DEFAULT ''::bytea,
  rows       integer,                                        -- a terminal resize (input only)
  cols       integer,
  eof        boolean NOT NULL DEFAULT false,                 -- the end of the input
  PRIMARY KEY (session_id, stream, seq)
);
