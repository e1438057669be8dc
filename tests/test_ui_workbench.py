"""The web UI as a course student's workbench, in real headless Chromium (one browser for
the module, its page reused): unit 1 of the course done entirely in the browser — write
utils/data_preparation in Files, add the blocks with the inline buttons, set the global
variables, execute with the keyboard, read outputs and tests, add and edit the histogram —
plus the unsaved-edit guard, project scoping and the Files page's own operations.

Screenshots go to test-artifacts/screenshots/ (see the README)."""
from __future__ import annotations

import os
import shutil

import pytest

from mirror import MIRROR
from ui_support import REPO, UiServer, browser_page, copy_workspace, screenshot, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

UTILS = REPO / "mlops" / "utils" / "data_preparation"
UNIT1 = REPO / "mlops" / "unit_1_data_preparation"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not any(MIRROR.glob("taxi/**/*.parquet")):
        pytest.skip(f"the data mirror {MIRROR} has no green taxi January 2024")
    old = os.environ.get("BLOCKYARD_DATA_MIRROR")
    os.environ["BLOCKYARD_DATA_MIRROR"] = str(MIRROR)
    root = copy_workspace(REPO / "mlops", tmp_path_factory.mktemp("wb") / "mlops")
    shutil.rmtree(root / "utils" / "data_preparation")  # the student writes these in Files
    srv = UiServer(root).start()
    try:
        yield srv
    finally:
        srv.stop()
        if old is None:
            os.environ.pop("BLOCKYARD_DATA_MIRROR", None)
        else:
            os.environ["BLOCKYARD_DATA_MIRROR"] = old


@pytest.fixture(scope="module")
def browser():
    with browser_page() as p:
        yield p


@pytest.fixture()
def page(browser):
    browser.js_errors.clear()
    yield browser
    assert not browser.js_errors, f"JavaScript errors: {browser.js_errors}"


def set_cm(page, selector: str, text: str) -> None:
    page.wait_for_selector(f"{selector} .CodeMirror")
    page.evaluate("([s, t]) => document.querySelector(`${s} .CodeMirror`).CodeMirror.setValue(t)", [selector, text])


def focus_cm(page, selector: str) -> None:
    page.evaluate("(s) => { const cm = document.querySelector(`${s} .CodeMirror`).CodeMirror; cm.focus(); cm.setCursor(0, 0); }", selector)


def new_file(page, path: str) -> None:
    page.click("#new-file")
    page.fill(".modal input[name=path]", path)
    page.click("#create-path")
    try:
        page.wait_for_selector(f'.file-editor[data-open="{path}"] .CodeMirror')
    except Exception:
        screenshot(page, "debug-new-file")
        print(page.inner_text("body"))
        raise


