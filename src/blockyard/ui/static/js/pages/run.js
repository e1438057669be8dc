// One run: Gantt of block runs, live logs (SSE), errors with tracebacks, variables,
// cancel and retry.
import { h, clear, api, svg, statusBadge, errorBox, fmtTime, duration, button, toast, busy, streamEvents, enc } from "../lib.js";
import { navigate, setTitle } from "../app.js";
import { STATUS_COLORS } from "../dag.js";
import { loadOutputs, renderTests, logFrame } from "../blockview.js";
import { drawRunChecks } from "../monitoring_panels.js";

const UNFINISHED = ["initial", "queued", "running"];

export default async function runPage(root, { id, query }) {
  setTitle(`Run #${id}`, h("a", { href: "/runs" }, "Runs"), `#${id}`);
  let run, blockRuns = [], selected = query.get("block") || null, stop = null, alive = true, refreshTimer = null;
  const liveLines = new Map(); // block -> [lines] received while running

  const head = h("div.page-head");
  const gantt = h("div.gantt-box");
  const logHead = h("div.section-head");
  const logBox = h("div");
  const details = h("div");
  const monitoringBox = h("div"); // the run's monitoring checks and drift reports
  clear(root, head, h("div.run-grid",
    h("div", h("section.section", h("h2", "Timeline"), gantt), h("section.section.logs", logHead, logBox)),
    h("div", details, monitoringBox)));

  async function load() {
    [run, blockRuns] = await Promise.all([api(`/api/runs/${id}`), api(`/api/runs/${id}/block_runs`)]);
  }

  function drawHead() {
    const ref = `/pipelines/${enc(run.project)}/${enc(run.pipeline_uuid)}`;
    const acts = [];
    if (UNFINISHED.includes(run.status)) acts.push(button("Cancel run", (e) => busy(e.currentTarget, async () => {
      try { await api(`/api/runs/${id}/cancel`, { method: "POST" }); toast(`Cancelling run #${id}`); await refresh(); } catch (err) { toast(err.message, "error"); }
    }), "danger", { id: "cancel-run" }));
    if (["failed", "cancelled"].includes(run.status)) acts.push(button("Retry incomplete blocks", (e) => busy(e.currentTarget, async () => {
      try { const r = await api(`/api/runs/${id}/retry`, { method: "POST" }); toast(`Run #${r.id} queued`, "success"); navigate(`/runs/${r.id}`); } catch (err) { toast(err.message, "error"); }
    }), "primary", { id: "retry-run" }));
    clear(head, h("div", h("h1", `Run #${run.id} `, statusBadge(run.status)),
      h("div.meta", h("a", { href: ref }, `${run.project}/${run.pipeline_uuid}`),
        h("span.muted", `created ${fmtTime(run.created_at)}`), run.started_at ? h("span.muted", `· ${duration(run.started_at, run.completed_at)}`) : null,
        run.retry_of ? h("span", "· retry of ", h("a", { href: `/runs/${run.retry_of}` }, `#${run.retry_of}`)) : null)),
      h("div.actions", acts));
  }

  // Dynamic clones (block runs with a dynamic_index, uuid "block:label") are grouped under
  // their block: one summary row "block ×N clones" (click or Enter to expand/collapse).
  const expanded = new Set(); // base uuids whose clones are shown
  const collapsedByUser = new Set();
  const cloneBase = (b) => (b.dynamic_index !== null && b.dynamic_index !== undefined) || (b.block_uuid.includes(":") && b.base_block_uuid && b.base_block_uuid !== b.block_uuid)
    ? (b.base_block_uuid && b.base_block_uuid !== b.block_uuid ? b.base_block_uuid : b.block_uuid.split(":")[0]) : null;

  function ganttRows() {
    const groups = new Map(); // base -> clone block runs
    for (const b of blockRuns) { const base = cloneBase(b); if (base) (groups.get(base) || groups.set(base, []).get(base)).push(b); }
    const rows = [], placed = new Set();
    const pushGroup = (base, own) => {
      const clones = groups.get(base);
      placed.add(base);
      const open = expanded.has(base) || (clones.length <= 5 && !collapsedByUser.has(base));
      rows.push({ kind: "group", base, own, clones, open });
      if (open) for (const c of clones) rows.push({ kind: "block", b: c, indent: true });
    };
    for (const b of blockRuns) {
      if (cloneBase(b)) { const base = cloneBase(b); if (!placed.has(base) && !blockRuns.some((x) => x.block_uuid === base && !cloneBase(x))) pushGroup(base, null); continue; }
      if (groups.has(b.block_uuid)) pushGroup(b.block_uuid, b);
      else rows.push({ kind: "block", b });
    }
    return rows;
  }

  function groupStatus(clones, own) {
    const sts = clones.map((c) => c.status);
    for (const s of ["failed", "running", "upstream_failed", "cancelled", "queued", "initial"]) if (sts.includes(s)) return s;
    return own && own.status !== "initial" ? own.status : sts[0] || "initial";
  }

  function toggleGroup(base, open) {
    if (open) { expanded.delete(base); collapsedByUser.add(base); } else { expanded.add(base); collapsedByUser.delete(base); }
    drawGantt();
  }

  function drawGantt() {
    if (!blockRuns.length) { clear(gantt, h("p.muted", run.status === "queued" ? "Queued: waiting for a worker to claim it." : "No block ran.")); return; }
    const t0 = Math.min(...blockRuns.filter((b) => b.started_at).map((b) => +new Date(b.started_at)), run.started_at ? +new Date(run.started_at) : Infinity);
    const now = Date.now();
    const ends = blockRuns.map((b) => (b.completed_at ? +new Date(b.completed_at) : b.started_at ? now : 0));
    const t1 = Math.max(...ends, run.completed_at ? +new Date(run.completed_at) : 0, isFinite(t0) ? t0 + 1 : 1);
    const span = Math.max(1, t1 - (isFinite(t0) ? t0 : t1));
    const L = 190, RH = 24, top = 22;
    const W = Math.max(240, (gantt.clientWidth || 640) - L - 80);
    const all = ganttRows();
    const s = svg("svg", { class: "gantt", width: L + W + 70, height: top + all.length * RH + 8, role: "img", "aria-label": "Timeline of block runs" });
    for (let i = 0; i <= 4; i++) {
      const x = L + (W * i) / 4;
      s.append(svg("line", { x1: x, x2: x, y1: top - 6, y2: top + all.length * RH, class: "grid" }), svg("text", { x, y: 12, "text-anchor": "middle" }, fmtSpan((span * i) / 4)));
    }
    const xOf = (t) => L + ((t - t0) / span) * W;
    all.forEach((row, i) => {
      const y = top + i * RH;
      if (row.kind === "group") {
        const { base, own, clones, open } = row;
        const n = clones.length;
        const label = `${open ? "▾" : "▸"} ${base.length > 16 ? base.slice(0, 15) + "…" : base} ×${n}`;
        const toggle = () => toggleGroup(base, open);
        s.append(svg("text", { x: 4, y: y + 16, class: "group-label", "data-group": base, "data-clones": n, tabindex: 0, role: "button",
          "aria-expanded": String(open), "aria-label": `${base}: ${n} dynamic clones, ${open ? "collapse" : "expand"}`,
          onclick: toggle, onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } } },
          svg("title", {}, `${base}: ${n} dynamic clone${n === 1 ? "" : "s"}`), label));
        const members = [own, ...clones].filter((b) => b && b.started_at);
        if (members.length && isFinite(t0)) {
          const start = Math.min(...members.map((b) => +new Date(b.started_at)));
          const end = Math.max(...members.map((b) => (b.completed_at ? +new Date(b.completed_at) : now)));
          const st = groupStatus(clones, own);
          const done = clones.filter((c) => c.status === "completed").length;
          s.append(svg("rect", { class: "bar group-bar", x: xOf(start), y: y + 4, width: Math.max(3, xOf(end) - xOf(start)), height: RH - 8, fill: STATUS_COLORS[st] || "#9ca3af",
            "data-group-bar": base, tabindex: 0, onclick: () => pick(own ? own.block_uuid : clones[0].block_uuid),
            onkeydown: (e) => { if (e.key === "Enter") pick(own ? own.block_uuid : clones[0].block_uuid); } },
            svg("title", {}, `${base}: ${done}/${n} clones completed, ${duration(new Date(start).toISOString(), new Date(end).toISOString())}`)));
          s.append(svg("text", { x: Math.min(xOf(end) + 4, L + W + 2), y: y + 16 }, `${done}/${n}`));
        } else {
          s.append(svg("text", { x: L + 4, y: y + 16, fill: "#9ca3af" }, `${n} clones, ${groupStatus(clones, own).replace(/_/g, " ")}`));
        }
        return;
      }
      const b = row.b;
      const indent = row.indent ? 14 : 0;
      const max = row.indent ? 24 : 26;
      const name = b.block_uuid.length > max ? b.block_uuid.slice(0, max - 1) + "…" : b.block_uuid;
      s.append(svg("text", { x: 4 + indent, y: y + 16, "data-row": b.block_uuid, class: row.indent ? "clone-label" : null }, name));
      if (b.started_at && isFinite(t0)) {
        const x0 = xOf(+new Date(b.started_at));
        const x1 = xOf(b.completed_at ? +new Date(b.completed_at) : now);
        s.append(svg("rect", { class: "bar", x: x0, y: y + 4, width: Math.max(3, x1 - x0), height: RH - 8, fill: STATUS_COLORS[b.status] || "#9ca3af", "data-bar": b.block_uuid, tabindex: 0,
          onclick: () => pick(b.block_uuid), onkeydown: (e) => { if (e.key === "Enter") pick(b.block_uuid); } },
          svg("title", {}, `${b.block_uuid}: ${b.status}, ${duration(b.started_at, b.completed_at)}${b.cache_hit ? " (cached)" : ""}`)));
        const sensor = b.metrics && b.metrics.sensor;  // a sensor polling until it returns True
        const label = b.cache_hit ? "cached" : sensor && sensor.state === "waiting" && b.status === "running"
          ? `waiting, poll ${sensor.polls}` : duration(b.started_at, b.completed_at);
        s.append(svg("text", { x: Math.min(x1 + 4, L + W + 2), y: y + 16, "data-sensor": sensor ? sensor.polls : null }, label));
      } else {
        s.append(svg("text", { x: L + 4, y: y + 16, fill: "#9ca3af" }, b.status.replace(/_/g, " ")));
      }
    });
    clear(gantt, h("div.table-wrap", s));
  }

  function fmtSpan(ms) { return ms < 1000 ? Math.round(ms) + " ms" : ms < 60000 ? (ms / 1000).toFixed(1) + " s" : (ms / 60000).toFixed(1) + " min"; }

  async function pick(block) {
    selected = block;
    const url = new URL(location.href); url.searchParams.set("block", block); history.replaceState({}, "", url);
    await drawLogs();
  }

  async function drawLogs() {
    const sel = h("select", { "aria-label": "Block", id: "log-block", onchange: (e) => pick(e.target.value) },
      blockRuns.map((b) => h("option", { value: b.block_uuid, selected: b.block_uuid === selected }, `${b.block_uuid} (${b.status.replace(/_/g, " ")})`)));
    if (!selected && blockRuns.length) selected = (blockRuns.find((b) => b.status === "failed") || blockRuns.find((b) => b.status === "running") || blockRuns[0]).block_uuid;
    sel.value = selected || "";
    clear(logHead, h("h2", "Logs"), h("div.actions", sel, h("a.small", { href: `/api/runs/${id}/logs`, target: "_blank" }, "all logs as text")));
    const br = blockRuns.find((b) => b.block_uuid === selected);
    if (!br) { clear(logBox, h("p.muted", "No block runs yet.")); return; }
    const parts = [];
    if (br.error) parts.push(h("div.error-box", { role: "alert", "data-block-error": br.block_uuid }, h("strong", "Error: "), br.error, br.traceback ? h("details", h("summary", "Traceback"), h("pre", br.traceback)) : null));
    const pre = h("pre.log", { "data-log": br.block_uuid });
    if (UNFINISHED.includes(run.status)) pre.textContent = (liveLines.get(br.block_uuid) || []).join("\n") || "(waiting for output…)";
    else {
      try {
        let text = await (await api(`/api/runs/${id}/logs`, { query: { block: br.block_uuid }, raw: true })).text();
        // the error is in the box above: the log does not repeat it
        for (const dup of [br.traceback, br.error]) if (dup && text.includes(dup.trim())) text = text.replace(dup.trim(), "(the error is shown above)");
        const [head, tail] = logFrame(br, text);
        pre.textContent = head + (text || (br.cache_hit ? "(cached: skipped, no log)\n" : "")) + (text && !text.endsWith("\n") ? "\n" : "") + tail;
      }
      catch (e) { pre.textContent = e.message; }
    }
    parts.push(pre);
    if (br.tests && br.tests.length) parts.push(h("h3.subhead", "Tests"), renderTests(br.tests));
    if (br.status === "completed" && br.output_ref) {
      const out = h("div", h("div.muted.small", "Loading output…"));
      parts.push(h("h3.subhead", "Output"), out);
      loadOutputs(id, br.block_uuid).then((el) => clear(out, el));
    }
    clear(logBox, parts);
  }

  // Effective variables: the pipeline's global variables, then the trigger's, then the
  // run's own (runtime) values, each with where it came from.
  let layers = null;
  async function loadLayers() {
    const [spec, trigger] = await Promise.all([
      api(`/api/projects/${encodeURIComponent(run.project)}/pipelines/${encodeURIComponent(run.pipeline_uuid)}`).catch(() => ({})),
      run.trigger_id ? api(`/api/triggers/${run.trigger_id}`).catch(() => ({})) : Promise.resolve({}),
    ]);
    layers = { pipeline: spec.variables || {}, trigger: trigger.variables || {} };
  }
  function effectiveVariables() {
    const out = new Map();
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    for (const [k, v] of Object.entries(layers ? layers.pipeline : {})) out.set(k, [v, "pipeline (global variable)"]);
    for (const [k, v] of Object.entries(layers ? layers.trigger : {})) out.set(k, [v, `trigger #${run.trigger_id}`]);
    for (const [k, v] of Object.entries(run.variables || {})) {
      if (out.has(k) && same(out.get(k)[0], v)) continue; // the run carries the value it got from above
      out.set(k, [v, run.backfill_id ? `backfill #${run.backfill_id}` : "runtime (this run)"]);
    }
    return out;
  }

  function drawDetails() {
    const eff = effectiveVariables();
    const vars = eff.size
      ? h("div.table-wrap", h("table.data.vars-table", { "aria-label": "Effective variables" },
          h("thead", h("tr", h("th", "Name"), h("th", "Value"), h("th", "Source"))),
          h("tbody", [...eff].map(([k, [v, src]]) => h("tr", { "data-var": k }, h("td", h("code", k)), h("td", h("code", JSON.stringify(v))), h("td.muted", src))))))
      : h("span.muted", "none");
    const failedBlock = blockRuns.find((b) => b.error);
    clear(details,
      h("section.section", h("h2", "Details"), h("dl.kv",
        h("dt", "Status"), h("dd", statusBadge(run.status)),
        h("dt", "Created"), h("dd", fmtTime(run.created_at)),
        h("dt", "Started"), h("dd", fmtTime(run.started_at)),
        h("dt", "Finished"), h("dd", fmtTime(run.completed_at)),
        h("dt", "Duration"), h("dd", run.started_at ? duration(run.started_at, run.completed_at) : "—"),
        h("dt", "Trigger"), h("dd", run.trigger_id ? h("a", { href: `/triggers?edit=${run.trigger_id}` }, `#${run.trigger_id}`) : run.backfill_id ? `backfill #${run.backfill_id}` : "manual"),
        h("dt", "Execution date"), h("dd", fmtTime(run.execution_date)),
        h("dt", "Blocks"), h("dd", `${blockRuns.filter((b) => b.status === "completed").length}/${blockRuns.length} completed`))),
      // the error once: a block's error is shown with its log; only a pipeline-level error here
      run.error && !failedBlock ? h("section.section", h("h2", "Error"), h("div.error-box", { role: "alert" }, h("pre", run.error))) : null,
      run.error && failedBlock ? h("section.section", h("h2", "Error"), h("p", "Block ", h("button.link", { type: "button", onclick: () => pick(failedBlock.block_uuid) }, failedBlock.block_uuid), " failed: its error and log are under Logs.")) : null,
      h("section.section", h("h2", "Variables"), h("p.muted.small", "Effective values: the pipeline's global variables, overridden by the trigger's, overridden by the run's."), vars));
  }

  async function refresh() {
    await load();
    if (!alive) return;
    drawHead(); drawGantt(); drawDetails(); await drawLogs();
    drawRunChecks(monitoringBox, id);
  }

  try { await load(); await loadLayers(); } catch (e) { clear(root, errorBox(e, `Run #${id}`), h("a", { href: "/runs" }, "All runs")); return; }
  drawHead(); drawGantt(); drawDetails(); await drawLogs();
  drawRunChecks(monitoringBox, id);

  if (UNFINISHED.includes(run.status)) {
    let pending = false;
    const soon = () => { if (pending) return; pending = true; setTimeout(async () => { pending = false; if (!alive) return; [run, blockRuns] = await Promise.all([api(`/api/runs/${id}`), api(`/api/runs/${id}/block_runs`)]); drawHead(); drawGantt(); drawDetails(); }, 300); };
    stop = streamEvents(`/api/runs/${id}/logs/stream`, (event, data) => {
      if (event === "log") {
        const lines = liveLines.get(data.block_uuid) || [];
        lines.push(data.line);
        liveLines.set(data.block_uuid, lines);
        if (data.line.includes(" sensor poll ")) soon();  // a sensor's poll count changed
        if (!selected) { selected = data.block_uuid; drawLogs(); }
        const pre = logBox.querySelector("pre.log");
        if (pre && pre.dataset.log === data.block_uuid) {
          if (pre.textContent === "(waiting for output…)") pre.textContent = "";
          pre.textContent += (pre.textContent ? "\n" : "") + data.line;
          pre.scrollTop = pre.scrollHeight;
        }
      } else if (event === "status" || event === "run") {
        soon();
        if (event === "status" && data.status === "running" && !liveLines.has(selected)) { selected = data.block_uuid; }
      } else if (event === "end") {
        toast(`Run #${id} ${data.status}`, data.status === "completed" ? "success" : "error");
        refresh();
      }
    }, { onEnd: () => { if (alive) refreshTimer = setTimeout(refresh, 500); } });
  }
  return () => { alive = false; if (stop) stop(); clearTimeout(refreshTimer); };
}
