-- The operators' views (GET /api/v1/admin/orders?productId= and
-- /api/v1/admin/products/{id}/stock): a product's lines, newest order
-- first, which also sums the units its orders hold.
--
-- No index leads `orders` with `status` and `id`: the life cycle's
-- `UPDATE orders … WHERE id = ? AND status = ?` would read through it and
-- lock it before the row, the reverse of the expirer's order, and deadlock
-- with it. A view by status alone reads `orders_payment_due (status, …)`
-- or the primary key.
ALTER TABLE order_items ADD INDEX order_items_product (product_id, order_id);
