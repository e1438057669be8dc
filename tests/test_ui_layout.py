"""Every main page of the web UI at 1280×800 and 1920×1080 in real headless Chromium (one
browser for the module): nothing overflows the window or its card (tables fit or scroll in
their own box, long text wraps), and axe-core (vendored, pinned: src/blockyard/ui/vendor.sh)
finds no serious or critical accessibility violation. A screenshot of every page at both
sizes goes to test-artifacts/screenshots/."""
from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

from ui_support import REPO, UiServer, browser_page, copy_workspace, screenshot, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

AXE = REPO / "src" / "blockyard" / "ui" / "testing" / "axe-core" / "axe.min.js"
SIZES = [(1280, 800), (1920, 1080)]

# Elements whose right edge must stay inside their card (unless inside a scrolling box).
OVERFLOW_JS = """
() => {
  const bad = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth + 1) bad.push(`page is ${doc.scrollWidth}px wide in a ${window.innerWidth}px window`);
  const boxes = document.querySelectorAll('main .section, main .block-card, main .card, main .stat, main .chart-box, main .error-box');
  for (const box of boxes) {
    const limit = box.getBoundingClientRect().right + 1;
    for (const el of box.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (!r.width || r.right <= limit) continue;
      // inside a box that scrolls or clips on purpose (table-wrap, code editor, plot): fine
      let p = el.parentElement, scrolls = false;
      while (p && p !== box) {
        const o = getComputedStyle(p).overflowX;
        if (o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip') { scrolls = true; break; }
        p = p.parentElement;
      }
      if (!scrolls) bad.push(`${el.tagName.toLowerCase()}.${el.className} "${(el.textContent || '').slice(0, 40)}" runs ${Math.round(r.right - limit)}px out of its card`);
    }
  }
  // list tables must be fully visible (the output previews scroll on purpose)
  for (const wrap of document.querySelectorAll('main .table-wrap')) {
    if (wrap.closest('.output, .nb-output, .block-results')) continue;
    if (wrap.scrollWidth > wrap.clientWidth + 1) bad.push(`table cut off: ${wrap.scrollWidth}px in ${wrap.clientWidth}px (${(wrap.querySelector('th') || {}).textContent})`);
  }
  return [...new Set(bad)].slice(0, 20);
}
"""


