#!/usr/bin/env python3
"""Drives the Reservoir console in headless Chromium (Debian's chromium, via Playwright).

usage: console.py BASE_URL SCREENSHOT_DIR ADMIN_PASSWORD

Expects a server over the demo home (`reservoir demo`) and the first operator's password it
printed. Logs in as `admin` and sets a new password (a first login must), then walks the home
page, the language switch, a Chinese catalog search, a dataset page, the SQL workbench (with CSV
download), an upload of a GBK CSV and the quarantined rows it produced, and the operation report
of every unit. Then the sharing workflow end to end: the operator creates a steward and a
consumer; the consumer requests a dataset; the steward approves it with a masked column and a row
filter; the consumer sees only masked, filtered rows; the auditor's view verifies the hash chain.
Saves a screenshot of every page. Exits non-zero on the first failed check or on any JavaScript
error in the page.
"""
import datetime
import json
import os
import urllib.parse
import urllib.request
import sys
import tempfile

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(base, shots, admin_password):
    os.makedirs(shots, exist_ok=True)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN", accept_downloads=True)
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        # A refused request (403 for a dataset without a grant, 400 for a probe of an ungranted
        # column) is expected in the sharing flow; Chromium logs it as a failed resource load.
        expected = {"403"}
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                if m.type == "error" and not any(f"status of {c}" in m.text for c in expected) else None)
        expect.set_options(timeout=15_000)

        def ready(hash_):
            page.goto(f"{base}/{hash_}")
            page.wait_for_selector("main[data-ready=true]")

        def login(name, password, new_password=None):
            ready("#/")
            expect(page.get_by_test_id("login-form")).to_be_visible()
            page.get_by_test_id("login-name").fill(name)
            page.get_by_test_id("login-password").fill(password)
            page.get_by_test_id("login-submit").click()
            if new_password:
                expect(page.get_by_test_id("password-form")).to_be_visible()
                page.get_by_test_id("pw-current").fill(password)
                page.get_by_test_id("pw-new").fill(new_password)
                page.get_by_test_id("pw-submit").click()
            expect(page.get_by_test_id("who")).to_contain_text(name)

        def logout():
            page.get_by_test_id("logout").click()
            expect(page.get_by_test_id("login-form")).to_be_visible()

        def api(method, path, body=None):
            """Calls the API from the page, with its session cookie and CSRF token."""
            return page.evaluate(
                """async ([method, path, body]) => {
                    const csrf = (document.cookie.match(/(?:^|;\\s*)rsv_csrf=([^;]+)/) || [])[1] || '';
                    const r = await fetch('/api/v1' + path, { method, headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
                        body: body === null ? undefined : JSON.stringify(body) });
                    return { status: r.status, body: await r.json().catch(() => null) };
                }""", [method, path, body])

        # The first login must set a new password.
        login("admin", admin_password, "Admin-console-2026")
        page.screenshot(path=f"{shots}/00-login.png", full_page=True)

        # Home: totals, the chart, the latest runs.
        ready("#/")
        expect(page.get_by_test_id("stats")).to_contain_text("数据集")
        rows = page.get_by_test_id("stat-rows").locator(".value").inner_text()
        assert int(rows.replace(",", "")) > 2000, rows
        expect(page.locator("#unit-chart canvas")).to_have_count(1)
        expect(page.get_by_test_id("runs")).to_contain_text("松江区村居委会")
        page.screenshot(path=f"{shots}/01-home.png", full_page=True)

        # English, then back to Chinese.
        page.click("#lang-en")
        expect(page.locator("#nav")).to_contain_text("Catalog")
        expect(page.get_by_test_id("stats")).to_contain_text("Datasets")
        page.screenshot(path=f"{shots}/02-home-en.png", full_page=True)
        page.click("#lang-zh")
        expect(page.locator("#nav")).to_contain_text("数据目录")

        # Catalog search on a Chinese word.
        ready("#/catalog")
        page.get_by_test_id("catalog-search").fill("村居")
        page.get_by_test_id("catalog-search").press("Enter")
        page.wait_for_url("**/#/catalog?q=*")
        page.wait_for_selector("main[data-ready=true]")
        results = page.get_by_test_id("catalog-results")
        expect(results).to_contain_text("松江区村居委会")
        expect(page.get_by_test_id("catalog-count")).to_contain_text("1")
        page.screenshot(path=f"{shots}/03-catalog-search.png", full_page=True)

        # The dataset page: schema with business names, profile, sample rows, runs.
        results.get_by_role("link", name="松江区村居委会").click()
        page.wait_for_url("**/#/dataset/raw/minzheng/villages")
        page.wait_for_selector("main[data-ready=true]")
        expect(page.get_by_test_id("dataset-title")).to_have_text("松江区村居委会")
        expect(page.get_by_test_id("schema")).to_contain_text("所属街镇代码")
        expect(page.get_by_test_id("sample").locator("tbody tr")).to_have_count(20)
        expect(page.get_by_test_id("runs")).to_contain_text("386")
        expect(page.get_by_test_id("drift")).to_contain_text("来源结构未发生变化")
        # Lineage: the source definition loaded it and its check wrote the quality table.
        expect(page.get_by_test_id("lineage")).to_have_attribute("data-edges", "2")
        expect(page.locator("[data-testid=lineage] canvas")).to_have_count(1)
        page.screenshot(path=f"{shots}/04-dataset.png", full_page=True)

        # SQL workbench: villages per street, then a CSV download.
        ready("#/sql")
        page.get_by_test_id("sql-editor").fill(
            'SELECT s.name AS street, count(*) AS villages FROM minzheng.streets s '
            'JOIN minzheng.villages v ON v."streetCode" = s.code GROUP BY s.name ORDER BY villages DESC')
        page.get_by_test_id("sql-run").click()
        table = page.get_by_test_id("sql-table")
        expect(table.locator("tbody tr")).to_have_count(20)
        expect(page.get_by_test_id("sql-status")).to_contain_text("20")
        page.screenshot(path=f"{shots}/05-sql.png", full_page=True)
        with page.expect_download() as dl:
            page.get_by_test_id("sql-csv").click()
        csv_path = dl.value.path()
        text = open(csv_path, encoding="utf-8-sig").read()
        assert text.splitlines()[0] == "street,villages", text[:80]
        assert len(text.splitlines()) == 21, text

        # Upload a GBK CSV with one bad row and see the run summary.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "街道人口.csv")
            with open(path, "w", encoding="gbk", newline="") as f:
                f.write("街道,常住人口,备注\n岳阳街道,12000,\n永丰街道,9000,新建小区\n方松街道,不详\n")
            ready("#/upload")
            page.get_by_test_id("upload-unit").fill("minzheng")
            page.get_by_test_id("upload-dataset").fill("street_population")
            page.get_by_test_id("upload-title").fill("街道常住人口")
            page.get_by_test_id("upload-columns").fill("常住人口=int64")
            page.get_by_test_id("upload-file").set_input_files(path)
            page.get_by_test_id("upload-submit").click()
            summary = page.get_by_test_id("run-summary")
            expect(summary).to_be_visible()
            expect(page.get_by_test_id("run-counts")).to_have_text("读取 3 行 = 入湖 2 行 + 隔离 1 行")
            expect(summary).to_contain_text("GBK")
            expect(page.get_by_test_id("upload-rejected")).to_contain_text("不详")
            page.screenshot(path=f"{shots}/06-upload.png", full_page=True)

        # The new dataset and its quarantined row, with the reason.
        page.get_by_test_id("upload-open").click()
        page.wait_for_url("**/#/dataset/raw/minzheng/street_population")
        page.wait_for_selector("main[data-ready=true]")
        expect(page.get_by_test_id("dataset-title")).to_have_text("街道常住人口")
        page.get_by_test_id("view-quarantine").first.click()
        q = page.get_by_test_id("quarantine-rows")
        expect(q).to_contain_text("方松街道,不详")
        expect(q).to_contain_text("常住人口")
        page.screenshot(path=f"{shots}/07-quarantine.png", full_page=True)

        # The operation report of every demo unit, in the console's frame; then its CSV.
        units = api("GET", "/units")["body"]
        assert len(units) >= 5, units
        month = datetime.date.today().strftime("%Y-%m")
        for unit in units:
            ready(f"#/report?unit={urllib.parse.quote(unit['id'])}&month={month}")
            frame = page.frame_locator("[data-testid=report-frame]")
            expect(frame.locator("h1")).to_contain_text(unit["name"])
            expect(frame.locator("h1")).to_contain_text("数据运营报告")
            expect(frame.locator("body")).to_contain_text("单位排名")
            expect(frame.locator("svg").first).to_be_visible()
            if unit["id"] == "minzheng":
                expect(frame.locator("body")).to_contain_text("松江区村居委会")
                page.screenshot(path=f"{shots}/08-report.png", full_page=True)
                with page.expect_download() as dl:
                    page.get_by_test_id("report-csv").click()
                lines = open(dl.value.path(), encoding="utf-8-sig").read().splitlines()
                assert lines[0].startswith("unit,unit_name,month,dataset"), lines[:1]
                assert any("raw.minzheng.villages" in l for l in lines), lines

        # Sharing end to end: accounts, a request, an approval with a mask and a row filter.
        for login_name, role, unit in [("mz-steward", "steward", "minzheng"), ("tj-analyst", "consumer", "tongji"),
                                       ("auditor1", "auditor", None)]:
            r = api("POST", "/users", {"login": login_name, "role": role, "unit_id": unit, "password": "First-Login-pass-1"})
            assert r["status"] == 201, r
        logout()

        login("tj-analyst", "First-Login-pass-1", "Analyst-pass-2026")
        ready("#/dataset/raw/minzheng/villages")
        form = page.get_by_test_id("request-form")
        expect(form).to_be_visible()
        page.get_by_test_id("req-purpose").fill("按街道统计村居委会数量，用于社区疫苗接种覆盖率分析")
        page.get_by_test_id("req-submit").click()
        expect(page.get_by_test_id("req-sent")).to_contain_text("申请已提交")
        ready("#/requests")
        expect(page.get_by_test_id("my-requests")).to_contain_text("待审批")
        page.screenshot(path=f"{shots}/09-request.png", full_page=True)
        logout()

        login("mz-steward", "First-Login-pass-1", "Steward-pass-2026")
        ready("#/requests")
        panel = page.locator("[data-testid^=decide-]").first
        expect(panel).to_contain_text("tj-analyst")
        panel.locator("select[data-mask=name]").select_option("keep:1,0")
        panel.locator("input[data-col=provinceCode]").uncheck()
        panel.get_by_test_id("approve-filter").fill('"streetCode" = \'310117001\'')
        page.screenshot(path=f"{shots}/10-approve.png", full_page=True)
        panel.locator("button[data-testid^=approve-]").click()
        page.wait_for_selector("main[data-ready=true]")
        expect(page.locator("[data-testid^=decide-]")).to_have_count(0)
        logout()

        login("tj-analyst", "Analyst-pass-2026")
        ready("#/dataset/raw/minzheng/villages")
        sample = page.get_by_test_id("sample")
        expect(sample.locator("tbody tr").first).to_be_visible()
        headers = [h.strip() for h in sample.locator("thead th").all_inner_texts()]
        assert "provinceCode" not in headers, headers
        names = sample.locator("tbody tr td:nth-child(%d)" % (headers.index("name") + 1)).all_inner_texts()
        streets = sample.locator("tbody tr td:nth-child(%d)" % (headers.index("streetCode") + 1)).all_inner_texts()
        assert names and all(n[0] != "*" and set(n[1:]) == {"*"} for n in names), names
        assert set(streets) == {"310117001"}, streets
        page.screenshot(path=f"{shots}/11-masked.png", full_page=True)
        # The same through SQL: masked, filtered, and no way around it.
        r = api("POST", "/sql", {"sql": "SELECT count(*) AS n FROM minzheng.villages WHERE name LIKE '%居委会'"})
        assert r["status"] == 200 and r["body"]["rows"] == [[0]], r
        # The Delta Sharing profile of the grant downloads from the requests page.
        ready("#/requests")
        with page.expect_download() as dl:
            page.locator("[data-testid^=profile-]").first.click()
        prof = json.load(open(dl.value.path()))
        assert prof["shareCredentialsVersion"] == 1 and prof["bearerToken"].startswith("rsv_"), prof
        assert prof["endpoint"].endswith("/delta-sharing"), prof
        r = api("POST", "/sql", {"sql": 'SELECT DISTINCT "streetCode" FROM minzheng.villages'})
        assert r["status"] == 200 and r["body"]["rows"] == [["310117001"]], r
        expected.add("400")
        r = api("POST", "/sql", {"sql": 'SELECT "provinceCode" FROM minzheng.villages'})
        assert r["status"] == 400, r
        page.wait_for_timeout(200)
        expected.discard("400")
        logout()

        login("auditor1", "First-Login-pass-1", "Auditor-pass-2026")
        ready("#/audit")
        expect(page.get_by_test_id("audit")).to_contain_text("data.sample")
        expect(page.get_by_test_id("audit")).to_contain_text("request.approve")
        page.get_by_test_id("audit-verify").click()
        expect(page.get_by_test_id("audit-verdict")).to_contain_text("哈希链完整")
        page.screenshot(path=f"{shots}/12-audit.png", full_page=True)
        logout()

        # The public portal, without a login: search, a dataset page, a CSV download.
        public = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN", accept_downloads=True)
        portal = public.new_page()
        portal.on("pageerror", lambda e: errors.append(f"portal page error: {e}"))
        portal.goto(f"{base}/open")
        portal.wait_for_selector("main[data-ready=true]")
        portal.get_by_test_id("portal-search").fill("村居")
        portal.get_by_test_id("portal-search").press("Enter")
        portal.wait_for_url("**/open#/?q=*")
        portal.wait_for_selector("main[data-ready=true]")
        expect(portal.get_by_test_id("portal-results")).to_contain_text("松江区村居委会")
        expect(portal.get_by_test_id("portal-facets").locator("select")).to_have_count(4)
        # The update-frequency facet, in the portal's language: yearly datasets only.
        freq = portal.locator("select[data-facet=update_frequency]")
        expect(freq.locator("option[value=yearly]")).to_contain_text("每年")
        freq.select_option("yearly")
        portal.wait_for_url("**update_frequency=yearly*")
        portal.wait_for_selector("main[data-ready=true]")
        expect(portal.get_by_test_id("portal-results")).to_contain_text("松江区村居委会")
        expect(portal.locator("select[data-facet=update_frequency] option")).to_have_count(2)
        portal.screenshot(path=f"{shots}/13-portal.png", full_page=True)
        portal.get_by_test_id("portal-results").get_by_role("link", name="松江区村居委会").click()
        portal.wait_for_url("**/open#/dataset/minzheng-villages")
        portal.wait_for_selector("main[data-ready=true]")
        expect(portal.get_by_test_id("portal-title")).to_have_text("松江区村居委会")
        expect(portal.get_by_test_id("portal-fields")).to_contain_text("streetCode")
        expect(portal.get_by_test_id("portal-preview").locator("tbody tr")).to_have_count(10)
        expect(portal.get_by_test_id("portal-history").locator("tbody tr")).to_have_count(1)
        expect(portal.get_by_test_id("portal-api")).to_contain_text("datastore_search")
        with portal.expect_download() as dl:
            portal.locator("[data-testid=portal-downloads] a[data-format=CSV]").click()
        raw = open(dl.value.path(), "rb").read()
        assert raw.startswith(b"\xef\xbb\xbf"), raw[:8]
        assert len(raw.decode("utf-8-sig").splitlines()) == 387, len(raw.splitlines())
        portal.screenshot(path=f"{shots}/14-portal-dataset.png", full_page=True)
        portal.reload()
        portal.wait_for_selector("main[data-ready=true]")
        expect(portal.get_by_test_id("portal-counts")).to_contain_text("1 次")
        # A conditional dataset: no download, an application (log in first).
        portal.goto(f"{base}/open#/dataset/weijian-vaccinations")
        portal.wait_for_selector("main[data-ready=true]")
        expect(portal.get_by_test_id("portal-apply")).to_be_visible()
        expect(portal.get_by_test_id("portal-login")).to_be_visible()
        expect(portal.get_by_test_id("portal-downloads")).to_have_count(0)
        # Someone without an account applies: a bad credit code is refused with its reason,
        # then the application registers the applicant and files the request.
        form = portal.get_by_test_id("apply-public")
        portal.get_by_test_id("apply-name").fill("李明")
        portal.get_by_test_id("apply-org").fill("上海松江数据科技有限公司")
        portal.get_by_test_id("apply-code").fill("91310117MA1J3K5L7A")
        portal.get_by_test_id("apply-contact").fill("021-57000000")
        portal.get_by_test_id("apply-login").fill("liming.sjdata")
        portal.get_by_test_id("apply-password").fill("Apply-pass-2026")
        portal.get_by_test_id("apply-purpose").fill("社区疫苗接种率研究，成果向区卫健委报送")
        portal.get_by_test_id("apply-submit").click()
        expect(portal.get_by_test_id("apply-error")).to_contain_text("unified social credit code")
        portal.get_by_test_id("apply-code").fill("91310117MA1J3K5L7L")
        portal.get_by_test_id("apply-submit").click()
        expect(portal.get_by_test_id("apply-sent")).to_contain_text("liming.sjdata")
        expect(form.locator("button[type=submit]")).to_be_disabled()
        portal.screenshot(path=f"{shots}/16-portal-public-apply.png", full_page=True)
        mine = portal.evaluate("fetch('/api/v1/requests').then((r) => r.json())")
        assert len(mine) == 1 and mine[0]["status"] == "pending", mine
        assert "上海松江数据科技有限公司" in mine[0]["purpose"] and "91310117MA1J3K5L7L" in mine[0]["purpose"], mine
        public.close()

        # A logged-in consumer applies for it from the portal; the request reaches its steward.
        login("tj-analyst", "Analyst-pass-2026")
        page.goto(f"{base}/open#/dataset/weijian-vaccinations")
        page.wait_for_selector("main[data-ready=true]")
        page.get_by_test_id("apply-purpose").fill("社区疫苗接种覆盖率交叉比对")
        page.get_by_test_id("apply-submit").click()
        expect(page.get_by_test_id("apply-sent")).to_contain_text("申请已提交")
        page.screenshot(path=f"{shots}/15-portal-apply.png", full_page=True)
        mine = api("GET", "/requests")["body"]
        assert any(r["purpose"] == "社区疫苗接种覆盖率交叉比对" and r["status"] == "pending" for r in mine), mine

        browser.close()
    if errors:
        raise SystemExit("JavaScript errors in the console:\n" + "\n".join(errors))
    print(f"console e2e: all checks passed; screenshots in {shots}")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3])
