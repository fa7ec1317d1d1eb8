-- Memory and CPU limits each CI step's container runs with (issue 16):
-- shown by `slipway pipeline show`; NULL for steps recorded before limits.
ALTER TABLE pipeline_steps ADD COLUMN memory_bytes INTEGER;
ALTER TABLE pipeline_steps ADD COLUMN nano_cpus INTEGER;
