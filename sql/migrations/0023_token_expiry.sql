-- Tokens users manage themselves (docs/tokens.md): `platform token create --ttl 90d` gives one an end, a
-- revoked one records who revoked it, and last_used_at (to the minute) tells which ones are still in use.
-- A token without expires_at never expires.
ALTER TABLE core.tokens ADD COLUMN expires_at timestamptz;
ALTER TABLE core.tokens ADD COLUMN revoked_by text;
ALTER TABLE core.tokens ADD COLUMN last_used_at timestamptz;
CREATE INDEX tokens_by_user ON core.tokens (user_id, created_at);
