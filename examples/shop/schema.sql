-- A small online shop, using the PostgreSQL types Dativo maps (NULLs, unicode and old dates included).
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');

CREATE TABLE customers (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    email       varchar(120),
    country     char(2),
    vip         boolean NOT NULL DEFAULT false,
    balance     numeric(12, 2),
    born_on     date,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE orders (
    id              bigint PRIMARY KEY,
    customer_id     integer NOT NULL REFERENCES customers (id),
    status          order_status NOT NULL,
    amount          numeric(12, 2) NOT NULL,
    quantity        smallint,
    discount        real,
    weight_kg       double precision,
    placed_on       date,
    placed_at       timestamp,
    updated_at      timestamptz NOT NULL,
    delivery_window interval,
    tracking        uuid,
    tags            text[],
    attributes      jsonb,
    note            text,
    receipt         bytea
);

-- Adds `n` orders after the current highest id, for customers that exist.
CREATE FUNCTION add_orders(n integer) RETURNS void LANGUAGE sql AS $$
    INSERT INTO orders
    SELECT o,
           1 + (o * 7919) % (SELECT count(*) FROM customers),
           (ARRAY['new', 'paid', 'shipped', 'cancelled']::order_status[])[1 + o % 4],
           round(((o * 104729) % 100000) / 100.0, 2),
           CASE WHEN o % 17 = 0 THEN NULL ELSE (1 + o % 9)::smallint END,
           CASE WHEN o % 5 = 0 THEN 0.1 ELSE NULL END,
           (o % 1000) / 10.0,
           date '2023-01-01' + (o % 700)::integer,
           timestamp '2023-01-01 08:00' + (o % 700) * interval '1 day' + (o % 86400) * interval '1 second',
           now(),
           CASE WHEN o % 3 = 0 THEN interval '2 days 4 hours' ELSE NULL END,
           md5(o::text)::uuid,
           CASE WHEN o % 4 = 0 THEN ARRAY['gift', 'express'] WHEN o % 4 = 1 THEN ARRAY[]::text[] ELSE NULL END,
           jsonb_build_object('channel', (ARRAY['web', 'app', 'store'])[1 + o % 3], 'items', 1 + o % 5),
           CASE WHEN o % 11 = 0 THEN 'Bitte vor 10 Uhr liefern 📦' WHEN o % 13 = 0 THEN '请放在门口' ELSE NULL END,
           CASE WHEN o % 50 = 0 THEN decode(md5(o::text), 'hex') ELSE NULL END
    FROM generate_series((SELECT coalesce(max(id), 0) + 1 FROM orders)::bigint,
                         (SELECT coalesce(max(id), 0) + n FROM orders)) AS o;
$$;

INSERT INTO customers
SELECT c,
       (ARRAY['Ann Lee', 'Björn Ågren', '山田 太郎', 'Zoë Martin', 'Ana Souza', 'Олег Петров', 'فاطمة'])[1 + c % 7]
           || ' #' || c,
       CASE WHEN c % 10 = 0 THEN NULL ELSE 'customer' || c || '@example.com' END,
       (ARRAY['US', 'SE', 'JP', 'FR', 'BR', 'UA', 'EG'])[1 + c % 7],
       c % 20 = 0,
       CASE WHEN c % 9 = 0 THEN NULL ELSE round((c * 31 % 100000) / 100.0 - 250, 2) END,
       CASE WHEN c = 1 THEN date '0001-01-01' ELSE date '1940-01-01' + (c * 37 % 25000) END,
       now()
FROM generate_series(1, 5000) AS c;