def api(srv, method, path, body=None):
    req = urllib.request.Request(srv.url + path, method=method, headers={"Content-Type": "application/json"},
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = copy_workspace(REPO / "mlops", tmp_path_factory.mktemp("layout") / "mlops")
    srv = UiServer(root).start()
    try:
        # one finished run (failed, with a long error) and a trigger, so the pages have content
        api(srv, "POST", "/api/projects/unit_0_setup/pipelines", {"uuid": "a_pipeline_with_a_rather_long_name_for_layout_checks"})
        base = "/api/projects/unit_0_setup/pipelines/a_pipeline_with_a_rather_long_name_for_layout_checks"
        api(srv, "POST", base + "/blocks", {"uuid": "fails", "type": "data_loader", "code":
            "@data_loader\ndef f(*a, **k):\n    open('/a/very/long/path/that/does/not/exist/' + 'x' * 120 + '/data.csv')\n"})
        run = api(srv, "POST", "/api/pipelines/unit_0_setup/a_pipeline_with_a_rather_long_name_for_layout_checks/runs", {"variables": {}})
        deadline = time.time() + 60
        while run["status"] not in ("completed", "failed", "cancelled") and time.time() < deadline:
            time.sleep(0.3)
            run = api(srv, "GET", f"/api/runs/{run['id']}")
        srv.failed_run = run["id"]
        api(srv, "POST", "/api/triggers", {"project": "unit_0_setup", "pipeline_uuid": "example_pipeline", "name": "daily_retrain",
                                           "schedule_type": "time", "schedule_interval": "@daily"})
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def page():
    with browser_page() as p:
        yield p


def pages(srv) -> list[tuple[str, str, str]]:
    return [
        ("overview", "/", "a.pipeline-link"),
        ("project", "/projects/unit_0_setup", "a.pipeline-link"),
        ("pipeline", "/pipelines/unit_0_setup/example_pipeline", '[data-block-card] .CodeMirror'),
        ("runs", "/runs", "table.runs tbody tr"),
        ("run", f"/runs/{srv.failed_run}", "svg.gantt"),
        ("triggers", "/triggers", "table.triggers"),
        ("backfills", "/backfills", "#new-backfill"),
        ("files", "/files?path=unit_0_setup/pipelines/example_pipeline/metadata.yaml", ".file-editor .CodeMirror"),
        ("dashboards", "/dashboards", "#runs-per-day"),
        ("settings", "/settings", "#send-test-alert"),
    ]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_pages_fit_and_pass_axe(server, page, size):
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.js_errors.clear()
    problems: dict[str, list] = {}
    for name, path, ready in pages(server):
        page.goto(server.url + path)
        if name == "overview":
            page.evaluate("() => localStorage.removeItem('blockyard-project')")  # all projects
            page.reload()
        page.wait_for_selector(ready)
        page.wait_for_timeout(150)  # late layout (Plotly, fonts)
        screenshot(page, f"{size[0]}x{size[1]}-{name}")
        overflow = page.evaluate(OVERFLOW_JS)
        if overflow:
            problems[f"{name} overflow"] = overflow
        if size == SIZES[0]:  # accessibility does not depend on the window size
            page.add_script_tag(path=str(AXE))
            result = page.evaluate("async () => (await axe.run(document, { resultTypes: ['violations'] })).violations"
                                   ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
                                   ".map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')}`)")
            if result:
                problems[f"{name} axe"] = result
    assert not problems, json.dumps(problems, indent=1)
    assert not page.js_errors, page.js_errors


def test_forms_are_keyboard_usable_with_labels(server, page):
    """Every form control in the New pipeline, New trigger, Add block, Files and Settings forms has
    a label, and the dialogs can be filled and submitted with the keyboard alone."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(server.url + "/projects/unit_0_setup")
    page.wait_for_selector("#new-pipeline")
    page.focus("#new-pipeline")
    page.keyboard.press("Enter")
    page.wait_for_selector(".modal input[name=name]")
    assert page.evaluate("() => !!document.activeElement.closest('.modal')")  # focus starts in the dialog
    for _ in range(5):  # Tab to the name field
        if page.evaluate("() => document.activeElement.name") == "name":
            break
        page.keyboard.press("Tab")
    page.keyboard.type("Keyboard only")
    page.keyboard.press("Enter")
    page.wait_for_url("**/pipelines/unit_0_setup/keyboard_only")
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('main input, main select, main textarea')]
        .filter(el => el.type !== 'hidden' && !el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')
                && !el.closest('.CodeMirror'))
        .map(el => el.outerHTML.slice(0, 80))""")
    assert unlabeled == []
    page.focus('.add-row [data-add="data_loader"]')
    page.keyboard.press("Enter")
    page.wait_for_selector(".modal input[name=uuid]")
    page.keyboard.press("Control+a")
    page.keyboard.type("typed_loader")
    page.keyboard.press("Enter")
    page.wait_for_selector('[data-block-card="typed_loader"] .CodeMirror')
    assert (server.root / "unit_0_setup" / "data_loaders" / "typed_loader.py").is_file()
    for path in ("/triggers", "/settings", "/files"):
        page.goto(server.url + path)
        page.wait_for_selector("main h1")
        page.wait_for_timeout(200)
        unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden' && !el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')
                    && !el.closest('.CodeMirror'))
            .map(el => el.outerHTML.slice(0, 80))""")
        assert unlabeled == [], (path, unlabeled)


def test_run_page_shows_the_error_once(server, page):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server.url}/runs/{server.failed_run}")
    page.wait_for_selector('[data-block-error="fails"]')
    page.wait_for_function("() => { const p = document.querySelector('pre.log'); return p && !p.textContent.startsWith('(waiting'); }")
    text = page.inner_text("main")
    assert text.count("No such file or directory") == 1, text
    assert "Block fails failed" in text.replace("\n", " ")
    log = page.inner_text("pre.log")
    # start and end lines even for a block that printed nothing (the engine's, else the UI's from the record)
    assert ("start block fails" in log or "── fails started" in log) and ("end block fails" in log or "── fails failed at" in log), log


def test_triggers_last_and_next_run_and_trigger_page(server, page):
    from blockyard.session import session_for
    from blockyard.project import Workspace

    trigger = next(t for t in api(server, "GET", "/api/triggers") if t["name"] == "daily_retrain")
    db = session_for(Workspace.open(server.root)).db
    run = db.create_pipeline_run(project="unit_0_setup", pipeline_uuid="example_pipeline", variables={},
                                 block_uuids=[], status="completed", trigger_id=trigger["id"])
    run_id = run["id"] if isinstance(run, dict) else run
    # a run of no trigger, so the filtered list (one row) differs from the unfiltered one
    db.create_pipeline_run(project="unit_0_setup", pipeline_uuid="example_pipeline", variables={},
                           block_uuids=[], status="completed")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(server.url + "/triggers")
    row = page.wait_for_selector("table.triggers tr:has-text('daily_retrain')")
    cells = row.query_selector_all("td")
    assert f"#{run_id}" in cells[5].inner_text() and "completed" in cells[5].inner_text()
    assert "2026" in cells[6].inner_text() or "202" in cells[6].inner_text()  # a date: the next @daily point
    row.query_selector("[data-action=open]").click()
    page.wait_for_url(f"**/triggers/{trigger['id']}")
    page.wait_for_selector(f"main table.data a:text('#{run_id}')")
    assert "@daily" in page.inner_text("main dl.kv")
    # the runs list filtered by the trigger's name
    page.goto(server.url + "/runs")
    page.wait_for_selector("select[name=trigger_id] option:has-text('daily_retrain')", state="attached")
    page.select_option("select[name=trigger_id]", label=f"daily_retrain (unit_0_setup/example_pipeline)")
    page.wait_for_url(re.compile(rf"/runs\?(.*&)?trigger_id={trigger['id']}(&|$)"))
    # The filtered page replaces the unfiltered one client-side: wait (retrying) for its
    # list, not the old page's rows that are still on screen for a moment.
    from playwright.sync_api import expect

    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    assert page.locator(f"table.runs tbody tr[data-run='{run_id}']").count() == 1


def test_settings_registers_an_existing_project_folder(server, page):
    import shutil as _shutil

    _shutil.copytree(server.root / "unit_0_setup", server.root / "copied_unit")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(server.url + "/settings")
    page.wait_for_selector("section[aria-label=Projects] table.data")
    page.fill("input[name=register_name]", "copied")
    page.fill("input[name=register_path]", "copied_unit")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Registered copied (")
    assert "copied:" in (server.root / "settings.yaml").read_text() and "path: copied_unit" in (server.root / "settings.yaml").read_text()
    page.wait_for_selector("#project-select option[value=copied]", state="attached")
    page.wait_for_selector("section[aria-label=Projects] td a:text('copied')")
    page.fill("input[name=register_name]", "elsewhere")
    page.fill("input[name=register_path]", "../outside")
    page.click("#register-project")
    page.wait_for_selector("section[aria-label=Projects] .error-box:has-text('inside the workspace')")


def test_settings_renames_a_project_with_its_runs_and_triggers(server, page):
    import shutil as _shutil

    import yaml

    from blockyard.session import session_for
    from blockyard.project import Workspace

    _shutil.copytree(server.root / "unit_0_setup", server.root / "to_rename")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(server.url + "/settings")
    page.wait_for_selector("section[aria-label=Projects] table.data")
    page.fill("input[name=register_name]", "to_rename")
    page.click("#register-project")
    page.wait_for_selector("text=Registered to_rename (")
    before = {t["id"] for t in api(server, "GET", "/api/triggers") if t["project"] == "to_rename"}
    assert before  # example_pipeline's triggers.yaml, synced under the project's name
    db = session_for(Workspace.open(server.root)).db
    run = db.create_pipeline_run(project="to_rename", pipeline_uuid="example_pipeline", variables={},
                                 block_uuids=[], status="running")
    run_id = run["id"] if isinstance(run, dict) else run

    # refused while the run is unfinished: nothing moves
    page.click("[data-rename=to_rename]")
    page.fill(".modal input[name=new_name]", "renamed_unit")
    page.keyboard.press("Enter")
    page.wait_for_selector(".modal .error-box:has-text('unfinished run')")
    assert (server.root / "to_rename").is_dir() and not (server.root / "renamed_unit").exists()
    assert api(server, "GET", f"/api/runs/{run_id}")["project"] == "to_rename"

    db.update_pipeline_run(run_id, status="completed")
    page.click("#rename-project-submit")
    page.wait_for_selector("section[aria-label=Projects] td a:text('renamed_unit')")
    assert not (server.root / "to_rename").exists()
    assert (server.root / "renamed_unit/pipelines/example_pipeline/metadata.yaml").is_file()
    projects = yaml.safe_load((server.root / "settings.yaml").read_text())["projects"]
    assert "renamed_unit" in projects and "to_rename" not in projects
    # the history moved with it: the run and the same trigger rows, under the new name
    assert api(server, "GET", f"/api/runs/{run_id}")["project"] == "renamed_unit"
    listed = api(server, "GET", "/api/runs?project=renamed_unit")["runs"]
    assert run_id in [r["id"] for r in listed]
    triggers = api(server, "GET", "/api/triggers")
    assert {t["id"] for t in triggers if t["project"] == "renamed_unit"} == before
    assert not [t for t in triggers if t["project"] == "to_rename"]
    page.wait_for_selector("#project-select option[value=renamed_unit]", state="attached")


def test_settings_notification_form_writes_yaml_and_test_sends(server, page):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import yaml

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    meta_path = server.root / "unit_3_observability" / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text()) or {}
    meta["notification_config"] = {
        "alert_on": ["trigger_failure"],
        "email_config": {"smtp_host": "mail.invalid", "smtp_port": 2525, "smtp_starttls": False,
                         "smtp_password": "{{ env_var('BLOCKYARD_TEST_SMTP_PASSWORD') }}", "to_emails": ["ops@example.com"]},
        "message_templates": {"failure": {"title": "Pipeline {pipeline_uuid} failed"}},
    }
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    try:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(server.url + "/settings")
        page.select_option("select[name=project]", "unit_3_observability")
        form = "form.notif-form"
        page.wait_for_selector(f"{form} input[name='email_config.smtp_host'][value='mail.invalid']")
        assert page.input_value(f"{form} input[name='email_config.smtp_password']") == "{{ env_var('BLOCKYARD_TEST_SMTP_PASSWORD') }}"
        page.check(f"{form} input[name=alert_on][value=trigger_success]")
        page.fill(f"{form} input[name='email_config.smtp_host']", "127.0.0.1")
        page.fill(f"{form} input[name='webhook_config.url']", f"http://127.0.0.1:{hook.server_port}/alerts")
        page.click("#save-notifications")
        page.wait_for_selector(f"{form} .ok:has-text('Saved in')")
        conf = yaml.safe_load(meta_path.read_text())["notification_config"]
        assert conf["alert_on"] == ["trigger_failure", "trigger_success"]
        assert conf["webhook_config"] == {"url": f"http://127.0.0.1:{hook.server_port}/alerts"}
        email = conf["email_config"]
        assert email["smtp_host"] == "127.0.0.1"
        assert email["smtp_password"] == "{{ env_var('BLOCKYARD_TEST_SMTP_PASSWORD') }}"  # untouched
        assert email["smtp_port"] == 2525 and email["to_emails"] == ["ops@example.com"] and email["smtp_starttls"] is False
        assert conf["message_templates"] == {"failure": {"title": "Pipeline {pipeline_uuid} failed"}}
        page.wait_for_selector("text=webhook")  # the channels line now lists the webhook
        page.click("#send-test-alert")
        row = page.wait_for_selector("[role=status] table tr:has-text('webhook')")
        assert "sent" in row.inner_text()
        assert received and isinstance(received[0], dict)
    finally:
        hook.shutdown()
