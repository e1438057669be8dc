"""The Settings page's API without a browser: bad input to the notification form and to
a project rename is a 4xx naming what was wrong; clearing a channel's fields removes it
while keys the form does not show stay."""
from __future__ import annotations

import yaml

from test_ui_api import client_for


def _csrf(client) -> dict:
    return {"X-Blockyard-CSRF": client.get("/ui-api/session").json()["csrf"], "Origin": "http://testserver"}


def test_notification_form_bad_input_and_clearing(tmp_path):
    client, space = client_for(tmp_path)
    h = _csrf(client)
    meta = space.root / space.project / "metadata.yaml"
    data = yaml.safe_load(meta.read_text()) if meta.exists() else {}
    data = data or {}
    data["notification_config"] = {"slack_config": {"webhook_url": "{{ env_var('HOOK') }}", "channel": "#ops"},
                                   "teams_config": [{"webhook_url": "a"}, {"webhook_url": "b"}]}
    meta.write_text(yaml.safe_dump(data))
    url = "/ui-api/notification-config"
    got = client.get(url, params={"project": space.project}).json()
    assert got["channels"]["slack_config"]["webhook_url"] == "{{ env_var('HOOK') }}"
    for body, word in (({"alert_on": ["on_tuesday"]}, "on_tuesday"),
                       ({"channels": {"pager_config": {}}}, "pager_config"),
                       ({"channels": {"slack_config": {"colour": "red"}}}, "colour"),
                       ({"channels": {"teams_config": {"webhook_url": "c"}}}, "list of 2")):
        r = client.put(url, json={"project": space.project, **body}, headers=h)
        assert r.status_code == 422 and word in r.text, (body, r.text)
    assert client.put(url, json={"project": "nope"}, headers=h).status_code == 404
    # clearing the shown field keeps the unknown one (channel), so the section stays
    r = client.put(url, json={"project": space.project, "channels": {"slack_config": {"webhook_url": ""}}}, headers=h)
    assert r.status_code == 200
    conf = yaml.safe_load(meta.read_text())["notification_config"]
    assert conf["slack_config"] == {"channel": "#ops"} and len(conf["teams_config"]) == 2


def test_rename_bad_input(tmp_path):
    client, space = client_for(tmp_path)
    h = _csrf(client)
    url = f"/ui-api/projects/{space.project}/rename"
    assert client.post("/ui-api/projects/nope/rename", json={"new_name": "x"}, headers=h).status_code == 404
    for name in ("../escape", "a/b", ""):
        r = client.post(url, json={"new_name": name}, headers=h)
        assert 400 <= r.status_code < 500, (name, r.text)
    assert client.post(url, json={"new_name": space.project}, headers=h).status_code == 422
    assert (space.root / space.project).is_dir()
