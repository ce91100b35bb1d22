#!/usr/bin/env python3
"""Reservoir's PostgreSQL wire protocol, through the real `psql` client and psycopg (PyPI).

usage: pg.py HOST PORT OPERATOR_TOKEN [OPERATOR_LOGIN]

Runs against `reservoir demo` after sharing.py set up the consumer `ds-reader` (password
Reader-pass-2026) with grants on minzheng.villages (code, name, streetCode) and minzheng.streets
(code, name kept to its first character, only 镇 rows). The operator logs in as `admin` with an
API token as its password (OPERATOR_LOGIN names another operator).

psql: connect, \\dt lists the tables, \\d describes one, \\dn lists the units, an aggregate over a
join. psycopg: prepared statements with parameters, a cancelled long query, a wrong password
refused, a masked column masked (by a query and by COPY TO STDOUT), an ungranted table "does
not exist", DDL refused. SQLAlchemy
(what Superset uses): schema, table, column, key and index reflection, a generated query.
"""
import os
import subprocess
import sys
import threading
import time

import psycopg
from psycopg import errors

CONSUMER = ("ds-reader", "Reader-pass-2026")


def psql(host, port, user, password, *commands):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    args = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", user, "-d", "raw"]
    for c in commands:
        args += ["-c", c]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


def main(host, port, operator, admin="admin"):
    # ---- psql, as the operator
    rc, out, err = psql(host, port, admin, operator, r"\dt")
    assert rc == 0, err
    for table in ["streets", "villages", "hotline_cases", "gdp_by_province"]:
        assert table in out, (table, out)
    assert "minzheng" in out and "pg_catalog" not in out, out
    print("pg e2e: psql \\dt lists the lake's tables")

    rc, out, err = psql(host, port, admin, operator, r"\d minzheng.streets")
    assert rc == 0, err
    assert "code" in out and "name" in out, out
    print("pg e2e: psql \\d describes a table")

    rc, out, err = psql(host, port, admin, operator, r"\dn")
    assert rc == 0, err
    for unit in ["minzheng", "tongji", "weijian", "chengyun"]:
        assert unit in out, (unit, out)

    rc, out, err = psql(
        host, port, admin, operator,
        'SELECT s.name, count(v.code) AS villages FROM minzheng.streets s '
        'JOIN minzheng.villages v ON v."streetCode" = s.code GROUP BY s.name ORDER BY villages DESC LIMIT 3',
    )
    assert rc == 0, err
    assert "(3 rows)" in out, out
    print("pg e2e: psql runs an aggregate over a join")

    rc, out, err = psql(host, port, admin, "wrong password", "SELECT 1")
    assert rc != 0 and "password authentication failed" in err, (rc, out, err)
    rc, out, err = psql(host, port, *CONSUMER, r"\dt")
    assert rc == 0, err
    assert "villages" in out and "streets" in out, out
    assert "hotline_cases" not in out and "gdp_by_province" not in out, out
    print("pg e2e: psql refuses a wrong password; the consumer's \\dt lists its grants only")

    # ---- psycopg
    conninfo = f"host={host} port={port} dbname=raw"
    try:
        psycopg.connect(conninfo, user=admin, password="not it", connect_timeout=10)
    except psycopg.OperationalError as e:
        assert "password authentication failed" in str(e), e
    else:
        raise SystemExit("a wrong password was accepted")

    with psycopg.connect(conninfo, user=admin, password=operator, autocommit=True) as conn:
        with conn.cursor() as cur:
            # Parameters, prepared on the server (extended protocol), executed twice.
            sql = 'SELECT count(*) FROM minzheng.villages WHERE "streetCode" = %s'
            cur.execute("SELECT code FROM minzheng.streets ORDER BY code LIMIT 2")
            streets = [r[0] for r in cur.fetchall()]
            counts = []
            for s in streets:
                cur.execute(sql, (s,), prepare=True)
                counts.append(cur.fetchone()[0])
            assert all(n > 0 for n in counts), counts
            cur.execute("SELECT name FROM minzheng.villages WHERE name LIKE %s ORDER BY name LIMIT 1", ("%社区%",))
            assert "社区" in cur.fetchone()[0]
            # Binary results.
            with conn.cursor(binary=True) as bcur:
                bcur.execute("SELECT code, name, length(name) AS n FROM minzheng.streets ORDER BY code LIMIT 1")
                code, name, n = bcur.fetchone()
                assert isinstance(code, str) and isinstance(name, str) and n == len(name), (code, name, n)
            # DDL is refused: the SQL is read-only.
            try:
                cur.execute("CREATE TABLE t AS SELECT 1")
            except errors.ReadOnlySqlTransaction:
                pass
            else:
                raise SystemExit("DDL was accepted")
        print(f"pg e2e: psycopg prepared statements with parameters ({counts}), binary results, read-only")

        # A long query, cancelled from another thread.
        slow = ("SELECT count(*) FROM minzheng.villages a, minzheng.villages b, "
                "minzheng.villages c, minzheng.villages d WHERE a.name || b.name <> c.name || d.name")
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        try:
            conn.execute(slow)
        except errors.QueryCanceled:
            pass
        else:
            raise SystemExit("the long query was not cancelled")
        finally:
            timer.cancel()
        assert time.monotonic() - started < 20
        assert conn.execute("SELECT 1").fetchone()[0] == 1
        print("pg e2e: a cancelled long query stops, the connection goes on")

    with psycopg.connect(conninfo, user=CONSUMER[0], password=CONSUMER[1], autocommit=True) as conn:
        rows = conn.execute("SELECT code, name FROM minzheng.streets ORDER BY code").fetchall()
        assert rows, "the consumer sees no streets"
        for _, name in rows:
            assert len(name) > 1 and set(name[1:]) == {"*"}, f"{name!r} is not masked"
        try:
            conn.execute("SELECT * FROM tongji.gdp_by_province")
        except errors.UndefinedTable as e:
            assert "does not exist" in str(e), e
        else:
            raise SystemExit("an ungranted table was readable")
        print(f"pg e2e: the consumer's column comes back masked ({rows[0][1]}), an ungranted table does not exist")
        # COPY … TO STDOUT (psycopg's copy): the same rows, masked alike.
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT code, name FROM minzheng.streets ORDER BY code) TO STDOUT") as copy:
                copied = [tuple(r) for r in copy.rows()]
        assert copied == [tuple(r) for r in rows], (copied[:3], rows[:3])
        print(f"pg e2e: psycopg's COPY TO STDOUT gives the same {len(copied)} masked rows")

    sqlalchemy_inspector(host, port)
    print("pg e2e: all checks passed")


