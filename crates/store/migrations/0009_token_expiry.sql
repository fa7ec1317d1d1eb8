-- Login tokens expire and slide: `renew_secs` is set on the tokens that
-- `POST /auth/login` and `POST /setup` issue, and each use pushes their
-- `expires_at` to now + renew_secs (written at most once an hour). NULL:
-- a fixed expiry (or none), as chosen when the token was created.
ALTER TABLE tokens ADD COLUMN renew_secs INTEGER;

-- Login and setup tokens issued before this migration never expired: they
-- get the default 30-day sliding expiry from now on (by their default names:
-- `login`, `setup` and the CLI's `cli@<host>`).
UPDATE tokens
SET renew_secs = 2592000,
    expires_at = strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '+30 days')
WHERE expires_at IS NULL AND revoked_at IS NULL
  AND (name IN ('login', 'setup') OR name LIKE 'cli@%');