def test_files_page_tree_editor_and_python_check(server, page):
    page.goto(server.url + "/files")
    page.wait_for_selector('.tree li[data-path="utils"]')
    names = page.locator(".tree > li").evaluate_all("els => els.map(e => e.dataset.path)")
    assert "unit_0_setup" in names and "settings.yaml" in names
    assert not any(n.startswith(".blockyard") for n in names)
    # lazy: the utils folder's entries are not in the page until it is expanded
    assert page.locator('.tree li[data-path="utils/__init__.py"]').count() == 0
    page.click('.tree li[data-path="utils"] > .tree-item')
    page.wait_for_selector('.tree li[data-path="utils/__init__.py"]')

    page.click("#new-folder")
    page.fill(".modal input[name=path]", "utils/data_preparation")
    page.click("#create-path")
    page.wait_for_selector('.tree li[data-path="utils/data_preparation"][aria-selected=true]')
    assert "/utils/data_preparation" in page.inner_text("#target-folder")

    # the course's helper modules, written in the editor and saved with Ctrl+S
    for name in ("__init__.py", "cleaning.py", "feature_engineering.py", "feature_selector.py", "splitters.py", "encoders.py"):
        path = f"utils/data_preparation/{name}"
        new_file(page, path)
        sel = f'.file-editor[data-open="{path}"]'
        set_cm(page, sel, (UTILS / name).read_text())
        focus_cm(page, sel)
        page.keyboard.press("Control+s")
        page.wait_for_selector(f"{sel} .editor-message .ok")
        assert (server.root / path).read_text() == (UTILS / name).read_text()

    # a syntax error: shown with its line, the file untouched
    sel = '.file-editor[data-open="utils/data_preparation/encoders.py"]'
    good = (server.root / "utils/data_preparation/encoders.py").read_text()
    set_cm(page, sel, good + "\ndef broken(:\n    pass\n")
    page.click(f"{sel} [data-action=save]")
    err = page.wait_for_selector(f"{sel} [data-error-line]")
    assert err.get_attribute("data-error-line") == str(len(good.splitlines()) + 2)
    assert "syntax error" in err.inner_text()
    page.wait_for_selector(f"{sel} .cm-error-line")
    assert (server.root / "utils/data_preparation/encoders.py").read_text() == good
    set_cm(page, sel, good)
    page.click(f"{sel} [data-action=save]")
    page.wait_for_selector(f"{sel} .editor-message .ok")
    screenshot(page, "20-files")

    # YAML opens with its mode; rename/move and delete a scratch file
    page.click('.tree li[data-path="settings.yaml"] > .tree-item')
    page.wait_for_selector('.file-editor[data-open="settings.yaml"] .CodeMirror')
    assert page.evaluate("() => document.querySelector('.file-editor .CodeMirror').CodeMirror.getOption('mode')") == "yaml"
    new_file(page, "scratch/notes.md")
    set_cm(page, '.file-editor[data-open="scratch/notes.md"]', "# notes\n")
    page.keyboard.press("Control+s")
    page.wait_for_selector('.file-editor[data-open="scratch/notes.md"] .editor-message .ok')
    page.click('.file-editor [data-action=move]')
    page.fill(".modal input[name=to]", "scratch/renamed.md")
    page.click("#move-submit")
    page.wait_for_selector('.file-editor[data-open="scratch/renamed.md"]')
    assert (server.root / "scratch/renamed.md").read_text() == "# notes\n"
    assert not (server.root / "scratch/notes.md").exists()
    with page.expect_download() as dl:
        page.click('.file-editor [data-action=download]')
    assert open(dl.value.path(), encoding="utf-8").read() == "# notes\n"
    page.click('.file-editor [data-action=delete]')
    page.click("#confirm-delete")
    page.wait_for_selector('.tree li[data-path="scratch/renamed.md"]', state="detached")
    assert not (server.root / "scratch/renamed.md").exists()
    # upload into the selected folder
    page.click('.tree li[data-path="scratch"] > .tree-item')
    page.set_input_files("#upload-input", files=[{"name": "rows.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n"}])
    page.wait_for_selector('.tree li[data-path="scratch/rows.csv"]')
    assert (server.root / "scratch/rows.csv").read_bytes() == b"a,b\n1,2\n"
    page.click("#delete-folder")
    page.click("#confirm-delete")
    page.wait_for_selector('.tree li[data-path="scratch"]', state="detached")
    assert not (server.root / "scratch").exists()


def add_inline(page, kind: str, uuid: str, after: str | None) -> None:
    row = f'.add-row[data-after="{after or ""}"]'
    page.click(f'{row} [data-add="{kind}"]')
    page.fill(".modal input[name=uuid]", uuid)
    page.click("#add-inline-submit")
    page.wait_for_selector(f'[data-block-card="{uuid}"] .CodeMirror')


