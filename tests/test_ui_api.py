"""The UI's routes without a browser: pages, static files, Plotly from the installed
package, and the guards of /ui-api (server token, CSRF, cross-origin)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from test_server_support import make_workspace


def client_for(tmp_path, token=None) -> tuple[TestClient, object]:
    from blockyard.server.app import create_app
    from blockyard.server.config import ServerConfig
    from blockyard.ui import mount

    space = make_workspace(tmp_path)
    app = mount(create_app(space.root, ServerConfig(token=token)))
    mount(app)  # idempotent
    return TestClient(app), space


def test_pages_static_and_plotly(tmp_path):
    client, space = client_for(tmp_path)
    for path in ("/", "/runs", "/runs/12", f"/pipelines/{space.project}/pipe", "/settings", "/login"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert '<script type="module" src="/static/js/app.js">' in r.text
    assert client.get("/static/js/app.js").headers["content-type"].startswith("text/javascript")
    assert "CodeMirror" in client.get("/static/vendor/codemirror/codemirror.js").text[:5000]
    plotly = client.get("/static/vendor/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert client.get("/api/status").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/nope").status_code == 404


def test_csrf_and_cross_origin(tmp_path):
    client, space = client_for(tmp_path)
    session = client.get("/ui-api/session").json()
    assert session["auth"] is False and session["csrf"]
    body = {"token": ""}  # no server token: any token is accepted, once the CSRF checks pass
    url = "/ui-api/login"
    client.cookies.clear()
    assert client.post(url, json=body).status_code == 403  # no cookie, no header
    client.get("/ui-api/session")
    assert client.post(url, json=body).status_code == 403  # cookie but no header
    csrf = client.cookies.get("blockyard_csrf")
    assert client.post(url, json=body, headers={"X-Blockyard-CSRF": csrf, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post(url, json=body, headers={"X-Blockyard-CSRF": csrf, "Origin": "http://evil.example"}).status_code == 403
    r = client.post(url, json=body, headers={"X-Blockyard-CSRF": csrf, "Origin": "http://testserver"})
    assert r.status_code == 200, r.text
    # the stop-gaps moved to the REST API (tests in test_server.py)
    assert client.post(f"/ui-api/projects/{space.project}/pipelines", json={"uuid": "x"},
                       headers={"X-Blockyard-CSRF": csrf}).status_code in (404, 405)
    assert client.get(f"/ui-api/pipelines/{space.project}/pipe/charts/x").status_code == 404


def test_ui_api_needs_the_server_token(tmp_path):
    client, space = client_for(tmp_path, token="tok")
    assert client.get("/ui-api/session").json()["auth"] is True
    assert client.get("/ui-api/overview").status_code == 401
    r = client.get("/ui-api/overview", headers={"Authorization": "Bearer tok"})
    assert r.status_code == 200
    assert {p["uuid"] for p in r.json()["pipelines"]} == {"pipe", "echo", "slow"}
    csrf = client.cookies.get("blockyard_csrf")
    assert client.post("/ui-api/login", json={"token": "bad"}, headers={"X-Blockyard-CSRF": csrf}).status_code == 401
    assert client.post("/ui-api/login", json={"token": "tok"}, headers={"X-Blockyard-CSRF": csrf}).status_code == 200
    assert client.get("/").status_code == 200  # the page itself is public; its data is not


def test_block_states_and_chart_data(tmp_path):
    from blockyard.api import run_pipeline

    client, space = client_for(tmp_path)
    assert client.get(f"/ui-api/pipelines/{space.project}/pipe/state").json() == {"blocks": {}, "clones": {}, "clones_run": None, "runs": []}
    run = run_pipeline(space.ref, workspace=space.root)
    assert run.ok
    states = client.get(f"/ui-api/pipelines/{space.project}/pipe/state").json()
    assert {k: v["status"] for k, v in states["blocks"].items()} == {"load": "completed", "square": "completed", "frame": "completed"}
    assert states["runs"][0]["id"] == run.run_id
    assert states["clones"] == {} and states["clones_run"] == run.run_id  # no dynamic block
    # a chart widget on `frame`, added through the API like the UI does
    client.get("/ui-api/session")
    r = client.post(f"/api/projects/{space.project}/pipelines/pipe/blocks",
                    json={"uuid": "frame_bar", "type": "chart", "upstream_blocks": ["frame"],
                          "configuration": {"chart_type": "bar chart", "x": "b", "y": "a"}})
    assert r.status_code == 201, r.text
    chart = client.get(f"/api/projects/{space.project}/pipelines/pipe/charts/frame_bar")
    assert chart.status_code == 200, chart.text
    assert chart.json()["type"] == "bar chart" and chart.json()["data"]["x"] == ["u", "v"]
    dash = client.get("/ui-api/dashboard", params={"days": 7}).json()
    assert sum(dash["by_status"]["completed"]) == 1 and len(dash["days"]) == 7


def test_block_states_count_dynamic_clones_of_the_last_run(tmp_path):
    from blockyard.api import run_pipeline
    from wsbuilder import block, write_pipeline

    client, space = client_for(tmp_path)
    write_pipeline(space.root, space.project, "fan", [
        block("items", "@data_loader\ndef items(**kwargs):\n    n = int(kwargs.get('n', 3))\n"
                       "    return [list(range(n)), [dict(block_uuid=f'i{i}') for i in range(n)]]\n",
              type="data_loader", config={"dynamic": True}),
        block("work", "@transformer\ndef work(x, **kwargs):\n    return x * 2\n", type="transformer", upstream=["items"]),
    ])
    url = f"/ui-api/pipelines/{space.project}/fan/state"
    first = run_pipeline(f"{space.project}/fan", workspace=space.root)
    assert first.ok, first.error
    states = client.get(url).json()
    assert states["clones"] == {"work": 3} and states["clones_run"] == first.run_id
    assert set(states["blocks"]) == {"items", "work"}  # clones are not blocks of the graph
    second = run_pipeline(f"{space.project}/fan", workspace=space.root, variables={"n": 5})
    assert second.ok, second.error
    assert client.get(url).json()["clones"] == {"work": 5}  # the newest run's count
