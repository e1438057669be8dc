// Plotly (served from the installed `plotly` package) drawing blockyard.charts data.
import { h } from "./lib.js";

let loading = null;
export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/static/vendor/plotly.min.js";
      s.onload = () => (window.Plotly ? resolve(window.Plotly) : reject(new Error("plotly is not installed on the server (pip install plotly)")));
      s.onerror = () => reject(new Error("could not load Plotly"));
      document.head.append(s);
    });
  }
  return loading;
}

const LAYOUT = {
  margin: { l: 50, r: 40, t: 40, b: 48 }, height: 300, font: { family: "system-ui, sans-serif", size: 12 },
  paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", legend: { orientation: "h" },
};
const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
// The toolbar (modebar) stands vertically at the right edge and the title is left-aligned:
// the toolbar never covers the title.
LAYOUT.modebar = { orientation: "v" };

// Traces and layout for compute_chart's JSON ({type, title, data, options}).
export function figure(chart) {
  const d = chart.data || {};
  const o = chart.options || {};
  const layout = { ...LAYOUT, title: { text: chart.title || "", font: { size: 14 }, x: 0, xanchor: "left", xref: "paper" } };
  switch (chart.type) {
    case "histogram": {
      const edges = d.edges || [];
      const x = (d.counts || []).map((_, i) => (edges[i] + edges[i + 1]) / 2);
      const widths = (d.counts || []).map((_, i) => edges[i + 1] - edges[i]);
      layout.xaxis = { title: { text: d.x_label || "" } };
      layout.yaxis = { title: { text: "count" } };
      layout.bargap = 0.02;
      return { traces: [{ type: "bar", x, y: d.counts, width: widths, marker: { color: "#2f6fde" }, hovertemplate: "%{x}: %{y}<extra></extra>" }], layout };
    }
    case "bar chart":
    case "time series bar chart": {
      const horizontal = (o.chart_style || d.chart_style) === "horizontal";
      const traces = (d.y || []).map((ys, i) => horizontal
        ? { type: "bar", orientation: "h", y: d.x, x: ys, name: (d.y_labels || [])[i] || `y${i}` }
        : { type: "bar", x: d.x, y: ys, name: (d.y_labels || [])[i] || `y${i}` });
      if (horizontal) layout.yaxis = { automargin: true };
      layout.height = horizontal ? Math.max(300, 24 * (d.x || []).length + 80) : 300;
      return { traces, layout };
    }
    case "line chart":
    case "time series line chart":
      return { traces: (d.y || []).map((ys, i) => ({ type: "scatter", mode: "lines+markers", x: d.x, y: ys, name: (d.y_labels || [])[i] || `y${i}` })), layout };
    case "pie chart":
      return { traces: [{ type: "pie", labels: d.labels, values: d.values, hole: 0.35, textinfo: "label+percent" }], layout };
    case "table": {
      const cols = d.columns || [];
      const rows = d.rows || [];
      const values = cols.map((_, c) => rows.map((r) => r[c]));
      layout.height = Math.min(420, 60 + 24 * rows.length);
      return { traces: [{ type: "table", header: { values: cols, fill: { color: "#eef2f7" }, align: "left" }, cells: { values, align: "left" } }], layout };
    }
    default:
      return { traces: [], layout };
  }
}

export async function drawChart(el, chart) {
  const Plotly = await loadPlotly();
  const { traces, layout } = figure(chart);
  el.classList.add("chart");
  el.dataset.chartType = chart.type;
  await Plotly.newPlot(el, traces, layout, CONFIG);
  return el;
}

export async function plot(el, traces, layout = {}) {
  const Plotly = await loadPlotly();
  await Plotly.newPlot(el, traces, { ...LAYOUT, ...layout }, CONFIG);
  return el;
}

export const CHART_TYPES = [
  ["histogram", "Histogram"], ["bar chart", "Bar chart"], ["bar chart:horizontal", "Horizontal bar chart"],
  ["line chart", "Line chart"], ["time series line chart", "Time series (line)"], ["time series bar chart", "Time series (bar)"],
  ["pie chart", "Pie chart"], ["table", "Table"],
];

export function chartBox(title) {
  return h("div.chart-box", h("div.chart-title", title), h("div.chart-plot"));
}
