-- capi-cdc reference schema: a storefront's tables, as the default rules
-- (config/rules.default.toml) read them. Your schema may differ: write your
-- own rules (docs/configuration.md) and never touch Rust.
--
-- Conventions the pixel shares with the server (README "Event IDs"): every
-- conversion row's primary key is what the storefront puts in the pixel's
-- eventID, with the kind's prefix (purchase-42, cart-7, view-3, ...).

-- Consent Mode v2 states as the consent banner records them.
DO $$ BEGIN
    CREATE TYPE consent_state AS ENUM ('granted', 'denied');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS customers (
    id          bigserial PRIMARY KEY,
    email       text,
    phone       text,
    first_name  text,
    last_name   text,
    country     text,            -- ISO 3166-1 alpha-2, e.g. 'US'
    notes       text,            -- free text; large values are TOASTed
    session_id  text,            -- the session the account was created in
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Old databases from before session_id existed.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS session_id text;

-- One row per browser session, written on landing. Click IDs are copied from
-- the landing URL (gclid, gbraid, wbraid, fbclid) and the cookies (_fbc,
-- _fbp) exactly as received: they are case-sensitive.
CREATE TABLE IF NOT EXISTS sessions (
    id              text PRIMARY KEY,          -- the storefront's session token
    customer_id     bigint,
    fbclid          text,
    fbclid_seen_at  timestamptz,               -- when fbclid was first seen
    fbc             text,                      -- _fbc cookie, fb.1.<ms>.<fbclid>
    fbp             text,                      -- _fbp cookie, fb.1.<ms>.<random>
    gclid           text,
    gbraid          text,
    wbraid          text,
    client_ip       inet,
    user_agent      text,
    landing_url     text,
    started_at      timestamptz NOT NULL DEFAULT now()
);

-- The consent banner's answers, one row per change (latest wins), for a
-- session and, once known, the customer.
CREATE TABLE IF NOT EXISTS consents (
    id                  bigserial PRIMARY KEY,
    session_id          text,
    customer_id         bigint,
    ad_storage          consent_state,
    analytics_storage   consent_state,
    ad_user_data        consent_state,
    ad_personalization  consent_state,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products (
    id          text PRIMARY KEY,              -- SKU, as in the catalog feed
    name        text NOT NULL,
    price       numeric(12, 2) NOT NULL,
    currency    char(3) NOT NULL DEFAULT 'USD'
);

CREATE TABLE IF NOT EXISTS product_views (
    id          bigserial PRIMARY KEY,
    session_id  text,
    customer_id bigint,
    product_id  text NOT NULL,
    page_url    text,
    viewed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS carts (
    id          bigserial PRIMARY KEY,
    session_id  text,
    customer_id bigint,
    currency    char(3) NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS cart_items (
    id          bigserial PRIMARY KEY,
    cart_id     bigint NOT NULL,
    session_id  text,                          -- the session that added it
    product_id  text NOT NULL,
    quantity    integer NOT NULL DEFAULT 1,
    unit_price  numeric(12, 2),
    added_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS checkouts (
    id          bigserial PRIMARY KEY,
    cart_id     bigint,
    session_id  text,
    customer_id bigint,
    email       text,                          -- guest checkouts
    total       numeric(12, 2),
    currency    char(3) NOT NULL DEFAULT 'USD',
    started_at  timestamptz NOT NULL DEFAULT now()
);

-- Payment details entered at checkout (the method, never card data).
CREATE TABLE IF NOT EXISTS checkout_payments (
    id          bigserial PRIMARY KEY,
    checkout_id bigint NOT NULL,
    session_id  text,
    customer_id bigint,
    method      text NOT NULL,                 -- card | paypal | ...
    added_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint REFERENCES customers (id),
    status      text NOT NULL DEFAULT 'pending',   -- pending | paid | refunded | cancelled
    total       numeric(12, 2) NOT NULL,
    currency    char(3) NOT NULL DEFAULT 'USD',
    note        text,
    session_id  text,
    checkout_id bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    paid_at     timestamptz
);
ALTER TABLE orders ADD COLUMN IF NOT EXISTS session_id text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS checkout_id bigint;

CREATE TABLE IF NOT EXISTS order_items (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL,
    product_id  text NOT NULL,
    quantity    integer NOT NULL DEFAULT 1,
    unit_price  numeric(12, 2) NOT NULL
);

-- Lead forms (newsletter, quote request, contact).
CREATE TABLE IF NOT EXISTS leads (
    id           bigserial PRIMARY KEY,
    session_id   text,
    form         text NOT NULL,
    email        text,
    phone        text,
    first_name   text,
    last_name    text,
    country      text,
    submitted_at timestamptz NOT NULL DEFAULT now()
);

-- Refunds (a later capi-cdc release turns them into corrections).
CREATE TABLE IF NOT EXISTS refunds (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    currency    char(3) NOT NULL DEFAULT 'USD',
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
