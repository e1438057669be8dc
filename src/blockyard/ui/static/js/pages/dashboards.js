// Dashboards: runs per day by status, run durations, MLflow training metrics.
import { h, clear, api, errorBox, empty } from "../lib.js";
import { setTitle, state } from "../app.js";
import { plot } from "../charts.js";
import { STATUS_COLORS } from "../dag.js";

export default async function dashboards(root, { query }) {
  setTitle("Dashboards", "Dashboards");
  const days = Number(query.get("days") || 30);
  const project = query.get("project") || state.project || "";
  const counts = h("div.chart-plot", { id: "runs-per-day" });
  const durations = h("div.chart-plot", { id: "run-durations" });
  const rmse = h("div.chart-plot", { id: "mlflow-rmse" });
  const perModel = h("div.chart-plot", { id: "mlflow-runs" });
  const mlNote = h("div");
  clear(root, h("div.page-head", h("div", h("h1", "Dashboards"), h("p.muted", `Last ${days} days${project ? " · project " + project : " · all projects"}`))),
    h("div.chart-grid",
      h("section.section", h("h2", "Pipeline runs per day"), counts),
      h("section.section", h("h2", "Run durations"), durations)),
    h("h2", { style: { margin: "8px 0" } }, "Training (MLflow)"), mlNote,
    h("div.chart-grid",
      h("section.section", h("h2", "RMSE per model over time"), rmse),
      h("section.section", h("h2", "Runs per model"), perModel)));

  try {
    const d = await api("/ui-api/dashboard", { query: { days, project } });
    const statuses = Object.keys(d.by_status);
    if (!statuses.length) clear(counts, empty("No runs yet", "Run a pipeline to fill this chart."));
    else await plot(counts, statuses.map((s) => ({ type: "bar", name: s, x: d.days, y: d.by_status[s], marker: { color: STATUS_COLORS[s] } })), { barmode: "stack", height: 300 });
    if (!d.durations.length) clear(durations, empty("No finished runs yet"));
    else {
      const byPipe = {};
      for (const r of d.durations) (byPipe[r.pipeline] ||= []).push(r);
      await plot(durations, Object.entries(byPipe).map(([p, rs]) => ({ type: "scatter", mode: "markers", name: p, x: rs.map((r) => r.started_at), y: rs.map((r) => r.seconds),
        text: rs.map((r) => `#${r.id} ${r.status}`), hovertemplate: "%{text}: %{y:.2f} s<extra></extra>" })), { yaxis: { title: { text: "seconds" } }, height: 300 });
    }
  } catch (e) { clear(counts, errorBox(e, "Run statistics")); }

  try {
    const m = await api("/ui-api/mlflow");
    if (!m.available || !m.runs.length) {
      clear(mlNote, h("p.muted", m.reason || "No MLflow runs yet: run unit_2_training's sklearn_training or xgboost_training."));
      clear(rmse); clear(perModel);
    } else {
      const withRmse = m.runs.filter((r) => r.rmse !== null && r.rmse !== undefined && r.start_time);
      const models = {};
      for (const r of withRmse) (models[r.model] ||= []).push(r);
      await plot(rmse, Object.entries(models).map(([name, rs]) => {
        rs.sort((a, b) => a.start_time.localeCompare(b.start_time));
        return { type: "scatter", mode: "lines+markers", name, x: rs.map((r) => r.start_time), y: rs.map((r) => r.rmse) };
      }), { yaxis: { title: { text: "RMSE" } }, height: 320, legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" } });
      const count = {};
      for (const r of m.runs) count[r.model] = (count[r.model] || 0) + 1;
      const names = Object.keys(count).sort((a, b) => count[a] - count[b]);
      await plot(perModel, [{ type: "bar", orientation: "h", y: names, x: names.map((n) => count[n]), marker: { color: "#7c4dde" } }], { height: Math.max(260, 30 * names.length + 80), yaxis: { automargin: true } });
    }
  } catch (e) { clear(mlNote, errorBox(e, "MLflow")); }
}
