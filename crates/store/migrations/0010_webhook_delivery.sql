-- The outcome of a repository webhook's last delivery, shown in its listing:
-- a refused target (e.g. a name resolving to a private address) or a failing
-- receiver is visible to the repository's admins, not only in the server log.
ALTER TABLE repo_webhooks ADD COLUMN last_status TEXT;
ALTER TABLE repo_webhooks ADD COLUMN last_error TEXT;
ALTER TABLE repo_webhooks ADD COLUMN last_delivery_at TEXT;
