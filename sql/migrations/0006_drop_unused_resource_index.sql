-- events_resource_idx never served a query: the resource filter matches resource_id OR parent_id, and
-- with only one side indexed PostgreSQL scans by cursor instead. It still cost every append an index
-- insert (about a tenth of the append rate with 16 writers). Reads by resource use the cursor index
-- plus the filter, which is what they already did.
DROP INDEX IF EXISTS events_resource_idx;

