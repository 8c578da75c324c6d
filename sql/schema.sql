-- capi-cdc reference schema: the tables the default rules read.
-- Later issues extend it (consent, click IDs, sessions, carts, items).

CREATE TABLE IF NOT EXISTS customers (
    id          bigserial PRIMARY KEY,
    email       text,
    phone       text,
    first_name  text,
    last_name   text,
    country     text,            -- ISO 3166-1 alpha-2, e.g. 'US'
    notes       text,            -- free text; large values are TOASTed
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint REFERENCES customers (id),
    status      text NOT NULL DEFAULT 'pending',   -- pending | paid | refunded | cancelled
    total       numeric(12, 2) NOT NULL,
    currency    char(3) NOT NULL DEFAULT 'USD',
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    paid_at     timestamptz
);