def sqlalchemy_inspector(host, port):
    """What Superset does when a database is added and a dataset picked: SQLAlchemy's
    PostgreSQL dialect (psycopg 3) reads the version, lists schemas and tables, and reflects
    columns, keys and indexes through pg_catalog."""
    import sqlalchemy
    from sqlalchemy.engine import URL

    url = URL.create("postgresql+psycopg", username=CONSUMER[0], password=CONSUMER[1],
                     host=host, port=int(port), database="raw")
    engine = sqlalchemy.create_engine(url)
    try:
        insp = sqlalchemy.inspect(engine)
        assert engine.dialect.server_version_info[0] >= 12, engine.dialect.server_version_info
        schemas = insp.get_schema_names()
        assert "minzheng" in schemas, schemas
        tables = insp.get_table_names(schema="minzheng")
        assert sorted(tables) == ["streets", "villages"], tables
        assert insp.get_table_names(schema="tongji") == [], "ungranted tables reflected"
        columns = {c["name"]: c for c in insp.get_columns("villages", schema="minzheng")}
        assert list(columns) == ["code", "name", "streetCode"], list(columns)
        assert isinstance(columns["name"]["type"], sqlalchemy.types.String), columns["name"]
        assert insp.get_pk_constraint("villages", schema="minzheng")["constrained_columns"] == []
        assert insp.get_foreign_keys("villages", schema="minzheng") == []
        assert insp.get_indexes("villages", schema="minzheng") == []
        villages = sqlalchemy.Table("villages", sqlalchemy.MetaData(), schema="minzheng",
                                    autoload_with=engine)
        query = (sqlalchemy.select(villages.c.streetCode, sqlalchemy.func.count().label("n"))
                 .group_by(villages.c.streetCode).order_by(sqlalchemy.desc("n")).limit(3))
        with engine.connect() as conn:
            top = conn.execute(query).all()
        assert len(top) == 3 and top[0].n >= top[-1].n > 0, top
    finally:
        engine.dispose()
    print(f"pg e2e: SQLAlchemy reflects the consumer's schemas and tables ({tables}), "
          f"columns and keys, and runs a generated query")


if __name__ == "__main__":
    main(*sys.argv[1:5])
