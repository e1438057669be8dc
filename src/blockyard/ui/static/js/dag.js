// The pipeline DAG as SVG, laid out by topological level (top to bottom).
import { svg } from "./lib.js";

export const TYPE_COLORS = {
  data_loader: "#2f6fde", transformer: "#7c4dde", data_exporter: "#d9822b", custom: "#1f9d8b",
  sensor: "#c2417a", scratchpad: "#6b7280", markdown: "#6b7280", global_data_product: "#0e7490",
  chart: "#64748b", callback: "#6b7280", conditional: "#6b7280",
};
export const STATUS_COLORS = {
  completed: "#16a34a", failed: "#dc2626", running: "#2563eb", queued: "#a16207", initial: "#9ca3af",
  cancelled: "#6b7280", upstream_failed: "#ea580c", condition_failed: "#8b5cf6",
};

const W = 188, H = 46, GX = 22, GY = 40, PAD = 14;

export function layoutDag(blocks) {
  const byId = new Map(blocks.map((b) => [b.uuid, b]));
  const level = new Map();
  const visiting = new Set();
  const depth = (u) => {
    if (level.has(u)) return level.get(u);
    if (visiting.has(u)) return 0; // a cycle: validation reports it elsewhere
    visiting.add(u);
    const b = byId.get(u);
    let d = 0;
    for (const up of (b && b.upstream_blocks) || []) if (byId.has(up)) d = Math.max(d, depth(up) + 1);
    visiting.delete(u);
    level.set(u, d);
    return d;
  };
  blocks.forEach((b) => depth(b.uuid));
  const rows = [];
  for (const b of blocks) (rows[level.get(b.uuid)] ||= []).push(b.uuid);
  const pos = new Map();
  rows.forEach((row, r) => {
    if (r > 0) {
      // barycentre of the parents keeps edges short and mostly uncrossed
      const bc = (u) => {
        const ups = (byId.get(u).upstream_blocks || []).filter((x) => pos.has(x));
        return ups.length ? ups.reduce((s, x) => s + pos.get(x).i, 0) / ups.length : 1e9;
      };
      row.sort((a, b) => bc(a) - bc(b));
    }
    row.forEach((u, i) => pos.set(u, { r, i }));
  });
  const widest = Math.max(1, ...rows.map((r) => (r ? r.length : 0)));
  const width = PAD * 2 + widest * W + (widest - 1) * GX;
  const height = PAD * 2 + rows.length * H + Math.max(0, rows.length - 1) * GY;
  for (const [u, p] of pos) {
    const n = rows[p.r].length;
    const rowWidth = n * W + (n - 1) * GX;
    p.x = (width - rowWidth) / 2 + p.i * (W + GX);
    p.y = PAD + p.r * (H + GY);
  }
  return { pos, width, height };
}

export function drawDag(blocks, states, { onSelect, selected, clones = {}, clonesRun = null } = {}) {
  const { pos, width, height } = layoutDag(blocks);
  const root = svg("svg", { class: "dag", width, height, viewBox: `0 0 ${width} ${height}`, role: "group",
    "aria-label": `Pipeline graph: ${blocks.length} blocks` });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" }))));
  const edges = svg("g", { class: "edges" });
  for (const b of blocks) {
    const to = pos.get(b.uuid);
    for (const up of b.upstream_blocks || []) {
      const from = pos.get(up);
      if (!from) continue;
      const x1 = from.x + W / 2, y1 = from.y + H, x2 = to.x + W / 2, y2 = to.y - 2;
      const my = (y1 + y2) / 2;
      edges.append(svg("path", { d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`, class: "edge", "data-edge": `${up}->${b.uuid}`, "marker-end": "url(#arrow)" }));
    }
  }
  root.append(edges);
  for (const b of blocks) {
    const p = pos.get(b.uuid);
    const st = states && states[b.uuid] ? states[b.uuid].status : null;
    const color = TYPE_COLORS[b.type] || "#64748b";
    const n = clones[b.uuid] || 0; // dynamic clones of this block in the last run
    const label = b.uuid.length > 21 ? b.uuid.slice(0, 20) + "…" : b.uuid;
    const sub = (b.type || "").replace(/_/g, " ") + (b.dynamic ? " · dynamic" : "") + (b.reduce_output ? " · reduce" : "");
    const cloneText = n ? `${n} dynamic clone${n === 1 ? "" : "s"} in the last run${clonesRun ? ` (#${clonesRun})` : ""}` : "";
    const g = svg("g", { class: "node" + (selected === b.uuid ? " selected" : ""), transform: `translate(${p.x},${p.y})`, tabindex: 0, role: "button",
      "data-block": b.uuid, "data-status": st || "none", "data-clones": n || null,
      // starts with the visible text (WCAG "label in name"), then what only the title shows
      "aria-label": `${label} ${sub}${n ? " ×" + n : ""}${label !== b.uuid ? ` (${b.uuid})` : ""}: ${st || "not run"}${n ? ", " + cloneText : ""}`,
      onclick: () => onSelect && onSelect(b.uuid),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onSelect && onSelect(b.uuid); } } },
      svg("title", {}, `${b.uuid}\n${b.type}${b.dynamic ? " · dynamic" : ""}${b.reduce_output ? " · reduce output" : ""}\nlast status: ${st || "not run"}${n ? "\n" + cloneText : ""}`),
      svg("rect", { width: W, height: H, rx: 8, class: "node-box", stroke: color, "stroke-dasharray": b.dynamic ? "6 3" : null }),
      svg("rect", { width: 6, height: H, rx: 3, fill: color }),
      svg("text", { x: 14, y: 19, class: "node-title" }, label + " "), // the space: "uuid type" when read as one text
      svg("text", { x: 14, y: 36, class: "node-sub" }, sub),
      n ? svg("text", { x: W - 10, y: 36, class: "node-clones", "text-anchor": "end" }, `×${n}`) : null,
      svg("circle", { cx: W - 13, cy: 13, r: 6, fill: STATUS_COLORS[st] || "#e5e7eb", class: "node-status" + (st === "running" ? " pulse" : "") }));
    root.append(g);
  }
  return root;
}
