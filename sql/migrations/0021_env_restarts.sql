-- `platform restart`: a rolling restart of an env's instances (docs/instances.md#platform-restart).
-- restarts maps a process to when its last restart was asked for; an instance of that process placed
-- before then is replaced like an instance of an old release (a new one starts, the old one stops once
-- the new one is healthy).
ALTER TABLE core.env_runtime ADD COLUMN restarts jsonb NOT NULL DEFAULT '{}'::jsonb;
