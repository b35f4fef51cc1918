-- Views for auditing with psql. Documented in docs/audit.md.

CREATE SCHEMA audit;

-- Who did what, when, to which resource, as part of which operation.
CREATE VIEW audit.events AS
SELECT e.global_position                      AS position,
       e.recorded_at                          AS at,
       e.metadata->>'actor'                   AS actor,
       e.type,
       e.metadata->>'resource_kind'           AS resource_kind,
       e.metadata->>'resource_id'             AS resource_id,
       coalesce(e.data->>'name', '')          AS resource_name,
       e.metadata->>'org_id'                  AS org_id,
       e.metadata->>'operation_id'            AS operation_id,
       e.metadata->>'request_id'              AS request_id,
       e.stream_name                          AS stream,
       e.stream_version                       AS version,
       e.tx_id,
       e.event_id,
       e.data
FROM events e;

-- One row per operation (a mutation accepted by the API): who asked, what it touched, when.
CREATE VIEW audit.operations AS
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
       min(e.metadata->>'request_id')                     AS request_id
FROM events e
WHERE e.metadata ? 'operation_id'
GROUP BY e.metadata->>'operation_id';
