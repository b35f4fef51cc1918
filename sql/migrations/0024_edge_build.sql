-- The build each host's edge runs, as its status report says ({"version", "commit"}; engine/version.h),
-- so `platform host describe` and `platform exposure` show a fleet that runs more than one build. Null
-- until the edge reports it (a platform-edge older than this field never does).
ALTER TABLE core.edge_config ADD COLUMN build jsonb;

COMMENT ON COLUMN core.edge_config.build IS
  'The build of the edge on this host, {"version", "commit"}, from its last status report.';
