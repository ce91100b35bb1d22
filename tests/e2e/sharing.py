#!/usr/bin/env python3
"""Reservoir's Delta Sharing server, through the real `delta-sharing` client (PyPI).

usage: sharing.py BASE_URL CONSUMER_TOKEN OPERATOR_TOKEN EXPIRING_TOKEN CATALOG_DB

The consumer holds two grants: minzheng.villages (code, name, streetCode, unmasked) and
minzheng.streets (code, name kept to its first character, only 镇 rows). Checks: list_all_tables
lists exactly those; load_as_pandas reads the villages table and matches the lake's rows exactly
(as the operator reads them); the streets table comes back masked and filtered, exactly as the
consumer's own data API shows it; limit, version and timestamp work, a malformed timestamp is a
400 naming the expected form; the change data feed (load_table_changes_as_pandas) shows a
village uploaded meanwhile as one insert of the new version, by version and by timestamp; an
expired token is refused.
"""
import json
import os
import sqlite3
import sys
import tempfile
import urllib.error
import urllib.request

import delta_sharing


def call(base, token, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def profile(tmp, base, token, name):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump({"shareCredentialsVersion": 1, "endpoint": base + "/delta-sharing", "bearerToken": token}, f)
    return path


def main(base, consumer, operator, expiring, catalog_db):
    with tempfile.TemporaryDirectory() as tmp:
        prof = profile(tmp, base, consumer, "consumer.share")
        client = delta_sharing.SharingClient(prof)
        tables = sorted(f"{t.share}.{t.schema}.{t.name}" for t in client.list_all_tables())
        assert tables == ["reservoir.minzheng.streets", "reservoir.minzheng.villages"], tables
        assert [s.name for s in client.list_shares()] == ["reservoir"]

        # Unmasked grant: exactly the lake's rows.
        villages = delta_sharing.load_as_pandas(prof + "#reservoir.minzheng.villages")
        assert list(villages.columns) == ["code", "name", "streetCode"], list(villages.columns)
        status, body, _ = call(base, operator, "POST", "/api/v1/sql",
                               {"sql": 'SELECT code, name, "streetCode" FROM minzheng.villages', "limit": 10000})
        assert status == 200, body
        lake = {tuple(str(v) for v in r) for r in json.loads(body)["rows"]}
        shared = {tuple(str(v) for v in r) for r in villages.itertuples(index=False)}
        assert len(villages) == 386 and shared == lake, (len(villages), len(shared ^ lake))

        # Masked, filtered grant: what the consumer's own data API shows, nothing more.
        streets = delta_sharing.load_as_pandas(prof + "#reservoir.minzheng.streets")
        status, body, _ = call(base, consumer, "GET", "/api/v1/data/minzheng/streets?limit=1000")
        assert status == 200, body
        api_rows = {tuple(str(v) for v in r) for r in json.loads(body)["rows"]}
        assert {tuple(str(v) for v in r) for r in streets.itertuples(index=False)} == api_rows
        assert len(streets) > 0 and all(n.endswith("*") and "镇" not in n for n in streets["name"]), streets
        status, body, _ = call(base, operator, "POST", "/api/v1/sql",
                               {"sql": "SELECT count(*) FROM minzheng.streets WHERE name LIKE '%镇'"})
        assert len(streets) == json.loads(body)["rows"][0][0], (len(streets), body)

        # limit, version, timestamp; a malformed timestamp names the expected form.
        assert len(delta_sharing.load_as_pandas(prof + "#reservoir.minzheng.villages", limit=5)) == 5
        version = client._rest_client.query_table_version(
            delta_sharing.protocol.Table(name="villages", share="reservoir", schema="minzheng")).delta_table_version
        again = delta_sharing.load_as_pandas(prof + "#reservoir.minzheng.villages", version=version)
        assert len(again) == 386
        now = delta_sharing.load_as_pandas(prof + "#reservoir.minzheng.villages", timestamp="2099-01-01T00:00:00Z")
        assert len(now) == 386
        status, body, _ = call(base, consumer, "POST",
                               "/delta-sharing/shares/reservoir/schemas/minzheng/tables/villages/query",
                               {"timestamp": "yesterday"})
        assert status == 400 and b"ISO-8601" in body, (status, body)
        status, body, headers = call(base, consumer, "GET",
                                     "/delta-sharing/shares/reservoir/schemas/minzheng/tables/villages/version")
        assert status == 200 and int({k.lower(): v for k, v in headers.items()}["delta-table-version"]) == version
        # A table without a grant does not exist.
        status, body, _ = call(base, consumer, "GET",
                               "/delta-sharing/shares/reservoir/schemas/tongji/tables/gdp_by_province/metadata")
        assert status == 404, (status, body)

        # The change data feed: a village collected upstream is one insert in the next version;
        # from version 0, inserts less deletes are the table's rows.
        import requests
        csv = ("code,name,streetCode,provinceCode,cityCode,areaCode\n"
               "310117001999,测试新村村委会,310117001,31,3101,310117\n")
        r = requests.post(base + "/api/v1/datasets/raw/minzheng/villages/upload",
                          headers={"Authorization": f"Bearer {operator}"},
                          files={"file": ("new-village.csv", csv.encode())}, data={"mode": "append"})
        assert r.status_code == 201, r.text
        assert len(delta_sharing.load_as_pandas(prof + "#reservoir.minzheng.villages")) == 387
        latest = client._rest_client.query_table_version(
            delta_sharing.protocol.Table(name="villages", share="reservoir", schema="minzheng")).delta_table_version
        assert latest > version, (latest, version)
        changes = delta_sharing.load_table_changes_as_pandas(
            prof + "#reservoir.minzheng.villages", starting_version=0, ending_version=latest)
        assert {"_change_type", "_commit_version", "_commit_timestamp"} <= set(changes.columns), changes.columns
        last = changes[changes["_commit_version"] == latest]
        assert list(last["_change_type"]) == ["insert"], last
        assert int(last.iloc[0]["code"]) == 310117001999 and last.iloc[0]["name"] == "测试新村村委会", last
        kinds = changes["_change_type"].value_counts().to_dict()
        assert kinds.get("insert", 0) - kinds.get("delete", 0) == 387, kinds
        # The same versions by timestamp, and a range that does not exist is a 400.
        by_time = delta_sharing.load_table_changes_as_pandas(
            prof + "#reservoir.minzheng.villages", starting_timestamp="2000-01-01T00:00:00Z")
        assert len(by_time) == len(changes), (len(by_time), len(changes))
        status, body, _ = call(base, consumer, "GET",
                               "/delta-sharing/shares/reservoir/schemas/minzheng/tables/villages/changes"
                               f"?startingVersion={latest + 5}")
        assert status == 400, (status, body)
        print(f"sharing e2e: change data feed over versions 0..{latest}: {kinds}")

        # An expired token is refused.
        db = sqlite3.connect(catalog_db)
        token_id = expiring.split("_")[1]
        db.execute("UPDATE api_tokens SET expires_at = '2020-01-01T00:00:00.000000Z' WHERE id = ?", (token_id,))
        db.commit()
        db.close()
        expired = profile(tmp, base, expiring, "expired.share")
        try:
            delta_sharing.load_as_pandas(expired + "#reservoir.minzheng.villages")
        except Exception as e:  # requests.HTTPError from the client
            assert "401" in str(e), e
        else:
            raise SystemExit("an expired token read a shared table")
    print(f"sharing e2e: all checks passed ({len(villages)} + {len(streets)} rows)")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), *sys.argv[2:6])
