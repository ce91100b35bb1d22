-- Rows a check run's blocking rules moved to quarantine.

ALTER TABLE check_runs ADD COLUMN rows_blocked BIGINT NOT NULL DEFAULT 0;
