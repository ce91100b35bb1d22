#!/usr/bin/env python3
"""Reservoir's CKAN-compatible Action API, through the real `ckanapi` client (PyPI).

usage: ckan.py BASE_URL

Expects a server over the demo home (`reservoir demo`), which publishes every dataset marked
无条件开放. Checks: package_list holds the open and conditional datasets and no closed one;
package_search finds a dataset by a Chinese word, with facets; package_show returns its
resources and their files download (CSV with a BOM); datastore_search pages through every row
with the right total, filters, full-text q and sort; datastore_search_sql answers read-only SQL
over open datasets only; a conditional dataset is listed but not served; organizations, groups
and tags list. Exits non-zero on the first failed check.
"""
import csv
import io
import sys
import urllib.request

import ckanapi


def main(base):
    ckan = ckanapi.RemoteCKAN(base, user_agent="reservoir-e2e/1.0 (+ckanapi)")

    names = ckan.action.package_list()
    assert "minzheng-villages" in names, names
    assert "weijian-vaccinations" in names, "conditional datasets are listed: %s" % names
    assert not any(n.startswith("chengyun-") for n in names), "a closed dataset is listed: %s" % names

    # Search on a Chinese word, with facets.
    found = ckan.action.package_search(q="村居", rows=5, **{"facet.field": ["organization", "res_format"]})
    assert found["count"] >= 1, found
    assert found["results"][0]["name"] == "minzheng-villages", [r["name"] for r in found["results"]]
    orgs = {i["name"]: i for i in found["search_facets"]["organization"]["items"]}
    assert orgs["minzheng"]["display_name"] == "区民政局", orgs
    by_freq = ckan.action.package_search(fq="update_frequency:daily", rows=100,
                                         **{"facet.field": ["update_frequency"]})
    assert {r["name"] for r in by_freq["results"]} == {"weijian-vaccinations"}, by_freq
    assert by_freq["facets"]["update_frequency"] == {"daily": 1}, by_freq["facets"]
    by_org = ckan.action.package_search(fq="organization:minzheng", rows=100)
    assert {r["name"] for r in by_org["results"]} == {"minzheng-villages", "minzheng-streets"}, by_org
    # Solr field queries in q, as CKAN takes them: a name that is not there finds nothing.
    assert ckan.action.package_search(q="name:nothing")["count"] == 0
    named = ckan.action.package_search(q="name:minzheng-villages")
    assert [r["name"] for r in named["results"]] == ["minzheng-villages"], named
    assert ckan.action.package_search(q="村居 organization:weijian")["count"] == 0
    paged = ckan.action.package_search(rows=1, start=1, sort="name asc")
    assert paged["count"] == len(names) and len(paged["results"]) == 1, paged
    assert paged["results"][0]["name"] == sorted(names)[1], paged

    # A package and its resources; the CSV downloads with a BOM for Excel.
    pkg = ckan.action.package_show(id="minzheng-villages")
    assert pkg["title"] == "松江区村居委会", pkg["title"]
    assert pkg["organization"]["title"] == "区民政局", pkg["organization"]
    # The configured licence (CC BY 4.0 by default), by CKAN's licence id; a contact that is not
    # an address is the maintainer, not the maintainer_email.
    assert pkg["license_id"] == "cc-by", pkg["license_id"]
    assert pkg["license_url"] == "https://creativecommons.org/licenses/by/4.0/", pkg
    assert pkg["maintainer_email"] == "", pkg["maintainer_email"]
    assert pkg["maintainer"] == "区民政局 区划地名科", pkg["maintainer"]
    formats = {r["format"]: r for r in pkg["resources"]}
    assert set(formats) == {"CSV", "JSON", "XLSX", "Parquet"}, formats.keys()
    datastore = formats["CSV"]
    assert datastore["datastore_active"] is True, datastore
    assert ckan.action.resource_show(id=datastore["id"])["url"] == datastore["url"]
    with urllib.request.urlopen(datastore["url"]) as r:
        raw = r.read()
    assert raw.startswith(b"\xef\xbb\xbf"), raw[:10]
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == 386, len(rows)
    assert not any(k.startswith("_") for k in rows[0]), rows[0].keys()
    for fmt, magic in [("JSON", b"["), ("Parquet", b"PAR1"), ("XLSX", b"PK")]:
        with urllib.request.urlopen(formats[fmt]["url"]) as r:
            assert r.read().startswith(magic), fmt

    # datastore_search: pages add up to the total, every row once.
    seen = []
    offset = 0
    while True:
        page = ckan.action.datastore_search(resource_id=datastore["id"], limit=100, offset=offset)
        assert page["total"] == 386, page["total"]
        seen.extend(page["records"])
        if len(page["records"]) < 100:
            break
        offset += 100
    assert len(seen) == 386 and len({r["code"] for r in seen}) == 386, len(seen)
    assert [f["id"] for f in page["fields"]][:3] == ["_id", "code", "name"], page["fields"]
    assert {r["code"] for r in seen} == {r["code"] for r in rows}

    street = rows[0]["streetCode"]
    expected = sum(1 for r in rows if r["streetCode"] == street)
    filtered = ckan.action.datastore_search(resource_id=datastore["id"], filters={"streetCode": street}, limit=1000)
    assert filtered["total"] == expected and len(filtered["records"]) == expected, filtered["total"]
    q = ckan.action.datastore_search(resource_id=datastore["id"], q="居委会", limit=1000)
    assert q["total"] == sum(1 for r in rows if "居委会" in "".join(r.values())), q["total"]
    ordered = ckan.action.datastore_search(resource_id=datastore["id"], sort="code desc", limit=3, fields=["code", "name"])
    assert [r["code"] for r in ordered["records"]] == sorted((r["code"] for r in rows), reverse=True)[:3]
    assert set(ordered["records"][0]) == {"_id", "code", "name"}, ordered["records"][0]

    # datastore_search_sql: read-only, open datasets only, no system tables.
    n = ckan.action.datastore_search_sql(sql='SELECT count(*) AS n FROM "minzheng-villages"')
    assert n["records"] == [{"n": 386}], n
    for bad in ['SELECT * FROM information_schema.tables',
                'SELECT * FROM "weijian-vaccinations"',
                'SELECT * FROM raw.minzheng.villages',
                'DELETE FROM "minzheng-villages"']:
        try:
            ckan.action.datastore_search_sql(sql=bad)
        except (ckanapi.ValidationError, ckanapi.NotFound, ckanapi.CKANAPIError) as e:
            pass
        else:
            raise SystemExit(f"datastore_search_sql answered {bad!r}")

    # A conditional dataset: metadata and the way to apply, no data.
    cond = ckan.action.package_show(id="weijian-vaccinations")
    assert all(not r["datastore_active"] for r in cond["resources"]), cond["resources"]
    try:
        ckan.action.datastore_search(resource_id="weijian-vaccinations")
    except ckanapi.NotFound as e:
        # ckanapi shows what follows CKAN's "Not found: ", so the whole reason reaches the user.
        assert "weijian-vaccinations" in str(e) and "apply" in str(e), str(e)
    else:
        raise SystemExit("a conditional dataset's rows were served")
    try:
        ckan.action.package_show(id="chengyun-hotline_cases")
    except ckanapi.NotFound:
        pass
    else:
        raise SystemExit("a closed dataset was shown")

    orgs = ckan.action.organization_list(all_fields=True)
    assert any(o["name"] == "minzheng" and o["package_count"] == 2 for o in orgs), orgs
    org = ckan.action.organization_show(id="minzheng", include_datasets=True)
    assert len(org["packages"]) == 2, org
    assert isinstance(ckan.action.group_list(), list)
    assert isinstance(ckan.action.tag_list(), list)
    check_dcat(base, names)
    print(f"ckan e2e: all checks passed ({len(names)} packages)")


