-- What the edge on each host actually serves, as it reports it (POST /v1/edge/status) and as its long
-- polls show (seen_at): the snapshot version it applied, the listeners of that snapshot it could not
-- bind (another process holds the address and port on that host, or the address is not there), and the
-- newest snapshot it refused to apply, with why.
-- `platform exposure` compares it with `version`, the snapshot the control plane wants served.
ALTER TABLE core.edge_config
  ADD COLUMN applied_version bigint,
  ADD COLUMN unbound         jsonb NOT NULL DEFAULT '[]'::jsonb,  -- [{address, port, kind, error}]
  ADD COLUMN refused         jsonb,                               -- {version, error}, or null
  ADD COLUMN reported_at     timestamptz,
  ADD COLUMN seen_at         timestamptz;

COMMENT ON COLUMN core.edge_config.seen_at IS
  'When the edge last asked for its config (it asks at least every 20 s): an old value means no edge runs there.';
