-- Events written by the API now carry the acting user's name in the metadata (actor_name) beside the
-- user's id (actor), so `platform events`, `operation describe` and these views say who in words. For
-- older events, and for actors that are not users (host:NAME, the scheduler), the views look the user
-- up, or show the actor as it is.
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
       e.data,
       coalesce(e.metadata->>'actor_name', u.name, e.metadata->>'actor') AS actor_name
FROM events e
LEFT JOIN core.users u ON u.id = e.metadata->>'actor';

CREATE OR REPLACE VIEW audit.operations AS
SELECT e.metadata->>'operation_id'                        AS operation_id,
       min(e.metadata->>'operation_kind')                 AS kind,
       min(e.metadata->>'actor')                          AS actor,
       min(e.metadata->>'org_id')                         AS org_id,
       string_agg(DISTINCT e.metadata->>'resource_kind' || ' ' || (e.metadata->>'resource_id'), ', ')
                                                          AS resources,
       string_agg(e.type, ', ' ORDER BY e.global_position) AS event_types,
       count(*)                                           AS events,
       min(e.recorded_at)                                 AS started_at,
       max(e.recorded_at)                                 AS finished_at,
       min(e.metadata->>'request_id')                     AS request_id,
       min(coalesce(e.metadata->>'actor_name', u.name, e.metadata->>'actor')) AS actor_name
FROM events e
LEFT JOIN core.users u ON u.id = e.metadata->>'actor'
WHERE e.metadata ? 'operation_id'
GROUP BY e.metadata->>'operation_id';