def check_dcat(base, names):
    """The public catalog as DCAT-AP 3, in JSON-LD and Turtle, parsed with rdflib and validated
    with pyshacl against tests/e2e/dcat-ap-3-shapes.ttl."""
    import os
    import pyshacl
    import rdflib
    from rdflib.compare import isomorphic
    from rdflib.namespace import SH

    def fetch(path, accept=None):
        req = urllib.request.Request(base + path, headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req) as r:
            return r.headers.get("Content-Type"), r.read().decode()

    mime, text = fetch("/catalog.jsonld")
    assert mime.startswith("application/ld+json"), mime
    g = rdflib.Graph().parse(data=text, format="json-ld")
    mime, ttl = fetch("/catalog.ttl")
    assert mime.startswith("text/turtle"), mime
    assert "@prefix dcat:" in ttl, ttl[:300]
    t = rdflib.Graph().parse(data=ttl, format="turtle")
    assert isomorphic(g, t), "the JSON-LD and Turtle catalogs differ"
    # The catalog's own IRI answers by content negotiation.
    mime, _ = fetch("/catalog", "text/turtle")
    assert mime.startswith("text/turtle"), mime
    mime, _ = fetch("/catalog", "application/ld+json")
    assert mime.startswith("application/ld+json"), mime

    DCAT = rdflib.Namespace("http://www.w3.org/ns/dcat#")
    DCT = rdflib.Namespace("http://purl.org/dc/terms/")
    FOAF = rdflib.Namespace("http://xmlns.com/foaf/0.1/")
    # The catalog is published by the platform (open.publisher), not by one of its units.
    catalog = next(g.subjects(rdflib.RDF.type, DCAT.Catalog))
    publisher = g.value(catalog, DCT.publisher)
    assert publisher is not None and "/units/" not in str(publisher), publisher
    assert str(g.value(publisher, FOAF.name)) == "松江区大数据中心（演示）", g.value(publisher, FOAF.name)
    datasets = set(g.subjects(rdflib.RDF.type, DCAT.Dataset))
    assert len(datasets) == len(names), (len(datasets), len(names))
    # Open datasets' distributions are the portal's downloads, and each one downloads.
    public = rdflib.URIRef("http://publications.europa.eu/resource/authority/access-right/PUBLIC")
    downloads = [
        u for d in datasets if (d, DCT.accessRights, public) in g
        for dist in g.objects(d, DCAT.distribution)
        for u in g.objects(dist, DCAT.downloadURL)
    ]
    assert downloads and all("/open/download/" in str(u) for u in downloads), downloads
    for u in downloads[:4]:
        with urllib.request.urlopen(str(u)) as r:
            assert r.status == 200 and r.read(1), u
    # Conditional datasets are listed with the page to apply from, never a download.
    for d in datasets:
        if (d, DCT.accessRights, public) not in g:
            for dist in g.objects(d, DCAT.distribution):
                assert (dist, DCAT.downloadURL, None) not in g, f"{d} is not open but downloads"

    shapes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcat-ap-3-shapes.ttl")
    _, results, _ = pyshacl.validate(g, shacl_graph=shapes, shacl_graph_format="turtle")
    found = {}
    for r in results.subjects(rdflib.RDF.type, SH.ValidationResult):
        severity = str(results.value(r, SH.resultSeverity)).rsplit("#", 1)[-1]
        path = results.value(r, SH.resultPath)
        key = (severity, g.namespace_manager.normalizeUri(path) if path else str(results.value(r, SH.sourceShape)))
        found[key] = found.get(key, 0) + 1
    violations = [
        (str(results.value(r, SH.resultPath)), str(results.value(r, SH.focusNode)),
         str(results.value(r, SH.value)), str(results.value(r, SH.resultMessage)))
        for r in results.subjects(rdflib.RDF.type, SH.ValidationResult)
        if results.value(r, SH.resultSeverity) == SH.Violation
    ]
    assert not violations, violations[:5]
    # Recommended properties: all present but the temporal coverage, which the directory does
    # not record.
    warnings = {k[1] for k in found if k[0] == "Warning"}
    assert warnings <= {"dct:temporal"}, found
    # …and the shapes do bite: a dataset without a title, a frequency outside the EU vocabulary.
    some = next(iter(datasets))
    broken = rdflib.Graph()
    for triple in g:
        broken.add(triple)
    broken.remove((some, DCT.title, None))
    broken.set((some, DCT.accrualPeriodicity, rdflib.URIRef("http://example.com/sometimes")))
    _, results, _ = pyshacl.validate(broken, shacl_graph=shapes, shacl_graph_format="turtle")
    paths = {
        str(results.value(r, SH.resultPath))
        for r in results.subjects(rdflib.RDF.type, SH.ValidationResult)
        if results.value(r, SH.resultSeverity) == SH.Violation
    }
    assert str(DCT.title) in paths and str(DCT.accrualPeriodicity) in paths, paths
    print(
        f"ckan e2e: DCAT-AP 3 (JSON-LD = Turtle, {len(g)} triples) passes dcat-ap-3-shapes.ttl: "
        f"no violations; warnings: {sorted(warnings) or 'none'}"
    )


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