@pytest.mark.slow
def test_course_unit_1_in_the_browser(server, page):
    """Needs test_files_page_tree_editor_and_python_check's utils/data_preparation (same module)."""
    if not (server.root / "utils/data_preparation/encoders.py").exists():
        for f in UTILS.glob("*.py"):
            (server.root / "utils/data_preparation").mkdir(parents=True, exist_ok=True)
            shutil.copy(f, server.root / "utils/data_preparation" / f.name)
    page.goto(server.url + "/")
    page.wait_for_selector("#new-pipeline")
    page.click("text=New project")
    page.fill(".modal input[name=name]", "unit_1_ui")
    page.click(".modal button:text('Create project')")
    page.wait_for_url("**/projects/unit_1_ui")
    page.click("#new-pipeline")
    page.fill(".modal input[name=name]", "Data preparation")
    page.click("#create-pipeline")
    page.wait_for_url("**/pipelines/unit_1_ui/data_preparation")

    # the loader from the first inline row, with the course's code
    add_inline(page, "data_loader", "ingest", None)
    set_cm(page, '[data-block-card="ingest"]', (UNIT1 / "data_loaders/ingest.py").read_text())
    # global variables of the course
    for key, value in (("split_on_feature", "lpep_pickup_datetime"), ("split_on_feature_value", "2024-02-01"), ("target", "duration")):
        page.click("#add-variable")
        page.fill(".var-row:last-child .var-key", key)
        page.fill(".var-row:last-child .var-value", value)
    page.click("#save-variables")
    page.wait_for_selector("text=Saved: blocks get them in **kwargs")

    # Ctrl+Enter in the editor: saves and executes
    focus_cm(page, '[data-block-card="ingest"]')
    page.keyboard.press("Control+Enter")
    card = '[data-block-card="ingest"]'
    page.wait_for_selector(f"{card} .block-status .badge[data-status=completed]", timeout=120_000)
    page.wait_for_selector(f"{card} .nb-table")
    head = page.inner_text(f"{card} .nb-output .output-head")
    assert "shape 1" in head  # 1xx,xxx rows of January and February
    stats = page.inner_text(f'{card} .nb-table th[data-column="trip_distance"]')
    assert "missing 0" in stats and "min " in stats and "max " in stats
    assert "top " in page.inner_text(f'{card} .nb-table th[data-column="store_and_fwd_flag"]')
    assert page.locator(f"{card} .nb-table tbody tr").count() == 10
    page.click(f"{card} [data-action=more-rows]")
    page.wait_for_function(f"() => document.querySelectorAll('{card} .nb-table tbody tr').length === 60")
    page.wait_for_selector(f"{card} >> text=1/1 tests passed")

    add_inline(page, "transformer", "prepare", "ingest")
    set_cm(page, '[data-block-card="prepare"]', (UNIT1 / "transformers/prepare.py").read_text()
           .replace("from typing import Tuple", "from typing import Tuple\n\nif 'transformer' not in globals():\n"
                    "    from mage_ai.data_preparation.decorators import transformer", 1))
    add_inline(page, "data_exporter", "build", "prepare")
    assert page.locator("svg.dag .edge").count() == 2
    set_cm(page, '[data-block-card="build"]', (UNIT1 / "data_exporters/build.py").read_text()
           .replace("if 'data_exporter' not in globals():",
                    "if 'test' not in globals():\n    from mage_ai.data_preparation.decorators import test\n"
                    "if 'data_exporter' not in globals():", 1))
    # Shift+Enter on prepare: executes it and moves the focus to the next block (build)
    focus_cm(page, '[data-block-card="prepare"]')
    page.keyboard.press("Shift+Enter")
    page.wait_for_function("() => document.activeElement && document.activeElement.closest('[data-block-card=\"build\"]')")
    card = '[data-block-card="prepare"]'
    page.wait_for_selector(f"{card} .block-status .badge[data-status=completed]", timeout=120_000)
    page.wait_for_selector(f'{card} .nb-table th[data-column="duration"]')
    assert page.locator(f"{card} .nb-output").count() == 3  # df, df_train, df_val
    page.keyboard.press("Control+Enter")  # the focus is in build's editor
    card = '[data-block-card="build"]'
    page.wait_for_selector(f"{card} .block-status .badge[data-status=completed]", timeout=120_000)
    page.wait_for_selector(f"{card} >> text=3/3 tests passed")
    sparse = page.locator(f"{card} .nb-output").first
    assert "sparse matrix 105,870 × 7,027" in sparse.inner_text()
    cells = sparse.locator("tbody td").all_inner_texts()
    assert "0" in cells and "null" not in cells
    screenshot(page, "21-notebook-outputs")

    # a markdown block, rendered and editable
    add_inline(page, "markdown", "notes", "build")
    card = '[data-block-card="notes"]'
    set_cm(page, card, "# Data preparation\n\nJanuary trains, **February** validates.\n")
    page.click(f"{card} [data-action=save]")
    page.click(f"{card} [data-action=edit-markdown]")  # back to the preview
    page.wait_for_selector(f"{card} .markdown-body h1:text('Data preparation')")
    assert page.inner_text(f"{card} .markdown-body strong") == "February"

    # the course's histogram of prepare, then edited (buckets and code) and removed
    page.click("#add-chart")
    page.select_option(".modal select[name=block]", "prepare")
    page.select_option(".modal select[name=chart_type]", "histogram")
    page.fill(".modal input[name=x]", "x")  # the variable the chart code defines
    page.evaluate("t => document.querySelector('.modal .CodeMirror').CodeMirror.setValue(t)",
                  (UNIT1 / "charts/prepare_histogram_u9.py").read_text())
    page.click("#add-chart-submit")
    try:
        box = page.wait_for_selector(".chart-box .js-plotly-plot .main-svg", timeout=60_000)
    except Exception:
        screenshot(page, "debug-chart")
        print(page.inner_text(".charts-section"), page.inner_text("body")[-2000:])
        raise
    chart = page.locator(".chart-box").first
    uuid = chart.get_attribute("data-chart")
    bars = lambda: page.evaluate(f"() => document.querySelector('.chart-box[data-chart=\"{uuid}\"] .chart-plot').data[0].y.length")  # noqa: E731
    assert bars() == 20
    title = chart.locator(".gtitle").bounding_box()
    chart.locator(".chart-plot").hover()
    modebar = chart.locator(".modebar").bounding_box()
    assert title and modebar
    overlap = not (title["x"] + title["width"] <= modebar["x"] or modebar["x"] + modebar["width"] <= title["x"]
                   or title["y"] + title["height"] <= modebar["y"] or modebar["y"] + modebar["height"] <= title["y"])
    assert not overlap, f"the Plotly toolbar covers the title: {title} {modebar}"
    chart.locator("[data-action=edit-chart]").click()
    page.fill(".modal input[name=buckets]", "8")
    code = page.evaluate("() => document.querySelector('.modal .CodeMirror').CodeMirror.getValue()")
    assert "col = 'trip_distance'" in code
    page.evaluate("t => document.querySelector('.modal .CodeMirror').CodeMirror.setValue(t)", code.replace("<= 20", "<= 10"))
    page.click("#save-chart-submit")
    page.wait_for_function(f"() => {{ const p = document.querySelector('.chart-box[data-chart=\"{uuid}\"] .chart-plot'); return p && p.data && p.data[0].y.length === 8; }}", timeout=60_000)
    edges = page.evaluate(f"() => document.querySelector('.chart-box[data-chart=\"{uuid}\"] .chart-plot').data[0].x")
    assert max(edges) <= 10
    page.locator(".charts-section").scroll_into_view_if_needed()
    screenshot(page, "22-chart-edited")
    page.once("dialog", lambda d: d.accept())
    page.locator(f'.chart-box[data-chart="{uuid}"] [data-action=remove-chart]').click()
    page.wait_for_selector(f'.chart-box[data-chart="{uuid}"]', state="detached")
    assert not (server.root / "unit_1_ui" / "charts" / f"{uuid}.py").exists()
    del box


