"""The serving page of `blockyard serve` (GET /): what is served, how it is doing, a
form to send a prediction, and the retraining history from the registry.

A single self-contained HTML page that polls `/version`, `/stats` and `/retraining`
(no build step, no external assets, so it works offline).
"""
from __future__ import annotations

from pathlib import Path

RETRAINING_TAGS = ("retraining_decision", "retraining_reason", "retraining_month", "retraining_challenger_rmse",
                   "retraining_champion_rmse", "retraining_champion_version", "train_months", "retraining_id",
                   "retraining_trigger")


def retraining_history(workspace_root: Path, name: str, limit: int = 50) -> list[dict]:
    """The registered versions of `name`, newest first, with their retraining tags and
    the aliases that point at them."""
    from blockyard.ml.tracking import setup_mlflow

    client = setup_mlflow(workspace_root).client
    versions = client.search_model_versions(f"name = '{name}'")
    by_version: dict[str, list[str]] = {}  # search results carry no aliases: ask the model
    if versions:
        for alias, version in (client.get_registered_model(name).aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True)[:limit]:
        tags = mv.tags or {}
        out.append({
            "version": str(mv.version),
            "created": mv.creation_timestamp,
            "run_id": mv.run_id,
            "aliases": sorted(by_version.get(str(mv.version), [])),
            "rmse": tags.get("rmse"),
            **{k: tags.get(k) for k in RETRAINING_TAGS},
        })
    return out


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Blockyard serving</title>
<style>
 body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:12px 20px;font-size:16px}
 main{display:grid;grid-template-columns:1fr 1fr;gap:16px;padding:16px 20px}
 section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 16px}
 h2{font-size:14px;margin:0 0 8px;color:#4a5568;text-transform:uppercase;letter-spacing:.04em}
 .big{font-size:26px;font-weight:600} .kv{display:grid;grid-template-columns:auto 1fr;gap:4px 12px}
 table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #eef0f3;padding:4px 6px;text-align:left;font-size:13px}
 textarea{width:100%;height:110px;font:12px monospace} button{padding:6px 14px;margin-top:6px}
 pre{background:#f2f4f7;padding:8px;white-space:pre-wrap;margin:6px 0 0} .wide{grid-column:1/3}
 .promoted{color:#1a7f37;font-weight:600} .kept{color:#9a6700;font-weight:600}
</style></head><body>
<header>Blockyard serving &mdash; <span id="title">loading&hellip;</span></header>
<main>
 <section><h2>Model</h2><div class="kv">
  <span>model</span><span id="model">-</span><span>alias</span><span id="alias">-</span>
  <span>version</span><span class="big" id="version">-</span><span>class</span><span id="cls">-</span>
  <span>features</span><span id="features">-</span></div></section>
 <section><h2>Traffic</h2><div class="kv">
  <span>requests/s (10 s)</span><span class="big" id="rps">-</span>
  <span>requests</span><span id="requests">-</span><span>latency p50 / p90 / p99</span><span id="lat">-</span>
  <span>client errors</span><span id="cerr">-</span><span>server errors</span><span id="serr">-</span>
  <span>predictions logged</span><span id="logged">-</span></div></section>
 <section><h2>Send a prediction</h2>
  <textarea id="payload">{"inputs": [{"PULocationID": 236, "DOLocationID": 239, "trip_distance": 1.98}]}</textarea>
  <button id="send">Predict</button><pre id="answer">&nbsp;</pre></section>
 <section><h2>Last swaps</h2><table><thead><tr><th>when</th><th>from</th><th>to</th><th>load s</th></tr></thead>
  <tbody id="swaps"></tbody></table></section>
 <section class="wide"><h2>Retraining history</h2><table><thead><tr><th>version</th><th>aliases</th>
  <th>month</th><th>trigger</th><th>decision</th><th>reason</th><th>trained on</th></tr></thead><tbody id="history"></tbody></table></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const text = (v) => (v === null || v === undefined || v === '') ? '-' : String(v);
function row(cells, cls) {
  const tr = document.createElement('tr');
  cells.forEach((c, i) => { const td = document.createElement('td'); td.textContent = text(c);
    if (cls && cls[i]) td.className = cls[i]; tr.appendChild(td); });
  return tr;
}
async function refresh() {
  try {
    const v = await (await fetch('version')).json();
    $('title').textContent = v.model + '@' + v.alias + ' v' + text(v.version);
    $('model').textContent = v.model; $('alias').textContent = v.alias; $('version').textContent = text(v.version);
    $('cls').textContent = v.details ? v.details.model_class : '-';
    $('features').textContent = v.details ? v.details.features.join(', ') : '-';
    const tb = $('swaps'); tb.replaceChildren(...(v.swaps || []).slice().reverse().map(s =>
      row([new Date(s.at * 1000).toLocaleTimeString(), s.from_version, s.to_version, s.load_seconds])));
    const s = await (await fetch('stats')).json();
    $('rps').textContent = s.requests_per_second_10s; $('requests').textContent = s.requests;
    const l = s.latency || {};
    $('lat').textContent = l.p50_ms === undefined ? '-' : `${l.p50_ms} / ${l.p90_ms} / ${l.p99_ms} ms`;
    $('cerr').textContent = s.client_errors; $('serr').textContent = s.server_errors;
    $('logged').textContent = text(s.predictions_logged);
    const h = await (await fetch('retraining')).json();
    $('history').replaceChildren(...h.versions.map(r => row(
      [r.version, r.aliases.join(', '), r.retraining_month, r.retraining_trigger, r.retraining_decision, r.retraining_reason,
       r.train_months], [null, null, null, null, r.retraining_decision || null])));
  } catch (e) { $('title').textContent = 'not reachable: ' + e; }
}
$('send').addEventListener('click', async () => {
  const r = await fetch('invocations', {method: 'POST', headers: {'content-type': 'application/json'},
                                        body: $('payload').value});
  const body = await r.text();
  $('answer').textContent = r.status + ' (version ' + text(r.headers.get('x-model-version')) + ')\\n' + body;
  refresh();
});
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
