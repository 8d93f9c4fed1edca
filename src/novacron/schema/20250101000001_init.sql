-- Schema after NovaCron's database/migrations/000001_init_schema (spec §4.7), kept to SQL that
-- SQLite and PostgreSQL both accept so one migration set serves both stores. Timestamps are
-- epoch milliseconds (BIGINT) and tags are JSON text: portable, and cheap to sort and compare.
CREATE TABLE vms (
    id         TEXT PRIMARY KEY,
    -- Not unique: the upstream DB test creates batch-vm-1..3 on every iteration.
    name       TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'running',
    zone       TEXT NOT NULL DEFAULT 'us-west-1',
    cpu_cores  BIGINT NOT NULL DEFAULT 2,
    memory_mb  BIGINT NOT NULL DEFAULT 4096,
    disk_gb    BIGINT NOT NULL DEFAULT 50,
    image      TEXT NOT NULL DEFAULT 'ubuntu-22.04',
    tags       TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The filtered list (zone + status, newest first) and the plain list (created_at order).
CREATE INDEX idx_vms_zone_state_created ON vms (zone, state, created_at);
CREATE INDEX idx_vms_created ON vms (created_at);
CREATE INDEX idx_vms_state ON vms (state);
CREATE INDEX idx_vms_name ON vms (name);

-- DWCP v3 migration jobs. Status and phase are derived at read time from the planned times,
-- so no task runs per job; `status`, `finalized` and `completed_at` are written once by the
-- sweeper so every worker process agrees on the final counts.
CREATE TABLE migrations (
    job_id           TEXT PRIMARY KEY,
    vm_id            TEXT NOT NULL,
    source_zone      TEXT NOT NULL,
    target_zone      TEXT NOT NULL,
    protocol         TEXT NOT NULL,
    live_migration   BOOLEAN NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    data_loss        BOOLEAN NOT NULL DEFAULT FALSE,
    started_at       BIGINT NOT NULL,
    pending_until    BIGINT NOT NULL,
    completes_at     BIGINT NOT NULL,
    fails            BOOLEAN NOT NULL,
    finalized        BOOLEAN NOT NULL DEFAULT FALSE,
    completed_at     BIGINT,
    error_message    TEXT
);
CREATE INDEX idx_migrations_vm ON migrations (vm_id);
CREATE INDEX idx_migrations_completes ON migrations (completes_at);
CREATE INDEX idx_migrations_unfinalized ON migrations (finalized, completes_at);
CREATE INDEX idx_migrations_started ON migrations (started_at);
