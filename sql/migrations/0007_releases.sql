-- Releases: the immutable tuple (image digest, manifest hash, config version, secrets version) an env
-- runs, numbered per env. Written only by the deploy command, in the same transaction as its
-- ReleaseCreated event; never changed afterwards (the trigger below refuses it, psql included).
-- Which release an env runs is not stored here: it is the newest EnvReleaseSet event of the stream
-- releases-<env id> (docs/releases.md).

CREATE TABLE core.releases (
  id              text PRIMARY KEY,
  org_id          text NOT NULL,
  app_id          text NOT NULL,
  env_id          text NOT NULL REFERENCES core.resources(id),
  number          integer NOT NULL CHECK (number > 0),
  content_hash    text NOT NULL,   -- sha256 over the four parts below: equal content, equal hash
  image_digest    text NOT NULL CHECK (image_digest ~ '^sha256:[0-9a-f]{64}$'),
  image           jsonb NOT NULL,  -- ref, registry, repository, tag, media type, index and config digests
  manifest_hash   text NOT NULL CHECK (manifest_hash ~ '^sha256:[0-9a-f]{64}$'),
  manifest        jsonb NOT NULL,  -- the normalised manifest for this env (what the hash covers)
  manifest_source text NOT NULL,   -- the platform.toml as deployed
  config_version  integer NOT NULL CHECK (config_version >= 0),
  secrets_version integer NOT NULL CHECK (secrets_version >= 0),
  created_at      timestamptz NOT NULL DEFAULT now(),
  created_by      text NOT NULL,
  operation_id    text NOT NULL,
  UNIQUE (env_id, number),
  UNIQUE (env_id, content_hash)
);

CREATE FUNCTION core.refuse_release_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'releases are immutable: % on core.releases is refused', TG_OP
    USING ERRCODE = 'PI002',
          HINT = 'Deploy a new release, or roll back to an existing one (platform rollback).';
END $$;

CREATE TRIGGER releases_immutable BEFORE UPDATE OR DELETE ON core.releases
  FOR EACH ROW EXECUTE FUNCTION core.refuse_release_change();
CREATE TRIGGER releases_no_truncate BEFORE TRUNCATE ON core.releases
  FOR EACH STATEMENT EXECUTE FUNCTION core.refuse_release_change();

-- For psql: every release with its env and app names.
CREATE VIEW audit.releases AS
SELECT r.id, r.number, a.name AS app, e.name AS env, r.image->>'ref' AS image_ref, r.image_digest,
       r.manifest_hash, r.config_version, r.secrets_version, r.created_at, r.created_by, r.operation_id
FROM core.releases r
JOIN core.resources e ON e.id = r.env_id
JOIN core.resources a ON a.id = r.app_id;

-- For psql: every time an env was pointed at a release (deploys and rollbacks), newest last.
CREATE VIEW audit.deploys AS
SELECT ev.global_position AS position, ev.recorded_at AS at, ev.metadata->>'actor' AS actor,
       ev.data->>'env_id' AS env_id, ev.data->>'release_id' AS release_id,
       (ev.data->>'number')::integer AS number, ev.data->>'reason' AS reason,
       ev.data->>'previous_release_id' AS previous_release_id, ev.metadata->>'operation_id' AS operation_id
FROM events ev
WHERE ev.category = 'releases' AND ev.type = 'EnvReleaseSet';
