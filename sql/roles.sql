-- A least-privilege role for capi-cdc (run as a superuser, then give
-- capi-cdc this role in source.url). Review with `capi-cdc setup --print-sql`.
--
-- capi-cdc needs: to log in, to replicate (logical decoding), to read the
-- tables its rules and lookups name (for setup's snapshot and backfill), and,
-- once, to create the publication (or let a DBA create it: setup only adds
-- missing tables). It never writes to your tables.

CREATE ROLE capi_cdc WITH LOGIN REPLICATION PASSWORD 'change-me';

-- Read access to the reference schema's tables (adapt to your rules file).
GRANT USAGE ON SCHEMA public TO capi_cdc;
GRANT SELECT ON customers, sessions, consents, product_views, carts, cart_items,
                checkouts, checkout_payments, orders, order_items, leads
   TO capi_cdc;

-- `pg_logical_emit_message` for the optional heartbeat (source.heartbeat_interval_s).
GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO capi_cdc;

-- Creating the publication needs ownership of the tables (or superuser).
-- Either let a DBA run, once:
--   CREATE PUBLICATION capi_cdc FOR TABLE customers, sessions, consents,
--     product_views, cart_items, checkouts, checkout_payments, orders,
--     order_items, leads WITH (publish = 'insert, update, delete, truncate');
-- or run `capi-cdc setup` as the tables' owner the first time.
