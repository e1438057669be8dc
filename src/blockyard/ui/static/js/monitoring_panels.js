// Monitoring on the run and pipeline pages: the checks a run made (with their Evidently
// drift reports) and the pipeline's alert rules with their last state and a test-send.
import { h, clear, api, button, busy, table, fmtTime, errorBox } from "./lib.js";

const num = (v, digits = 3) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));

// The monitoring checks made by run `runId` (nothing shown when it made none).
export async function drawRunChecks(box, runId) {
  let checks;
  try { ({ checks } = await api("/api/monitoring/checks", { query: { run_id: runId } })); } catch { return; }
  if (!checks.length) { clear(box); return; }
  clear(box, h("section.section.monitoring-checks", { "aria-label": "Monitoring" }, h("h2", "Monitoring"),
    table(["Model", "Period", "Drift share", "RMSE", "Report"], checks.map((c) => {
      const s = c.summary || {};
      return [c.model + (c.model_version ? ` v${c.model_version}` : ""), c.period || "—", num(s.drift_share, 2), num(s.rmse),
        c.report_url ? h("a.drift-report", { href: c.report_url, target: "_blank", rel: "noopener" }, "Drift report") : "—"];
    }))));
}

// The alert rules of a project's pipeline (notification_config.rules) with each model's
// state; one compact entry per rule (the pipeline page's side column is narrow).
export async function drawAlertRules(box, project, pipeline) {
  let rules;
  try { ({ rules } = await api("/api/monitoring/rules", { query: { project, pipeline } })); } catch (e) {
    box.hidden = false; clear(box, h("h2", "Alert rules"), errorBox(e, "Alert rules")); return;
  }
  if (!rules.length) { clear(box); box.hidden = true; return; }
  box.hidden = false;
  const result = h("div", { role: "status" });
  const items = rules.map((r) => {
    const send = button("Test-send", (e) => busy(e.currentTarget, async () => {
      try {
        const out = await api("/ui-api/monitoring/rules/test", { method: "POST", body: { project, pipeline, rule: r.name } });
        clear(result, out.results.length
          ? table(["Channel", "Result", "Error"], out.results.map((x) => [x.channel, x.ok ? h("span.ok", "sent") : h("span.bad", "failed"), x.error || ""]))
          : h("p.muted", "Nothing sent: the notification_config has no channel."));
      } catch (err) { clear(result, errorBox(err, "Test-send")); }
    }), "small secondary", { "data-rule": r.name, title: "Send this rule's alert, with the newest check's figures, as a test" });
    const states = r.states.length ? r.states : [null];
    return h("li.alert-rule", { "data-rule": r.name, style: { padding: "6px 0", borderBottom: "1px solid #e4e7ec" } },
      h("div", { style: { display: "flex", justifyContent: "space-between", alignItems: "center", gap: "8px" } }, h("strong", r.name), send),
      h("div", h("code", `${r.metric} ${r.op} ${r.threshold}`)),
      states.map((s) => h("div.small.rule-state", { "data-scope": s ? s.scope : "" },
        !s ? h("span.muted", "not evaluated yet")
          : [s.firing ? h("span.badge.status-failed.rule-firing", "firing") : h("span.badge.status-completed.rule-ok", "ok"),
             ` ${s.scope} · last value ${num(s.last_value)} · since ${fmtTime(s.since)}`])));
  });
  clear(box, h("h2", "Alert rules"), h("p.muted.small", "notification_config.rules: one alert when a rule starts to hold, one recovery notice when it clears."),
    h("ul.alert-rules", { style: { listStyle: "none", padding: "0", margin: "0" } }, items), result);
}
