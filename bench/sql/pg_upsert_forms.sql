-- Upsert forms compared on one server (docs/benchmarks.md, "PostgreSQL upserts: what the server itself takes").
-- psql -h 127.0.0.1 -U postgres -d test -f bench/sql/pg_upsert_forms.sql
\timing on
DROP TABLE IF EXISTS t, s;
CREATE TABLE t (id bigint PRIMARY KEY, customer text, amount numeric(12,2), qty int, created timestamptz, note text);
INSERT INTO t SELECT g, 'cust'||g, g*1.5, g%100, now(), repeat('x', 40) FROM generate_series(1,200000) g;
CREATE TEMP TABLE s (LIKE t);
INSERT INTO s SELECT id, customer||'u', amount+1, qty+1, created, note||'u' FROM t;
VACUUM ANALYZE t;
\echo === ON CONFLICT
BEGIN;
INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET customer=EXCLUDED.customer, amount=EXCLUDED.amount, qty=EXCLUDED.qty, created=EXCLUDED.created, note=EXCLUDED.note;
ROLLBACK;
\echo === UPDATE FROM + INSERT missing
BEGIN;
UPDATE t SET customer=s.customer, amount=s.amount, qty=s.qty, created=s.created, note=s.note FROM s WHERE t.id=s.id;
INSERT INTO t SELECT * FROM s WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id=s.id);
ROLLBACK;
\echo === MERGE
BEGIN;
MERGE INTO t USING s ON t.id=s.id WHEN MATCHED THEN UPDATE SET customer=s.customer, amount=s.amount, qty=s.qty, created=s.created, note=s.note WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.customer, s.amount, s.qty, s.created, s.note);
ROLLBACK;
\echo === ON CONFLICT again
BEGIN;
INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET customer=EXCLUDED.customer, amount=EXCLUDED.amount, qty=EXCLUDED.qty, created=EXCLUDED.created, note=EXCLUDED.note;
ROLLBACK;
\echo === UPDATE FROM again
BEGIN;
UPDATE t SET customer=s.customer, amount=s.amount, qty=s.qty, created=s.created, note=s.note FROM s WHERE t.id=s.id;
INSERT INTO t SELECT * FROM s WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id=s.id);
ROLLBACK;
\echo === MERGE again
BEGIN;
MERGE INTO t USING s ON t.id=s.id WHEN MATCHED THEN UPDATE SET customer=s.customer, amount=s.amount, qty=s.qty, created=s.created, note=s.note WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.customer, s.amount, s.qty, s.created, s.note);
ROLLBACK;
\echo === DELETE USING + INSERT (full rows only: replaces the row, fires delete triggers)
BEGIN;
DELETE FROM t USING s WHERE t.id=s.id;
INSERT INTO t SELECT * FROM s;
ROLLBACK;
\echo === ON CONFLICT, third
BEGIN;
INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET customer=EXCLUDED.customer, amount=EXCLUDED.amount, qty=EXCLUDED.qty, created=EXCLUDED.created, note=EXCLUDED.note;
ROLLBACK;
\echo === DELETE USING + INSERT again
BEGIN;
DELETE FROM t USING s WHERE t.id=s.id;
INSERT INTO t SELECT * FROM s;
ROLLBACK;
\echo === plain INSERT into an empty indexed copy, for scale
CREATE TEMP TABLE e (LIKE t INCLUDING ALL);
BEGIN; INSERT INTO e SELECT * FROM s; ROLLBACK;
DROP TABLE t;
