-- Addresses and exposure (docs/network.md). Command-side rows written in the same transaction as the
-- events that explain them (IpAllocated, IpReleased to ips-<env id>; EndpointCreated, EndpointDeleted to
-- endpoints-<env id>).

-- The pools IPAM allocates from, as `platformd serve` was configured (upserted at every start):
--   ipv6     each app env's dedicated IPv6 address (allocated by default, at its first deploy)
--   ipv4     the paid IPv4 add-on (scarce: allocated only when asked, with its monthly price)
--   instance each instance's private address, on its veth or tap, where the edge reaches it
CREATE TABLE core.ip_pools (
  kind              text PRIMARY KEY CHECK (kind IN ('ipv6', 'ipv4', 'instance')),
  cidr              cidr NOT NULL,
  price_cents_month integer NOT NULL DEFAULT 0 CHECK (price_cents_month >= 0),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE core.ip_allocations (
  id                text PRIMARY KEY,                  -- ip_...
  org_id            text NOT NULL,
  env_id            text NOT NULL REFERENCES core.resources(id),
  family            integer NOT NULL CHECK (family IN (4, 6)),
  address           inet NOT NULL,
  price_cents_month integer NOT NULL DEFAULT 0,        -- as stated when it was allocated
  allocated_at      timestamptz NOT NULL DEFAULT now(),
  allocated_by      text NOT NULL,
  operation_id      text NOT NULL,
  released_at       timestamptz,
  released_by       text,
  CHECK (family(address) = family)
);
-- No address is held twice, and an env holds at most one address of each family.
CREATE UNIQUE INDEX ip_allocations_live_address ON core.ip_allocations (address) WHERE released_at IS NULL;
CREATE UNIQUE INDEX ip_allocations_live_env ON core.ip_allocations (env_id, family) WHERE released_at IS NULL;

-- Billing: one row per started hour of every priced allocation (the IPv4 add-on), written by
-- core.meter_ip_usage(); an hour is never recorded twice.
CREATE TABLE core.ip_usage (
  allocation_id     text NOT NULL REFERENCES core.ip_allocations(id),
  hour              timestamptz NOT NULL,
  org_id            text NOT NULL,
  env_id            text NOT NULL,
  address           inet NOT NULL,
  price_cents_month integer NOT NULL,
  PRIMARY KEY (allocation_id, hour)
);

CREATE FUNCTION core.meter_ip_usage() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
  INSERT INTO core.ip_usage (allocation_id, hour, org_id, env_id, address, price_cents_month)
  SELECT a.id, h, a.org_id, a.env_id, a.address, a.price_cents_month
  FROM core.ip_allocations a,
       generate_series(date_trunc('hour', a.allocated_at),
                       coalesce(a.released_at, now()) - interval '1 microsecond', interval '1 hour') AS h
  WHERE a.price_cents_month > 0
  ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;

-- Instances get a private address from the instance pool when placed (NULL: no pool configured).
ALTER TABLE core.instances ADD COLUMN address inet;
CREATE UNIQUE INDEX instances_live_address ON core.instances (address)
  WHERE address IS NOT NULL AND state NOT IN ('stopped', 'lost');

-- The lowest free address of a pool, the pool's row locked until the transaction ends, so concurrent
-- allocations from one pool take turns and never pick the same address. Candidates are the first
-- address and the one after each address in use, so the cost grows with the addresses in use, not with
-- the pool's size. The network address and (for IPv4 pools wider than /31) the broadcast address are
-- never given. NULL when the pool is full or not configured.
CREATE FUNCTION core.next_free_address(p_kind text) RETURNS inet LANGUAGE plpgsql AS $$
DECLARE
  pool cidr;
  bits integer;
  span numeric;
  found bigint;
BEGIN
  SELECT cidr INTO pool FROM core.ip_pools WHERE kind = p_kind FOR UPDATE;
  IF pool IS NULL THEN RETURN NULL; END IF;
  bits := (CASE WHEN family(pool) = 4 THEN 32 ELSE 128 END) - masklen(pool);
  span := 2::numeric ^ bits;                                  -- addresses in the pool
  IF family(pool) = 4 AND bits > 1 THEN span := span - 1; END IF;  -- not the broadcast
  WITH used AS (
    SELECT a.address - network(pool) AS o FROM core.ip_allocations a
    WHERE a.released_at IS NULL AND a.address << pool
    UNION
    SELECT i.address - network(pool) FROM core.instances i
    WHERE i.address IS NOT NULL AND i.state NOT IN ('stopped', 'lost') AND i.address << pool
  )
  SELECT c.o INTO found
  FROM (SELECT 1::bigint AS o UNION SELECT u.o + 1 FROM used u) c
  WHERE c.o < span AND NOT EXISTS (SELECT 1 FROM used u WHERE u.o = c.o)
  ORDER BY c.o LIMIT 1;
  IF found IS NULL THEN RETURN NULL; END IF;
  RETURN host(network(pool) + found)::inet;
END $$;

-- The same, raising PC002 when the pool is not configured and PC001 when it is full.
CREATE FUNCTION core.free_address(p_kind text) RETURNS inet LANGUAGE plpgsql AS $$
DECLARE
  pool cidr;
  found inet;
BEGIN
  SELECT cidr INTO pool FROM core.ip_pools WHERE kind = p_kind;
  IF pool IS NULL THEN
    RAISE EXCEPTION 'no % address pool is configured on this platform', p_kind USING ERRCODE = 'PC002';
  END IF;
  found := core.next_free_address(p_kind);
  IF found IS NULL THEN
    RAISE EXCEPTION 'the % address pool % is full', p_kind, pool USING ERRCODE = 'PC001';
  END IF;
  RETURN found;
END $$;

-- What each env exposes is claimed here, so two envs never hold the same thing: a port on an env's
-- address ("<env id>/<port>") or an SNI host name on the shared TLS listener. Manifest claims are
-- replaced at every deploy and rollback; CLI claims live as long as their endpoint.
CREATE TABLE core.exposure_claims (
  kind    text NOT NULL CHECK (kind IN ('port', 'hostname')),
  key     text NOT NULL,
  env_id  text NOT NULL REFERENCES core.resources(id),
  org_id  text NOT NULL,
  source  text NOT NULL CHECK (source IN ('manifest', 'cli')),
  PRIMARY KEY (kind, key)
);
CREATE INDEX exposure_claims_by_env ON core.exposure_claims (env_id);

-- Endpoints made with `platform endpoint create` (the manifest's own are in its release).
CREATE TABLE core.endpoints (
  id             text PRIMARY KEY,                  -- ep_...
  org_id         text NOT NULL,
  env_id         text NOT NULL REFERENCES core.resources(id),
  name           text NOT NULL,
  port           integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
  internal_port  integer NOT NULL CHECK (internal_port BETWEEN 1 AND 65535),
  process        text NOT NULL,
  proxy_protocol text NOT NULL DEFAULT '' CHECK (proxy_protocol IN ('', 'v2')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  created_by     text NOT NULL,
  deleted_at     timestamptz
);
CREATE UNIQUE INDEX endpoints_live_name ON core.endpoints (env_id, name) WHERE deleted_at IS NULL;

-- The snapshot version of the edge on each host (it serves that host's instances): bumped whenever
-- what that edge must serve changes.
CREATE TABLE core.edge_config (
  host_id      text PRIMARY KEY REFERENCES core.hosts(id),
  version      bigint NOT NULL,
  content_hash text NOT NULL,
  changed_at   timestamptz NOT NULL DEFAULT now()
);

-- For psql: every address with its app and env, live or released.
CREATE VIEW audit.ip_allocations AS
SELECT a.id, a.family, a.address, o.name AS org, ap.name AS app, e.name AS env, a.price_cents_month,
       a.allocated_at, a.allocated_by, a.released_at, a.released_by, a.operation_id
FROM core.ip_allocations a
JOIN core.resources e ON e.id = a.env_id
JOIN core.resources ap ON ap.id = e.parent_id
JOIN core.resources o ON o.id = a.org_id;
