// Dashboards as files (presenters/<name>/dashboard/block_layout.yaml, Mage's format):
// the list at /dashboards/files, one dashboard at /dashboards/files/<name>.
import { h, clear, api, errorBox, empty, encPath } from "../lib.js";
import { setTitle } from "../app.js";
import { drawChart } from "../charts.js";

export default async function fileDashboards(root, { name }) {
  if (!name) return list(root);
  setTitle(name, "Dashboards", name);
  const grid = h("div.file-dashboard", { id: "file-dashboard" });
  clear(root, h("div.page-head", h("div", h("h1", name), h("p.muted", "presenters/" + name + "/dashboard/block_layout.yaml"))), grid);
  let board;
  try {
    // The page's query (e.g. ?month=2023-02) becomes the chart code's variables.
    board = await api("/api/dashboards/" + encPath(name) + location.search);
  } catch (e) {
    clear(grid, errorBox(e, "Dashboard " + name));
    return;
  }
  // Lay out every cell first so that each plot is drawn at its final width.
  const pending = [];
  for (const row of board.rows) {
    const rowEl = h("div.chart-grid", { style: { display: "flex", gap: "12px", marginBottom: "12px" } });
    grid.appendChild(rowEl);
    for (const chart of row) {
      const plotEl = h("div.chart-plot", { "data-uuid": chart.uuid });
      rowEl.appendChild(h("section.section", { style: { flex: String(chart.width || 1), minWidth: "0" } }, plotEl));
      if (chart.error) clear(plotEl, h("h2", chart.title || chart.uuid), h("pre.error", chart.error));
      // A custom chart's picture (e.g. the SHAP plots), drawn by its @render function.
      else if (chart.type === "image") clear(plotEl, h("h2", chart.title || chart.uuid), h("img.chart-image", { alt: chart.title || chart.uuid, src: "data:" + chart.data.mime + ";base64," + chart.data.base64, style: { maxWidth: "100%" } }));
      else pending.push([plotEl, chart]);
    }
  }
  for (const [el, chart] of pending) {
    await drawChart(el, chart);
    // Labels such as "2023-02" are categories (months), not dates to spread on a time axis.
    // (Pies have no x axis; a histogram's is numeric.)
    if (["bar chart", "line chart"].includes(chart.type) && (chart.options || {}).chart_style !== "horizontal" && window.Plotly) await window.Plotly.relayout(el, { "xaxis.type": "category" });
  }
}

async function list(root) {
  setTitle("Dashboards", "Dashboards", "Files");
  const body = h("div", { id: "file-dashboards" });
  clear(root, h("div.page-head", h("div", h("h1", "Dashboards (files)"), h("p.muted", "presenters/<name>/dashboard/block_layout.yaml"))), body);
  try {
    const { dashboards } = await api("/api/dashboards");
    if (!dashboards.length) clear(body, empty("No dashboards", "Add presenters/<name>/dashboard/block_layout.yaml to the workspace."));
    else clear(body, h("ul", ...dashboards.map((d) => h("li", h("a", { href: "/dashboards/files/" + encPath(d), "data-link": "" }, d)))));
  } catch (e) {
    clear(body, errorBox(e, "Dashboards"));
  }
}
