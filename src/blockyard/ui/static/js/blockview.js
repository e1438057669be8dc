// Pieces shared by the pipeline and run pages: output previews, test results, logs.
import { h, api, enc, encPath, table, errorBox, ApiError, fmtSeconds } from "./lib.js";
import { marked } from "/static/vendor/marked/marked.esm.js";
import DOMPurify from "/static/vendor/dompurify/purify.es.mjs";

// Markdown -> sanitised HTML (marked, then DOMPurify: a block's text can hold raw HTML).
export function renderMarkdown(text) {
  const box = document.createElement("div");
  box.innerHTML = DOMPurify.sanitize(marked.parse(text || ""));
  return box;
}

function cell(v) {
  if (v === null || v === undefined) return h("span.null", "null");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function summaryLine(s) {
  if (!s) return "";
  const parts = [s.type || ""];
  if (s.shape) parts.push("shape " + s.shape.join(" × "));
  if (s.density !== undefined) parts.push("density " + (s.density * 100).toPrecision(3) + "%");
  if (s.nnz !== undefined) parts.push(s.nnz.toLocaleString() + " non-zero");
  if (s.dtype) parts.push("dtype " + s.dtype);
  if (s.len !== undefined && !s.shape) parts.push("length " + s.len);
  if (s.num_boosted_rounds !== undefined) parts.push(s.num_boosted_rounds + " rounds");
  if (s.num_features !== undefined) parts.push(s.num_features + " features");
  if (s.n_features_in !== undefined) parts.push(s.n_features_in + " features in");
  return parts.filter(Boolean).join(" · ");
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KB";
  return (n / (1 << 20)).toFixed(1) + " MB";
}

export function renderOutput(entry) {
  const s = entry.summary || {};
  const sample = entry.sample;
  let body = null;
  if (Array.isArray(sample) && sample.length && typeof sample[0] === "object" && !Array.isArray(sample[0]) && sample[0] !== null) {
    const isSeries = "index" in sample[0] && "value" in sample[0] && Object.keys(sample[0]).length === 2;
    let cols = s.columns && !isSeries ? s.columns.map(String) : Object.keys(sample[0]);
    if (s.nnz !== undefined) cols = [...new Set(sample.flatMap((r) => Object.keys(r)))].slice(0, 30);
    const dtypes = s.dtypes || {};
    body = h("div.table-wrap.output-table", h("table.data.compact",
      h("thead", h("tr", h("th.idx", "#"), cols.map((c) => h("th", { title: dtypes[c] || "" }, c, dtypes[c] ? h("div.dtype", dtypes[c]) : null)))),
      // a sparse matrix's sample lists its non-zero entries only: the others are 0, not null
      h("tbody", sample.map((row, i) => h("tr", h("td.idx", String(i)), cols.map((c) => h("td", s.nnz !== undefined && row[c] === undefined ? "0" : cell(row[c]))))))));
  } else if (Array.isArray(sample) && sample.length) {
    const rows = sample.map((r) => (Array.isArray(r) ? r : [r]));
    body = h("div.table-wrap.output-table", h("table.data.compact",
      h("tbody", rows.map((r, i) => h("tr", h("td.idx", String(i)), r.map((v) => h("td", cell(v))))))));
  } else if (sample !== null && sample !== undefined && typeof sample !== "object") {
    body = h("pre.value", String(sample));
  } else if (sample && typeof sample === "object") {
    body = h("pre.value", JSON.stringify(sample, null, 2).slice(0, 5000));
  } else if (s.params) {
    body = h("div.table-wrap", h("table.data.compact", h("tbody", Object.entries(s.params).map(([k, v]) => h("tr", h("th", k), h("td", String(v)))))));
  } else if (s.repr) {
    body = h("pre.value", s.repr);
  }
  return h("div.output", { "data-output": entry.name },
    h("div.output-head", h("strong", entry.name), h("span.muted", " " + summaryLine(s)), entry.codec ? h("span.tag.small", entry.codec) : null,
      entry.bytes ? h("span.muted.small", " " + fmtBytes(entry.bytes)) : null),
    s.steps ? h("div.muted.small", "steps: " + s.steps.join(", ")) : null,
    body);
}

export async function loadOutputs(runId, block) {
  try {
    const data = await api(`/api/runs/${runId}/outputs`, { query: { block } });
    if (!data.outputs.length) return h("div.muted", "The block returned nothing.");
    return h("div.outputs", data.outputs.map(renderOutput));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return h("div.muted", e.message);
    return errorBox(e, "Could not load the output");
  }
}

export function renderTests(tests) {
  if (!tests || !tests.length) return h("div.muted", "No @test functions ran for this block.");
  const passed = tests.filter((t) => t.passed).length;
  return h("div.tests",
    h("div.tests-summary", { class: passed === tests.length ? "ok" : "bad" }, `${passed}/${tests.length} tests passed`),
    h("ul.list", tests.map((t) => h("li.test", { "data-passed": String(!!t.passed) },
      h("span", { class: t.passed ? "ok" : "bad" }, t.passed ? "✓ " : "✗ "), h("code", t.name),
      t.error ? h("pre.test-error", t.error) : null))));
}

// Start and end lines of a block run (from its record): every log shows when the block
// ran and for how long, even when it printed nothing.
// (Only where the log lacks the engine's own "start block" / "end block" lines.)
export function logFrame(br, text = "") {
  if (!br || !br.started_at) return ["", ""];
  const hasStart = text.includes(`start block ${br.block_uuid}`), hasEnd = text.includes(`end block ${br.block_uuid}`);
  const t = (iso) => new Date(iso).toLocaleTimeString();
  const head = `── ${br.block_uuid} started ${t(br.started_at)}${br.attempts > 1 ? ` (attempt ${br.attempts})` : ""} ──\n`;
  const tail = br.completed_at ? `── ${br.block_uuid} ${String(br.status || "").replace(/_/g, " ")} at ${t(br.completed_at)} after ${fmtSeconds((new Date(br.completed_at) - new Date(br.started_at)) / 1000)} ──` : "";
  return [hasStart ? "" : head, hasEnd ? "" : tail];
}

export async function loadLog(runId, block, blockRun = null) {
  try {
    const r = await api(`/api/runs/${runId}/logs`, { query: { block }, raw: true });
    const text = await r.text();
    const [head, tail] = logFrame(blockRun, text);
    return h("pre.log", { "data-log": block }, head ? h("span.log-status", head) : null,
      text || (head ? "" : "(no log output)"), text && !text.endsWith("\n") && tail ? "\n" : "", tail ? h("span.log-status", tail) : null);
  } catch (e) {
    return errorBox(e, "Could not load the log");
  }
}

export const codeUrl = (project, pipeline, block) => `/api/projects/${enc(project)}/pipelines/${enc(pipeline)}/code/${encPath(block)}`;
export const blockUrl = (project, pipeline, block) => `/api/projects/${enc(project)}/pipelines/${enc(pipeline)}/blocks/${encPath(block)}`;
export const pipelineUrl = (project, pipeline) => `/api/projects/${enc(project)}/pipelines/${enc(pipeline)}`;

// ---------------------------------------------------------------- notebook output tables
function statText(c) {
  const parts = [];
  if (c.missing !== undefined) parts.push(`missing ${c.missing}`);
  if (c.unique !== undefined && c.unique !== null) parts.push(`unique ${c.unique}`);
  if (c.min !== undefined) parts.push(`min ${fmtValue(c.min)}`, `max ${fmtValue(c.max)}`);
  else if (c.top !== undefined) parts.push(`top ${fmtValue(c.top)} (${c.top_count})`);
  return parts;
}
function fmtValue(v) {
  if (typeof v === "number" && !Number.isInteger(v)) return Number(v.toPrecision(6)).toString();
  const s = String(v);
  return s.length > 24 ? s.slice(0, 23) + "…" : s;
}

// One output as a table page: a summary under each column header, then rows; "Show more
// rows" appends the next page (/ui-api/runs/{id}/table).
export function outputTable(runId, block, index, name) {
  const box = h("div.output.nb-output", { "data-output": name || `output_${index}` });
  const tbody = h("tbody");
  const more = h("button.small.secondary", { type: "button", "data-action": "more-rows" }, "Show more rows");
  let loaded = 0, total = 0, head = null;
  async function page() {
    const d = await api(`/ui-api/runs/${runId}/table`, { query: { block, index, offset: loaded, limit: loaded ? 50 : 10 } });
    total = d.total;
    if (!head) {
      const what = d.kind === "sparse matrix" ? `sparse matrix ${d.total.toLocaleString()} × ${d.n_columns.toLocaleString()} · ${d.nnz.toLocaleString()} non-zero`
        : `${d.kind} · shape ${d.total.toLocaleString()} × ${d.n_columns}`;
      head = h("div.output-head", h("strong", name || `output_${index}`), h("span.muted", " " + what),
        d.n_columns > d.columns.length ? h("span.muted.small", ` (first ${d.columns.length} columns)`) : null);
      const table = h("table.data.compact.nb-table",
        h("thead", h("tr", h("th.idx", "#"), d.columns.map((c) => h("th", { "data-column": c.name, scope: "col" },
          h("div", c.name), h("div.dtype", c.dtype), statText(c).map((t) => h("div.col-stat", t)))))),
        tbody);
      box.replaceChildren(head, h("div.table-wrap.output-table", table), h("div.more-row", h("span.muted.small.rows-shown"), more));
    }
    d.rows.forEach((r, i) => tbody.append(h("tr", h("td.idx", String(d.index ? d.index[i] : d.offset + i)), r.map((v) => h("td", cell(v))))));
    loaded += d.rows.length;
    box.querySelector(".rows-shown").textContent = `${loaded.toLocaleString()} of ${total.toLocaleString()} rows `;
    more.hidden = loaded >= total;
  }
  more.addEventListener("click", () => { more.disabled = true; page().catch((e) => box.append(errorBox(e))).finally(() => { more.disabled = false; }); });
  return { box, page };
}

// Every output of a block run: tables for frames/series/matrices, the summary view otherwise.
export async function outputTables(runId, block) {
  let data;
  try { data = await api(`/api/runs/${runId}/outputs`, { query: { block } }); }
  catch (e) {
    if (e instanceof ApiError && e.status === 404) return h("div.muted", e.message);
    return errorBox(e, "Could not load the output");
  }
  if (!data.outputs.length) return h("div.muted.small", "The block returned nothing.");
  const parts = await Promise.all(data.outputs.map(async (entry, i) => {
    const s = entry.summary || {};
    if (s.shape || s.columns || s.nnz !== undefined) {
      const t = outputTable(runId, block, i, entry.name);
      try { await t.page(); return t.box; } catch { /* not a table after all */ }
    }
    return renderOutput(entry);
  }));
  return h("div.outputs", parts);
}
