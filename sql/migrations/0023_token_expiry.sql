-- Tokens users manage themselves (docs/tokens.md): `platform token create --ttl 90d` gives one an end, and
-- a revoked one records who revoked it. A token without expires_at never expires.
ALTER TABLE core.tokens ADD COLUMN expires_at timestamptz;
ALTER TABLE core.tokens ADD COLUMN revoked_by text;
CREATE INDEX tokens_by_user ON core.tokens (user_id, created_at);