def test_unsaved_edit_guard_and_project_scope(server, page):
    page.goto(server.url + "/pipelines/unit_0_setup/example_pipeline")
    card = '[data-block-card="load_titanic"]'
    set_cm(page, card, "# an edit not saved yet\n")
    # switching pipelines from the sidebar: asked first; dismissing stays
    messages = []
    page.once("dialog", lambda d: (messages.append(d.message), d.dismiss()))
    page.click("nav a[data-nav='/runs']")
    page.wait_for_timeout(200)
    assert messages and "load_titanic" in messages[0]
    assert page.url.endswith("/pipelines/unit_0_setup/example_pipeline")
    assert "an edit not saved yet" in page.inner_text(f"{card} .CodeMirror")
    # accepting leaves without saving
    page.once("dialog", lambda d: d.accept())
    page.click("nav a[data-nav='/runs']")
    page.wait_for_url("**/runs**")
    assert "an edit not saved yet" not in (server.root / "unit_0_setup/data_loaders/load_titanic.py").read_text()

    # the project selector scopes the page and is kept in the URL
    page.select_option("#project-select", "unit_0_setup")
    page.wait_for_url("**/runs?project=unit_0_setup")
    page.click("nav a[data-nav='/triggers']")
    page.wait_for_url("**/triggers?project=unit_0_setup")
    page.click("nav a[data-nav='/files']")
    page.wait_for_url("**/files?project=unit_0_setup")
    page.wait_for_selector('.tree li[data-path="unit_0_setup"]')
    tops = page.locator(".tree > li").evaluate_all("els => els.map(e => e.dataset.path)")
    assert "unit_1_data_preparation" not in tops and "utils" in tops
    page.wait_for_selector('.tree li[data-path="unit_0_setup/pipelines"]')  # the project's folder is open
    page.reload()
    page.wait_for_selector('.tree li[data-path="unit_0_setup"]')
    assert page.input_value("#project-select") == "unit_0_setup"
    page.select_option("#project-select", "")
    page.wait_for_url("**/files")
    page.wait_for_selector('.tree li[data-path="unit_1_data_preparation"]')


