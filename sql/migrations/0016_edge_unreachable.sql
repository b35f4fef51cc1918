-- The backends the edge on each host cannot connect to, as it reports them (POST /v1/edge/status): an
-- instance that passes its health check but refuses the edge, e.g. because its process does not listen
-- on the endpoint's internal port. [{target, address, port, error, failures}]: target is the endpoint's
-- or route's id in the edge's snapshot; failures, the attempts in a row that failed.
ALTER TABLE core.edge_config
  ADD COLUMN unreachable jsonb NOT NULL DEFAULT '[]'::jsonb;
