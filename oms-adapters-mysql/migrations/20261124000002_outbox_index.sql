-- The DLQ outbox holds FAILED outcomes only: COMPLETED rows are
-- `dead_lettered = FALSE` too, so the index leads with the status.
DROP INDEX order_outcomes_outbox ON order_outcomes;
CREATE INDEX order_outcomes_outbox ON order_outcomes (status, dead_lettered, created_at);
