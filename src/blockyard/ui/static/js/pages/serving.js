// Serving: the model `blockyard serve` answers with, its traffic and latency, the last
// swaps, a prediction form and the retraining history — read through /ui-api/serving
// (same origin; the server asks the serving process).
import { h, clear, api, headers, empty, errorBox, button, field, busy, table } from "../lib.js";
import { setTitle } from "../app.js";

const EXAMPLE = '{"inputs": [{"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5}]}';
const show = (v) => (v === null || v === undefined || v === "" ? "-" : String(v));

function stat(label, value, id) {
  return h("div.stat", h("div.stat-value", { id }, show(value)), h("div.stat-label", label));
}

export default async function serving(root) {
  setTitle("Serving", "Serving");
  const status = h("p.muted", { id: "serving-status" }, "Loading…");
  const body = h("div");
  const payload = h("textarea", { id: "serving-payload", rows: 4, spellcheck: false, style: { width: "100%", fontFamily: "monospace" } });
  payload.value = EXAMPLE;
  const answer = h("pre", { id: "serving-answer", "aria-live": "polite" }, "");
  const send = button("Predict", () => busy(send, async () => {
    const r = await fetch("/ui-api/serving/invocations", { method: "POST", credentials: "same-origin",
      headers: headers({ "Content-Type": "application/json" }), body: payload.value });
    const version = r.headers.get("x-model-version");
    answer.textContent = `${r.status}${version ? " · version " + version : ""}\n${await r.text()}`;
  }), "primary", { id: "serving-send" });
  clear(root, h("div.page-head", h("div", h("h1", "Serving"), status)), body,
    h("section.section", h("h2", "Send a prediction"), field("JSON payload (MLflow scoring protocol)", payload), send, answer));

  let timer = null, alive = true;
  async function load() {
    try {
      const d = await api("/ui-api/serving");
      if (!alive) return;
      draw(d);
    } catch (e) {
      if (alive) clear(body, errorBox(e, "Serving"));
    }
    if (alive) timer = setTimeout(load, 2000);
  }

  function draw(d) {
    if (!d.reachable) {
      status.textContent = d.url;
      clear(body, empty("The serving process is not running", d.error));
      return;
    }
    const v = d.version || {}, s = d.stats || {}, l = s.latency || {}, health = d.health || {};
    status.textContent = `${d.url} · ${show(v.model)}@${show(v.alias)}`;
    const history = ((d.retraining || {}).versions || []).map((r) => [r.version, r.aliases.join(", "), r.retraining_month,
      r.retraining_trigger, r.retraining_decision, r.retraining_reason, r.train_months]);
    clear(body,
      h("div.stats",
        stat("Version answering", v.version, "serving-version"),
        stat("Requests / s (10 s)", s.requests_per_second_10s, "serving-rps"),
        stat("Requests", s.requests, "serving-requests"),
        stat("Latency p50 / p99", l.p50_ms === undefined ? null : `${l.p50_ms} / ${l.p99_ms} ms`, "serving-latency"),
        stat("Errors (client / server)", `${show(s.client_errors)} / ${show(s.server_errors)}`, "serving-errors")),
      h("div.grid-main",
        h("section.section", h("h2", "Retraining history"),
          h("div", { id: "serving-history" }, table(["version", "aliases", "month", "trigger", "decision", "reason", "trained on"], history,
            { empty: "No registered versions yet" }))),
        h("section.section", h("h2", "Model"),
          h("dl.kv", h("dt", "model"), h("dd", show(v.model)), h("dt", "alias"), h("dd", show(v.alias)),
            h("dt", "class"), h("dd", show(v.details && v.details.model_class)),
            h("dt", "status"), h("dd", show(health.status)),
            h("dt", "predictions logged"), h("dd", show(s.predictions_logged))),
          h("h2", "Last swaps"),
          table(["from", "to", "load s"], (v.swaps || []).slice().reverse().map((w) => [w.from_version, w.to_version, w.load_seconds]),
            { empty: "No swap since start" }))));
  }

  load();
  return () => { alive = false; clearTimeout(timer); };
}
