CREATE TABLE IF NOT EXISTS products (
    id          BIGINT       NOT NULL PRIMARY KEY,
    name        VARCHAR(255) NOT NULL,
    price       BIGINT       NOT NULL,
    stock       BIGINT       NOT NULL,
    version     BIGINT       NOT NULL DEFAULT 0,
    CONSTRAINT products_stock_not_negative CHECK (stock >= 0),
    CONSTRAINT products_price_positive CHECK (price > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS orders (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    trace_id         CHAR(36)     NOT NULL,
    member_id        BIGINT       NOT NULL,
    status           VARCHAR(16)  NOT NULL,
    order_date       DATETIME(6)  NOT NULL,
    total_price      BIGINT       NOT NULL,
    receiver_name    VARCHAR(255) NOT NULL,
    receiver_phone   VARCHAR(255) NOT NULL,
    receiver_address VARCHAR(255) NOT NULL,
    UNIQUE KEY orders_trace_id (trace_id),
    KEY orders_member (member_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS order_items (
    order_id     BIGINT       NOT NULL,
    line_no      INT          NOT NULL,
    product_id   BIGINT       NOT NULL,
    product_name VARCHAR(255) NOT NULL,
    price        BIGINT       NOT NULL,
    quantity     INT          NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT order_items_order FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The final outcome of every trace, COMPLETED and FAILED alike: the record
-- that answers when a cached trace has expired, and the idempotency key of
-- placement.
CREATE TABLE IF NOT EXISTS order_outcomes (
    trace_id   CHAR(36)    NOT NULL PRIMARY KEY,
    member_id  BIGINT      NOT NULL,
    status     VARCHAR(16) NOT NULL,
    order_id   BIGINT      NULL,
    reason     VARCHAR(32) NULL,
    -- FAILED only: the DLQ record is confirmed sent.
    dead_lettered BOOLEAN  NOT NULL DEFAULT FALSE,
    created_at DATETIME(6) NOT NULL,
    KEY order_outcomes_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
