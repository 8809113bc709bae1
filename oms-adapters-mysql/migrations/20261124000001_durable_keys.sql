-- The binding of a member's Idempotency-Key to the one trace that stands for
-- it, written in the placement transaction: a second trace with the same key
-- places nothing (FAILED DUPLICATE), even after the cache forgot the key.
-- Keys are case-sensitive ASCII.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    member_id  BIGINT      NOT NULL,
    idem_key   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    trace_id   CHAR(36)    NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (member_id, idem_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The DLQ outbox: FAILED outcomes whose DLQ record is not confirmed yet.
CREATE INDEX order_outcomes_outbox ON order_outcomes (dead_lettered, created_at);
