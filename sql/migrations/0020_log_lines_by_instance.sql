-- An instance's own lines, newest first: what `platform instance describe` and `platform status` show as
-- the last output of an instance that exits or fails its checks, and `platform logs --instance`.
CREATE INDEX log_lines_by_instance ON core.log_lines (instance_id, id);