def _api(srv, method, path, body=None):
    import json
    import urllib.request

    req = urllib.request.Request(srv.url + path, method=method, headers={"Content-Type": "application/json"},
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def test_add_between_blocks_and_the_mirror_hint_of_a_known_dataset(server, page):
    """An inline add between two blocks lands between them (page and metadata.yaml); a
    loader that cannot reach a known dataset's URL says how to read it from the mirror."""
    import urllib.error

    import yaml

    from ui_support import free_port

    base = "/api/projects/unit_0_setup/pipelines"
    _api(server, "POST", base, {"uuid": "insert_order"})
    base += "/insert_order"
    closed = free_port()  # nothing listens there: the request fails without touching the internet
    _api(server, "POST", base + "/blocks", {"uuid": "first_loader", "type": "data_loader", "code":
         "import pandas as pd\n\n\n@data_loader\ndef load(*args, **kwargs):\n"
         f"    return pd.read_csv('http://127.0.0.1:{closed}/datasets/titanic.csv')\n"})
    _api(server, "POST", base + "/blocks", {"uuid": "last_exporter", "type": "data_exporter", "upstream_blocks": ["first_loader"]})
    with pytest.raises(urllib.error.HTTPError) as bad:
        _api(server, "POST", base + "/blocks", {"uuid": "x", "type": "transformer", "after": "no_such_block"})
    assert 400 <= bad.value.code < 500 and "no_such_block" in bad.value.read().decode()

    page.goto(server.url + "/pipelines/unit_0_setup/insert_order")
    add_inline(page, "transformer", "middle", "first_loader")
    order = page.locator("[data-block-card]").evaluate_all("els => els.map(e => e.dataset.blockCard)")
    assert order == ["first_loader", "middle", "last_exporter"]
    meta = yaml.safe_load((server.root / "unit_0_setup/pipelines/insert_order/metadata.yaml").read_text())
    assert [b["uuid"] for b in meta["blocks"]] == order
    assert next(b for b in meta["blocks"] if b["uuid"] == "middle")["upstream_blocks"] == ["first_loader"]

    card = '[data-block-card="first_loader"]'
    page.click(f"{card} [data-action=execute]")
    page.wait_for_selector(f"{card} .block-status .badge[data-status=failed]", timeout=60_000)
    error = page.inner_text(f"{card} .error-box")
    assert "URLError" in error and "known dataset 'titanic'" in error
    assert "fetch('titanic')" in error and "BLOCKYARD_DATA_MIRROR" in error
