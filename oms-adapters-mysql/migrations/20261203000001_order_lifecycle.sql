-- The order life cycle: PENDING_PAYMENT → PAID | CANCELLED | EXPIRED,
-- PAID → REFUNDED. Instants are UTC, kept to the millisecond.
--
-- payment_due_at: when an unpaid order expires (placement writes it).
-- payment_key, payment_amount, approved_at: the approved payment (PAID and
-- REFUNDED orders).
-- payment_claim, claimed_at: the paymentKey of a confirmation under way or
-- in doubt, and when it was claimed; while set, the order is neither
-- expired nor cancelled. Payment keys are case-sensitive ASCII.
ALTER TABLE orders
    ADD COLUMN payment_due_at DATETIME(3)  NULL,
    ADD COLUMN payment_key    VARCHAR(200) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD COLUMN payment_amount BIGINT       NULL,
    ADD COLUMN approved_at    DATETIME(3)  NULL,
    ADD COLUMN payment_claim  VARCHAR(200) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD COLUMN claimed_at     DATETIME(3)  NULL;

-- Orders placed before payments existed are due 10 minutes after placement,
-- and `ORDERED` is now `PENDING_PAYMENT` (15 characters: `status` is
-- VARCHAR(16) already).
UPDATE orders SET payment_due_at = order_date + INTERVAL 10 MINUTE
    WHERE payment_due_at IS NULL;
UPDATE orders SET status = 'PENDING_PAYMENT' WHERE status = 'ORDERED';

-- One rebuild: the due time becomes mandatory, with the expirer's index
-- (unclaimed PENDING_PAYMENT orders by due time) and the reconciler's
-- (claims by age; cleared claims are NULL and out of its range).
ALTER TABLE orders
    MODIFY COLUMN payment_due_at DATETIME(3) NOT NULL,
    ADD INDEX orders_payment_due (status, payment_due_at),
    ADD INDEX orders_claimed (claimed_at);

-- The outbox of status changes, written in the transaction of the change.
-- A relay leases unpublished events (leased_by, lease_until: a lease that
-- ran out passes to the next relay) and marks them published. Relay names
-- compare byte for byte.
CREATE TABLE IF NOT EXISTS order_events (
    id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id     BIGINT      NOT NULL,
    member_id    BIGINT      NOT NULL,
    from_status  VARCHAR(16) NOT NULL,
    to_status    VARCHAR(16) NOT NULL,
    `at`         DATETIME(3) NOT NULL,
    leased_by    VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    lease_until  DATETIME(3) NULL,
    published_at DATETIME(3) NULL,
    KEY order_events_unpublished (published_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
