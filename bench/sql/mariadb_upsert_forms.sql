-- Upsert forms compared on one MariaDB server (docs/benchmarks.md, "MariaDB upserts: what the server itself takes").
-- mariadb -h 127.0.0.1 -u root test < bench/sql/mariadb_upsert_forms.sql
DROP TABLE IF EXISTS t, s;
CREATE TABLE t (id bigint PRIMARY KEY, customer varchar(64), amount decimal(12,2), qty int, created datetime(6), note varchar(255)) ENGINE=InnoDB;
INSERT INTO t SELECT seq, concat('cust',seq), seq*1.5, seq%100, now(6), repeat('x',40) FROM seq_1_to_200000;
CREATE TABLE s LIKE t;
INSERT INTO s SELECT id, concat(customer,'u'), amount+1, qty+1, created, concat(note,'u') FROM t;
CREATE TABLE e LIKE t;
SET @t0 = now(6);
BEGIN; INSERT INTO t SELECT * FROM s ON DUPLICATE KEY UPDATE customer=VALUES(customer), amount=VALUES(amount), qty=VALUES(qty), created=VALUES(created), note=VALUES(note); ROLLBACK;
SELECT 'odku', timestampdiff(MICROSECOND, @t0, now(6))/1e6 AS s;
SET @t0 = now(6);
BEGIN; UPDATE t JOIN s USING (id) SET t.customer=s.customer, t.amount=s.amount, t.qty=s.qty, t.created=s.created, t.note=s.note; ROLLBACK;
SELECT 'update join', timestampdiff(MICROSECOND, @t0, now(6))/1e6 AS s;
SET @t0 = now(6);
BEGIN; INSERT INTO e SELECT * FROM s; ROLLBACK;
SELECT 'plain insert into empty', timestampdiff(MICROSECOND, @t0, now(6))/1e6 AS s;
SET @t0 = now(6);
BEGIN; INSERT INTO t SELECT * FROM s ON DUPLICATE KEY UPDATE customer=VALUES(customer), amount=VALUES(amount), qty=VALUES(qty), created=VALUES(created), note=VALUES(note); ROLLBACK;
SELECT 'odku again', timestampdiff(MICROSECOND, @t0, now(6))/1e6 AS s;
SET @t0 = now(6);
BEGIN; INSERT INTO e SELECT * FROM s; ROLLBACK;
SELECT 'plain insert again', timestampdiff(MICROSECOND, @t0, now(6))/1e6 AS s;
DROP TABLE t, s, e;
