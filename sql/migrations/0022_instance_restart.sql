-- `platform instance restart NAME`: one instance to be replaced by a new one (docs/instances.md#platform-restart).
-- The scheduler replaces it as it does an instance placed before its process's last `platform restart`.
ALTER TABLE core.instances ADD COLUMN restart_asked boolean NOT NULL DEFAULT false;
