-- Sale rules of a product: how many units one member may buy in total
-- (NULL: no limit) and the sale window, UTC, half open
-- [sale_starts_at, sale_ends_at) (NULL: open on that side). One statement,
-- so the columns come together or not at all.
ALTER TABLE products
    ADD COLUMN max_per_member BIGINT      NULL,
    ADD COLUMN sale_starts_at DATETIME(3) NULL,
    ADD COLUMN sale_ends_at   DATETIME(3) NULL;

-- Units each member has bought of each product with a purchase limit,
-- written in the placement transaction that places the orders (and thereby
-- behind the product's versioned decrement).
CREATE TABLE IF NOT EXISTS member_purchases (
    product_id BIGINT NOT NULL,
    member_id  BIGINT NOT NULL,
    units      BIGINT NOT NULL,
    PRIMARY KEY (product_id, member_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
