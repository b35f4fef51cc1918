-- Events now carry their resource's name in the metadata (resource_name), written by the API and the
-- scheduler, so an env's ConfigVersionCreated, EnvReleaseSet or IpAllocated names the env, not only its
-- id. Older events keep what they had: the name in the data of a resource's own events (create, delete).
CREATE OR REPLACE VIEW audit.events AS
SELECT e.global_position                      AS position,
       e.recorded_at                          AS at,
       e.metadata->>'actor'                   AS actor,
       e.type,
       e.metadata->>'resource_kind'           AS resource_kind,
       e.metadata->>'resource_id'             AS resource_id,
       coalesce(e.metadata->>'resource_name', e.data->>'name', '') AS resource_name,
       e.metadata->>'org_id'                  AS org_id,
       e.metadata->>'operation_id'            AS operation_id,
       e.metadata->>'request_id'              AS request_id,
       e.stream_name                          AS stream,
       e.stream_version                       AS version,
       e.tx_id,
       e.event_id,
       e.data
FROM events e;
