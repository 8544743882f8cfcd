-- Tables and data for the PostgreSQL-backed example flows of tenant `acme`
-- (ItemPriceDb, StockAtHandDb, DuroItemSync, StockReservation). Safe to run again.
--
--   psql postgres://postgres@127.0.0.1:5432/postgres -f examples/sql/acme.sql

CREATE TABLE IF NOT EXISTS prices (
    item     text          NOT NULL,
    currency text          NOT NULL,
    price    numeric(12,2) NOT NULL,
    PRIMARY KEY (item, currency)          -- serves ItemPriceDb's lookup
);

CREATE TABLE IF NOT EXISTS stock (
    warehouse text NOT NULL,
    item      text NOT NULL,
    on_hand   integer NOT NULL,
    PRIMARY KEY (warehouse, item)         -- serves StockAtHandDb's lookup
);

CREATE TABLE IF NOT EXISTS items (
    id         text PRIMARY KEY,          -- DuroItemSync upserts by id
    name       text NOT NULL,
    attributes jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS stock_levels (
    item text PRIMARY KEY,                -- serves StockReservation's `for update`
    qty  integer NOT NULL CHECK (qty >= 0)
);

CREATE TABLE IF NOT EXISTS reservations (
    id          bigserial PRIMARY KEY,
    item        text NOT NULL,
    qty         integer NOT NULL,
    customer    text,
    reserved_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO prices (item, currency, price) VALUES
    ('A-100', 'EUR', 12.50), ('A-100', 'SEK', 139.00), ('A-100', 'USD', 13.40),
    ('B-200', 'EUR', 4.95),  ('B-200', 'SEK', 55.00),  ('B-200', 'USD', 5.30),
    ('C-300', 'EUR', 199.00), ('C-300', 'SEK', 2190.00), ('C-300', 'USD', 212.00)
ON CONFLICT (item, currency) DO UPDATE SET price = excluded.price;

INSERT INTO stock (warehouse, item, on_hand) VALUES
    ('MAIN', 'A-100', 120), ('MAIN', 'B-200', 0), ('MAIN', 'C-300', 7),
    ('NORTH', 'A-100', 15), ('NORTH', 'B-200', 40)
ON CONFLICT (warehouse, item) DO UPDATE SET on_hand = excluded.on_hand;

INSERT INTO stock_levels (item, qty) VALUES
    ('A-100', 120), ('B-200', 0), ('C-300', 7)
ON CONFLICT (item) DO UPDATE SET qty = excluded.qty;
