-- An unschedulable verdict is about one version of an env's desired spec (its release and scale, as
-- core.env_runtime.updated_at names it). A scheduler pass that read the spec before a deploy or scale
-- committed may still write a verdict about the old spec after it: status shows only verdicts whose
-- spec_at is the env's current one, so `platform wait` never reports a size the env no longer asks for.
ALTER TABLE core.unschedulable ADD COLUMN spec_at timestamptz;
