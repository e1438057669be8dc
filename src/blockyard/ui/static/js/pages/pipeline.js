// Pipeline page: DAG, blocks with code editors, Run @once with live logs, execute one
// block (outputs, tests, log), add/rename/remove/connect blocks, variables, charts.
import { h, clear, api, enc, encPath, statusBadge, errorBox, button, field, modal, toast, busy, empty, streamEvents,
  typeLabel, BLOCK_TYPES, ago, ApiError } from "../lib.js";
import { navigate, setTitle, setProject, setLeaveGuard } from "../app.js";
import { drawDag, TYPE_COLORS } from "../dag.js";
import { loadOutputs, renderTests, loadLog, codeUrl, blockUrl, pipelineUrl, outputTables, renderMarkdown } from "../blockview.js";
import { drawChart, CHART_TYPES } from "../charts.js";
import { drawAlertRules } from "../monitoring_panels.js";

const MANY = 12; // above this many blocks, editors open on demand
// The inline add buttons between blocks and after the last one.
const INLINE_TYPES = [["data_loader", "Data loader"], ["transformer", "Transformer"], ["data_exporter", "Data exporter"],
  ["custom", "Custom"], ["sensor", "Sensor"], ["markdown", "Markdown"]];
const NAME_HINT = { data_loader: "load_data", transformer: "transform", data_exporter: "export_data", custom: "custom", sensor: "sensor", markdown: "notes" };
let templateChoices = null; // /ui-api/block-templates, loaded once

export default async function pipelinePage(root, { project, pipeline, query }) {
  setProject(project);
  const base = pipelineUrl(project, pipeline);
  const ref = `${enc(project)}/${enc(pipeline)}`;
  let spec = null, states = { blocks: {}, runs: [] }, selected = query.get("block") || null;
  let stopStream = null, alive = true, pollTimer = null;
  const editors = new Map(); // block uuid -> {cm, dirty, card}
  const pending = new Map(); // block uuid -> unsaved code kept across a redraw of the blocks
  const editNew = new Set(); // markdown blocks just added: open in the editor, not the preview

  setTitle(pipeline, h("a", { href: "/projects/" + enc(project) }, project), pipeline);
  const head = h("div.page-head");
  const runPanel = h("section.run-panel", { hidden: true, "aria-live": "polite" });
  const dagBox = h("div.dag-box");
  const varsBox = h("section.section.vars");
  const rulesBox = h("section.section.alert-rules-section", { hidden: true });
  const chartsBox = h("section.section.charts-section");
  const blocksBox = h("div.blocks");
  clear(root, head, runPanel,
    h("div.pipeline-grid",
      h("div.pipeline-side", h("section.section", h("h2", "Graph"), dagBox, legend()), varsBox, rulesBox),
      h("div.pipeline-main", h("div.section-head", h("h2", "Blocks"),
        h("div.actions", button("Add block", () => addBlock(), "secondary", { id: "add-block" }))), blocksBox, chartsBox)));

  async function loadSpec() {
    spec = await api(base);
  }
  async function loadStates() {
    try { states = await api(`/ui-api/pipelines/${ref}/state`); } catch { /* keep the previous */ }
  }

  function drawHead() {
    const last = states.runs[0];
    clear(head,
      h("div",
        h("h1", spec.uuid, spec.name && spec.name !== spec.uuid ? h("span.muted.subtitle", " " + spec.name) : null),
        spec.description ? h("p.muted.desc", spec.description) : null,
        h("div.meta", (spec.tags || []).map((t) => h("span.tag", String(t))),
          last ? h("span", "Last run ", h("a", { href: `/runs/${last.id}` }, `#${last.id}`), " ", statusBadge(last.status), " ", h("span.muted", ago(last.created_at))) : h("span.muted", "Never run"),
          " ", h("a", { href: `/runs?pipeline=${ref}` }, "All runs"), " · ", h("a", { href: `/triggers?pipeline=${ref}` }, "Triggers"))),
      h("div.actions",
        button("Run @once", (e) => runOnce(e.currentTarget), "primary", { id: "run-once", title: "Queue one run of the whole pipeline now" }),
        button("With variables…", () => runWithVariables(), "secondary", { id: "run-with-variables", title: "Run @once with runtime variables (prefilled with the global variables)" }),
        button("Edit", () => editPipeline(), "secondary", { id: "edit-pipeline", title: "Edit the name, description and tags" }),
        button("Delete", () => deletePipeline(), "danger", { id: "delete-pipeline", title: "Delete this pipeline" })));
  }

  function drawDagBox() {
    if (!spec.blocks.length) { clear(dagBox, h("p.muted", "No blocks yet.")); return; }
    clear(dagBox, h("div.dag-scroll", drawDag(spec.blocks, states.blocks, { selected, onSelect: (u) => focusBlock(u), clones: states.clones || {}, clonesRun: states.clones_run })));
  }

  function focusBlock(uuid) {
    selected = uuid;
    const card = blocksBox.querySelector(`[data-block-card="${CSS.escape(uuid)}"]`);
    if (card) {
      openCard(card, uuid);
      card.scrollIntoView({ behavior: "smooth", block: "start" });
      card.classList.add("flash");
      setTimeout(() => card.classList.remove("flash"), 1200);
    }
    drawDagBox();
  }

  // ------------------------------------------------------------ blocks
  function drawBlocks() {
    for (const [uuid, e] of editors) if (e.dirty && e.cm) pending.set(uuid, e.cm.getValue());
    editors.clear();
    if (!spec.blocks.length) {
      clear(blocksBox, empty("This pipeline has no blocks", "Add a data loader to start; then transformers and a data exporter downstream of it.",
        button("Add block", () => addBlock(), "primary")), addRow(null));
      return;
    }
    clear(blocksBox, spec.blocks.map((b, i) => [blockCard(b, i), addRow(b.uuid)]));
    const openAll = spec.blocks.length <= MANY;
    for (const card of blocksBox.querySelectorAll("[data-block-card]")) {
      if (openAll || card.dataset.blockCard === selected) openCard(card, card.dataset.blockCard);
    }
  }

  function addRow(after) {
    return h("div.add-row", { role: "group", "aria-label": after ? `Add a block after ${after}` : "Add the first block", "data-after": after || "" },
      INLINE_TYPES.map(([t, label]) => button("+ " + label, () => addInline(t, after), "small add-btn", { "data-add": t, "aria-label": `Add ${label.toLowerCase()}${after ? " after " + after : ""}` })));
  }

  async function addInline(type, after) {
    if (!templateChoices) {
      try { templateChoices = await api("/ui-api/block-templates"); } catch (e) { toast(e.message, "error"); return; }
    }
    const taken = new Set(spec.blocks.map((b) => b.uuid));
    let suggestion = NAME_HINT[type] || type, n = 2;
    while (taken.has(suggestion)) suggestion = `${NAME_HINT[type] || type}_${n++}`;
    const name = h("input", { name: "uuid", required: true, value: suggestion, pattern: "[A-Za-z0-9_/.-]+" });
    const opts = templateChoices[type] || [{ id: "generic", label: "Generic", params: [] }];
    const template = h("select", { name: "template" }, opts.map((o) => h("option", { value: o.id }, o.label)));
    const paramsBox = h("div.template-params");
    const drawParams = () => {
      const o = opts.find((x) => x.id === template.value);
      clear(paramsBox, o.params.map((p) => field(p.label, p.name === "query"
        ? h("textarea", { name: p.name, rows: 3 }, p.default || "")
        : h("input", { name: p.name, value: p.default || "", placeholder: p.name === "path" ? "data/trips.parquet" : p.name === "url" ? "https://example.com/data.csv" : "" }))));
    };
    template.addEventListener("change", drawParams);
    drawParams();
    const upstream = type === "markdown" || !after ? [] : [after];
    const err = h("div");
    const go = button("Add " + typeLabel(type).toLowerCase(), () => busy(go, async () => {
      const uuid = name.value.trim();
      try {
        const params = {};
        for (const el of paramsBox.querySelectorAll("[name]")) params[el.name] = el.value;
        let code;
        if (template.value !== "generic") code = (await api("/ui-api/block-templates/render", { method: "POST", body: { type, template: template.value, params } })).code;
        // `after`: the card goes right under the block whose add row was clicked
        await api(`${base}/blocks`, { method: "POST", body: { uuid, type, upstream_blocks: upstream, code, after: after || undefined } });
        m.close();
        if (type === "markdown") editNew.add(uuid);
        toast(`Block ${uuid} added`, "success");
        selected = uuid;
        await refresh();
        focusBlock(uuid);
        const entry = editors.get(uuid);
        if (entry && entry.cm) entry.cm.focus();
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: "add-inline-submit" });
    const m = modal(`Add ${typeLabel(type).toLowerCase()}`, h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      field("Name (uuid)", name, "Letters, digits, underscores; '/' makes a subfolder."),
      field("Template", template), paramsBox,
      h("p.muted.small", upstream.length ? `Upstream block: ${upstream[0]} (its output is the first argument).` : "No upstream block."),
      h("button", { type: "submit", hidden: true, tabindex: -1 }), err), [go]);
  }

  function blockCard(b, i) {
    const st = states.blocks[b.uuid];
    const body = h("div.block-body", { hidden: true });
    const card = h("article.block-card", { "data-block-card": b.uuid, "data-type": b.type, style: { borderLeftColor: TYPE_COLORS[b.type] || "#64748b" } },
      h("header.block-head",
        h("button.toggle", { type: "button", "aria-expanded": "false", "aria-label": `Show or hide ${b.uuid}`, onclick: () => (body.hidden ? openCard(card, b.uuid) : closeCard(card)) }, "▸"),
        h("span.block-index", String(i + 1)),
        h("div.block-title",
          h("h3", b.uuid),
          h("div.muted.small", typeLabel(b.type),
            b.dynamic ? h("span.tag.dynamic", "dynamic") : null, b.reduce_output ? h("span.tag", "reduce output") : null,
            b.upstream_blocks.length ? " ← " + b.upstream_blocks.join(", ") : " · no upstream")),
        h("span.block-status", st ? statusBadge(st.status) : h("span.muted.small", "not run")),
        h("div.block-actions",
          button("Execute", (e) => execute(b.uuid, e.currentTarget, false), "small", { "data-action": "execute", title: "Run this block on the stored outputs of its upstream blocks" }),
          button("With upstream", (e) => execute(b.uuid, e.currentTarget, true), "small secondary", { "data-action": "execute-upstream", title: "Run the upstream blocks first, then this one" }),
          menu(b))),
      body);
    return card;
  }

  function menu(b) {
    const sel = h("select.small", { "aria-label": `More actions for ${b.uuid}`, "data-action": "menu", onchange: (e) => {
      const v = e.target.value; e.target.value = "";
      if (v === "rename") renameBlock(b);
      if (v === "connect") connectBlock(b);
      if (v === "remove") removeBlock(b);
      if (v === "chart") addChart(b);
      if (v === "add-after") addBlock(b.uuid);
    } },
    h("option", { value: "" }, "More…"), h("option", { value: "add-after" }, "Add block after"), h("option", { value: "chart" }, "Add chart"),
    h("option", { value: "rename" }, "Rename"), h("option", { value: "connect" }, "Edit upstream blocks"), h("option", { value: "remove" }, "Remove"));
    return sel;
  }

  function closeCard(card) {
    card.querySelector(".block-body").hidden = true;
    card.querySelector(".toggle").setAttribute("aria-expanded", "false");
    card.querySelector(".toggle").textContent = "▸";
  }

  async function openCard(card, uuid) {
    const body = card.querySelector(".block-body");
    body.hidden = false;
    card.querySelector(".toggle").setAttribute("aria-expanded", "true");
    card.querySelector(".toggle").textContent = "▾";
    if (editors.has(uuid)) { editors.get(uuid).cm && editors.get(uuid).cm.refresh(); return; }
    const b = spec.blocks.find((x) => x.uuid === uuid);
    const entry = { cm: null, dirty: false, card, results: h("div.block-results") };
    if (b.type === "markdown") entry.preview = h("div.markdown-body", { "data-markdown": uuid, tabindex: "0", title: "Double-click (or Enter) to edit" });
    editors.set(uuid, entry);
    const editorBox = h("div.editor-box");
    const saveBtn = button("Save", () => save(uuid), "small", { "data-action": "save", disabled: true });
    const message = h("div.editor-message", { role: "status" });
    const isMd = b.type === "markdown";
    const editBtn = isMd ? button("Edit", () => showEditor(true), "small secondary", { "data-action": "edit-markdown" }) : null;
    clear(body, h("div.editor-toolbar", h("span.muted.small.path", b.file_path || ""),
      h("span.muted.small", isMd ? "Ctrl+S saves" : "Ctrl+S saves · Ctrl+Enter executes · Shift+Enter executes and moves on"), message, editBtn, saveBtn),
      entry.preview || null, editorBox, isMd ? null : entry.results);
    // markdown: the rendered text; Edit (or a double-click / Enter on it) shows the editor
    function showEditor(on) {
      editorBox.hidden = !on;
      if (entry.preview) entry.preview.hidden = on;
      if (editBtn) editBtn.textContent = on ? "Preview" : "Edit";
      if (on && entry.cm) { entry.cm.refresh(); entry.cm.focus(); }
      if (!on && entry.cm && entry.preview) entry.preview.replaceChildren(renderMarkdown(entry.cm.getValue()));
    }
    if (isMd) {
      editBtn.onclick = () => showEditor(editorBox.hidden);
      entry.preview.addEventListener("dblclick", () => showEditor(true));
      entry.preview.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); showEditor(true); } });
    }
    entry.saveBtn = saveBtn; entry.message = message;
    try {
      const code = await api(codeUrl(project, pipeline, uuid));
      const mode = { python: "python", sql: "sql", yaml: "yaml", markdown: "markdown" }[code.language] || "python";
      const cm = window.CodeMirror(editorBox, {
        value: code.code, mode, lineNumbers: true, inputStyle: "contenteditable", indentUnit: 4, tabSize: 4, indentWithTabs: false,
        matchBrackets: true, autoCloseBrackets: true, styleActiveLine: true, viewportMargin: 50,
        screenReaderLabel: `Code of block ${uuid}`,
        extraKeys: { "Ctrl-S": () => save(uuid), "Cmd-S": () => save(uuid),
          "Ctrl-Enter": () => executeKey(uuid, false), "Cmd-Enter": () => executeKey(uuid, false), "Shift-Enter": () => executeKey(uuid, true),
          Tab: (c) => c.execCommand(c.somethingSelected() ? "indentMore" : "insertSoftTab"), "Shift-Tab": "indentLess", Esc: (c) => c.getInputField().blur() },
      });
      cm.on("change", () => { entry.dirty = true; saveBtn.disabled = false; clear(message, "unsaved changes"); clearErrorLine(entry); });
      entry.cm = cm;
      if (pending.has(uuid)) { cm.setValue(pending.get(uuid)); pending.delete(uuid); } // an unsaved edit survives a redraw
      if (isMd) { showEditor(editNew.has(uuid)); editNew.delete(uuid); }
    } catch (e) {
      clear(editorBox, errorBox(e, "Could not read the code"));
    }
    showLast(uuid);
  }

  function clearErrorLine(entry) {
    if (entry.errorLine !== undefined && entry.cm) { entry.cm.removeLineClass(entry.errorLine, "background", "cm-error-line"); entry.errorLine = undefined; }
  }

  async function save(uuid) {
    const entry = editors.get(uuid);
    if (!entry || !entry.cm) return true;
    if (!entry.dirty) return true;
    clearErrorLine(entry);
    try {
      await api(codeUrl(project, pipeline, uuid), { method: "PUT", body: { code: entry.cm.getValue() } });
      entry.dirty = false; entry.saveBtn.disabled = true;
      clear(entry.message, h("span.ok", "saved"));
      if (entry.preview && entry.preview.hidden === false) entry.preview.replaceChildren(renderMarkdown(entry.cm.getValue()));
      return true;
    } catch (e) {
      const line = e instanceof ApiError && e.error && e.error.line;
      if (line) {
        entry.errorLine = line - 1;
        entry.cm.addLineClass(line - 1, "background", "cm-error-line");
        entry.cm.scrollIntoView({ line: line - 1, ch: 0 }, 80);
      }
      clear(entry.message, h("span.error-text", { "data-error-line": line || "" }, line ? `Line ${line}: ` : "", e.message));
      return false;
    }
  }

  async function showLast(uuid) {
    const entry = editors.get(uuid);
    const st = states.blocks[uuid];
    if (!entry) return;
    if (!st) { clear(entry.results, h("p.muted.small", "Not run yet: Execute runs this block; Run @once runs the whole pipeline.")); return; }
    await showResults(uuid, st.pipeline_run_id, st, `Last run #${st.pipeline_run_id}`);
  }

  // Under the block, as in a notebook: what it printed (print and logger lines), then its
  // output tables (a summary per column, "show more rows"), then its tests.
  async function showResults(uuid, runId, blockRun, caption) {
    const entry = editors.get(uuid);
    if (!entry) return;
    const printed = h("div.printed");
    const outputs = h("div.block-outputs");
    const tests = blockRun.tests && blockRun.tests.length ? h("div.block-tests", renderTests(blockRun.tests)) : null;
    clear(entry.results,
      h("div.results-head", h("span.muted.small", caption, " "), h("a.small", { href: `/runs/${runId}` }, "open run"), " ", statusBadge(blockRun.status),
        blockRun.cache_hit ? h("span.tag.small", "cached") : null),
      blockRun.status === "failed" && blockRun.error ? h("div.error-box", { role: "alert" }, h("pre", blockRun.error)) : null,
      printed, outputs, tests);
    const [log, out] = await Promise.all([
      loadLog(runId, uuid, blockRun),
      blockRun.status === "completed" ? outputTables(runId, uuid) : Promise.resolve(null),
    ]);
    printed.replaceChildren(h("h4.results-label", "Output"), log);
    if (out) outputs.replaceChildren(out);
  }

  function executeKey(uuid, moveOn) {
    const card = blocksBox.querySelector(`[data-block-card="${CSS.escape(uuid)}"]`);
    const btn = card && card.querySelector("[data-action=execute]");
    if (!btn || btn.disabled) return;
    const run = execute(uuid, btn, false);
    if (moveOn) {
      // Shift+Enter: the next block's editor gets the focus (Jupyter/Mage style)
      const i = spec.blocks.findIndex((b) => b.uuid === uuid);
      const next = spec.blocks.slice(i + 1).find((b) => b.type !== "chart");
      if (next) {
        const nextCard = blocksBox.querySelector(`[data-block-card="${CSS.escape(next.uuid)}"]`);
        openCard(nextCard, next.uuid).then(() => {
          nextCard.scrollIntoView({ block: "start" });
          const e = editors.get(next.uuid);
          if (e && e.cm) e.cm.focus();
        });
      }
    }
    return run;
  }

  async function saveAll() {
    for (const [uuid, entry] of editors) if (entry.dirty && !(await save(uuid))) return false;
    return true;
  }

  async function execute(uuid, btn, withUpstream) {
    const card = blocksBox.querySelector(`[data-block-card="${CSS.escape(uuid)}"]`);
    await openCard(card, uuid);
    if (!(await saveAll())) { toast("Fix the code errors before executing", "error"); return; }
    const entry = editors.get(uuid);
    await busy(btn, async () => {
      clear(entry.results, h("div.muted", { "aria-busy": "true" }, withUpstream ? "Running the upstream blocks, then this one…" : "Running…"));
      card.querySelector(".block-status").replaceChildren(statusBadge("running"));
      try {
        let runId;
        if (withUpstream) {
          // queued like Run @once, but only this block and its ancestors; wait for the worker
          let run = await api(`/api/pipelines/${ref}/runs`, { method: "POST", body: { block: uuid, with_upstream: true, variables: {} } });
          runId = run.id;
          while (["initial", "queued", "running"].includes(run.status)) {
            await new Promise((resolve) => setTimeout(resolve, 400));
            run = await api(`/api/runs/${runId}`);
          }
          const ups = await api(`/api/runs/${runId}/block_runs`);
          const failed = ups.find((r) => r.block_uuid !== uuid && r.status !== "completed");
          if (failed) toast(`Upstream block ${failed.block_uuid} ${failed.status}`, "error");
        } else {
          const out = await api("/api/runs", { method: "POST", body: { run: { pipeline_uuid: `${project}/${pipeline}`, block_uuid: uuid, variables: {} } } });
          runId = out.run.pipeline_run_id;
          if (out.run.mode === "pipeline") toast("Upstream blocks had no stored output: the whole pipeline ran", "info");
        }
        const blockRuns = await api(`/api/runs/${runId}/block_runs`);
        const br = blockRuns.find((r) => r.block_uuid === uuid) || { status: "failed", error: "the block did not run" };
        await loadStates();
        drawDagBox(); drawHead();
        card.querySelector(".block-status").replaceChildren(statusBadge(br.status));
        await showResults(uuid, runId, br, `Run #${runId}`);
      } catch (e) {
        card.querySelector(".block-status").replaceChildren(statusBadge("failed"));
        clear(entry.results, errorBox(e, "Execution failed"));
      }
    });
  }

  // ------------------------------------------------------------ run @once
  async function runOnce(btn, variables = {}, onError = null, cache = null) {
    if (!(await saveAll())) { toast("Fix the code errors before running", "error"); return false; }
    return busy(btn, async () => {
      try {
        const run = await api(`/api/pipelines/${ref}/runs`, { method: "POST", body: cache ? { variables, cache } : { variables } });
        toast(`Run #${run.id} queued`, "success");
        watchRun(run);
        return true;
      } catch (e) {
        if (onError) onError(e); else toast(e.message, "error");
        return false;
      }
    });
  }

  // Run @once with runtime variables: one labelled input per global variable (prefilled),
  // plus extra name/value rows; Enter queues the run, Escape cancels.
  function runWithVariables() {
    const rows = h("div.var-rows.run-vars");
    const fixed = Object.entries(spec.variables || {}).map(([k, v]) => {
      const input = h("input", { name: k, "data-var": k, value: typeof v === "string" ? v : JSON.stringify(v) });
      return field(k, input);
    });
    const addRow = () => {
      const key = h("input", { "aria-label": "Variable name", placeholder: "name", class: "var-key" });
      const val = h("input", { "aria-label": "Variable value", placeholder: "value", class: "var-value" });
      const row = h("div.var-row", key, val, h("button.link", { type: "button", "aria-label": "Remove variable", onclick: () => row.remove() }, "×"));
      rows.append(row);
      return key;
    };
    const err = h("div");
    // Every block runs on every run (Mage); caching is opt-in per run.
    const useCache = h("input", { type: "checkbox", id: "run-use-cache" });
    const go = button("Run @once", async () => {
      const variables = {};
      for (const input of m.dialog.querySelectorAll("input[data-var]")) variables[input.dataset.var] = parseValue(input.value);
      for (const row of rows.querySelectorAll(".var-row")) {
        const k = row.querySelector(".var-key").value.trim();
        if (k) variables[k] = parseValue(row.querySelector(".var-value").value);
      }
      if (await runOnce(go, variables, (e) => clear(err, errorBox(e)), useCache.checked || null)) m.close();
    }, "primary", { id: "run-with-variables-submit" });
    const m = modal("Run @once with variables", h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      h("p.muted.small", "These values override the global variables for this run only; blocks get them in **kwargs."),
      fixed.length ? fixed : h("p.muted.small", "This pipeline has no global variables; add runtime variables below."),
      rows, h("div.actions", button("Add variable", () => addRow().focus(), "small secondary", { id: "run-add-variable" })),
      h("label.small", useCache, " Reuse cached outputs of unchanged blocks"),
      h("button", { type: "submit", hidden: true, tabindex: -1 }), err), [go]);
  }

  function watchRun(run) {
    if (stopStream) stopStream();
    runPanel.hidden = false;
    const statuses = {};
    const statusLine = h("span.run-status", statusBadge(run.status));
    const blocksLine = h("div.run-blocks");
    const log = h("pre.log.live-log", { "data-run-log": run.id }, h("span.log-status", `run #${run.id} ${run.status}\n`));
    const waiting = h("div.muted.small");
    clear(runPanel, h("div.run-panel-head", h("strong", `Run #${run.id} `), statusLine, " ",
      h("a", { href: `/runs/${run.id}` }, "Open run details"), h("button.link.close", { type: "button", "aria-label": "Close", onclick: () => { if (stopStream) stopStream(); runPanel.hidden = true; } }, "×")),
      waiting, blocksLine, log);
    api("/api/status").then((s) => { if (!s.workers && run.status === "queued") clear(waiting, "No worker is running: start one with `blockyard start` (role all or worker) to execute queued runs."); }).catch(() => {});
    const drawBlocks = () => clear(blocksLine, Object.entries(statuses).map(([u, s]) => h("span.run-block", { "data-block": u }, u, " ", statusBadge(s))));
    stopStream = streamEvents(`/api/runs/${run.id}/logs/stream`, (event, data) => {
      if (event === "status") {
        statuses[data.block_uuid] = data.status;
        if (data.status !== "initial" && data.status !== "queued") log.append(h("span.log-status", `${data.block_uuid}: ${data.status.replace(/_/g, " ")}\n`));
        states.blocks[data.block_uuid] = { ...(states.blocks[data.block_uuid] || {}), status: data.status, pipeline_run_id: run.id };
        drawBlocks();
        drawDagBox();
        const card = blocksBox.querySelector(`[data-block-card="${CSS.escape(data.block_uuid)}"] .block-status`);
        if (card) card.replaceChildren(statusBadge(data.status));
      } else if (event === "log") {
        log.append(h("span.log-block", `[${data.block_uuid}] `), data.line + "\n");
        log.scrollTop = log.scrollHeight;
      } else if (event === "run") {
        clear(statusLine, statusBadge(data.status));
        if (data.status !== "queued") clear(waiting);
        log.append(h("span.log-status", `run #${run.id} ${data.status}\n`));
        if (data.error) log.append(h("span.error-text", data.error + "\n"));
      } else if (event === "end") {
        clear(statusLine, statusBadge(data.status));
        runPanel.dataset.finished = data.status;
        toast(`Run #${run.id} ${data.status}`, data.status === "completed" ? "success" : "error");
        refresh();
      }
    });
  }

  // ------------------------------------------------------------ pipeline name, description, tags; delete
  function editPipeline() {
    const name = h("input", { name: "name", value: spec.name || spec.uuid, required: true });
    const desc = h("textarea", { name: "description", rows: 3 }, spec.description || "");
    const tags = h("input", { name: "tags", value: (spec.tags || []).join(", "), placeholder: "training, daily" });
    const err = h("div");
    const go = button("Save", () => busy(go, async () => {
      try {
        spec = await api(base, { method: "PATCH", body: {
          name: name.value.trim(), description: desc.value.trim(),
          tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean) } });
        m.close(); toast("Pipeline saved", "success"); drawHead();
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: "save-pipeline" });
    const m = modal(`Edit ${spec.uuid}`, h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      field("Name", name), field("Description", desc), field("Tags", tags, "Comma-separated."),
      h("button", { type: "submit", hidden: true, tabindex: -1 }), err), [go]);
  }

  function deletePipeline() {
    const err = h("div");
    const go = button("Delete pipeline", () => busy(go, async () => {
      try {
        await api(base, { method: "DELETE" });
        m.close(); toast(`Pipeline ${spec.uuid} deleted`, "success");
        navigate("/projects/" + enc(project));
      } catch (e) { clear(err, errorBox(e)); }
    }), "danger", { id: "confirm-delete-pipeline" });
    const m = modal(`Delete ${spec.uuid}?`, h("div",
      h("p", "Its folder ", h("code", `${project}/pipelines/${spec.uuid}/`), " is removed. Block code files stay (other pipelines may use them); past runs stay in the runs list."),
      err), [go]);
    setTimeout(() => go.focus(), 0);
  }

  // ------------------------------------------------------------ editing
  function upstreamChecks(candidates, checked) {
    if (!candidates.length) return h("p.muted.small", "No other blocks.");
    return h("fieldset.checks", h("legend", "Upstream blocks"), candidates.map((u) => h("label.check",
      h("input", { type: "checkbox", value: u, checked: checked.includes(u) }), " ", u)));
  }
  const checkedValues = (box) => [...box.querySelectorAll("input[type=checkbox]:checked")].map((x) => x.value);

  function addBlock(after) {
    const type = h("select", { name: "type" }, BLOCK_TYPES.map((t) => h("option", { value: t }, typeLabel(t))));
    const name = h("input", { name: "uuid", required: true, placeholder: "load_data" });
    const last = after || (spec.blocks.length ? spec.blocks[spec.blocks.length - 1].uuid : null);
    const ups = upstreamChecks(spec.blocks.map((b) => b.uuid), last ? [last] : []);
    const err = h("div");
    const add = button("Add block", () => busy(add, async () => {
      try {
        const uuid = name.value.trim();
        await api(`${base}/blocks`, { method: "POST", body: { uuid, type: type.value, upstream_blocks: checkedValues(ups) } });
        m.close();
        toast(`Block ${uuid} added from the ${typeLabel(type.value).toLowerCase()} template`, "success");
        selected = uuid;
        await refresh();
        focusBlock(uuid);
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: "add-block-submit" });
    const m = modal("Add block", h("form", { onsubmit: (e) => { e.preventDefault(); add.click(); } },
      field("Type", type, "The new file starts from this type's template."), field("Name (uuid)", name, "Letters, digits, underscores; '/' makes a subfolder."), ups, err), [add]);
  }

  function renameBlock(b) {
    const name = h("input", { name: "uuid", value: b.uuid, required: true });
    const err = h("div");
    const go = button("Rename", () => busy(go, async () => {
      try {
        await api(blockUrl(project, pipeline, b.uuid), { method: "PATCH", body: { uuid: name.value.trim() } });
        m.close(); toast("Block renamed", "success"); selected = name.value.trim(); await refresh();
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary");
    const m = modal(`Rename ${b.uuid}`, h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } }, field("New name", name, "The code file moves too; downstream references are updated."), err), [go]);
  }

  function connectBlock(b) {
    const ups = upstreamChecks(spec.blocks.map((x) => x.uuid).filter((u) => u !== b.uuid), b.upstream_blocks);
    const err = h("div");
    const go = button("Save", () => busy(go, async () => {
      try {
        await api(blockUrl(project, pipeline, b.uuid), { method: "PATCH", body: { upstream_blocks: checkedValues(ups) } });
        m.close(); toast("Connections saved", "success"); await refresh();
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary");
    const m = modal(`Upstream blocks of ${b.uuid}`, h("div", h("p.muted.small", "The block gets one argument per upstream block, in this order."), ups, err), [go]);
  }

  function removeBlock(b) {
    const del = h("input", { type: "checkbox", name: "delete_file" });
    const err = h("div");
    const go = button("Remove", () => busy(go, async () => {
      try {
        await api(blockUrl(project, pipeline, b.uuid), { method: "DELETE", query: { delete_file: del.checked ? "true" : "false" } });
        m.close(); toast(`Block ${b.uuid} removed`, "success"); await refresh();
      } catch (e) { clear(err, errorBox(e)); }
    }), "danger");
    const m = modal(`Remove ${b.uuid}?`, h("div", h("p", "Its downstream blocks lose this upstream connection."),
      h("label.check", del, " Also delete its code file ", h("code", b.file_path || "")), err), [go]);
  }

  // ------------------------------------------------------------ variables
  function drawVars() {
    const rows = h("div.var-rows");
    const addRow = (k = "", v = "") => {
      const key = h("input", { value: k, "aria-label": "Variable name", placeholder: "name", class: "var-key" });
      const val = h("input", { value: typeof v === "string" ? v : JSON.stringify(v), "aria-label": "Variable value", placeholder: "value", class: "var-value" });
      const row = h("div.var-row", key, val, h("button.link", { type: "button", "aria-label": "Remove variable", onclick: () => row.remove() }, "×"));
      rows.append(row);
      return key;
    };
    for (const [k, v] of Object.entries(spec.variables || {})) addRow(k, v);
    const msg = h("div.small", { role: "status" });
    const saveBtn = button("Save variables", () => busy(saveBtn, async () => {
      const variables = {};
      for (const row of rows.querySelectorAll(".var-row")) {
        const k = row.querySelector(".var-key").value.trim();
        if (!k) continue;
        variables[k] = parseValue(row.querySelector(".var-value").value);
      }
      try {
        spec = await api(`${base}/variables`, { method: "PUT", body: { variables } });
        clear(msg, h("span.ok", "Saved: blocks get them in **kwargs"));
      } catch (e) { clear(msg, errorBox(e)); }
    }), "small", { id: "save-variables" });
    clear(varsBox, h("h2", "Global variables"), h("p.muted.small", "Passed to every block's **kwargs; runs and triggers can override them. Values that parse as JSON (numbers, true, lists) keep their type."),
      rows, h("div.actions", button("Add variable", () => addRow().focus(), "small secondary", { id: "add-variable" }), saveBtn), msg);
  }

  // ------------------------------------------------------------ charts
  function drawCharts() {
    const widgets = spec.widgets || [];
    const list = h("div.chart-grid");
    clear(chartsBox, h("div.section-head", h("h2", "Charts"), h("div.actions", spec.blocks.length ? button("Add chart", () => addChart(null), "small secondary", { id: "add-chart" }) : null)),
      widgets.length ? list : h("p.muted.small", "No charts. Add one to plot a block's output (histogram, bar, line, pie, table)."));
    for (const w of widgets) {
      const plotEl = h("div.chart-plot");
      const box = h("div.chart-box", { "data-chart": w.uuid }, h("div.chart-title", w.name || w.uuid, h("span.muted.small", ` ← ${(w.upstream_blocks || []).join(", ")}`),
        h("button.link.small", { type: "button", "data-action": "edit-chart", "aria-label": `Edit chart ${w.uuid}`, onclick: () => addChart(null, w) }, "edit"),
        h("button.link.small", { type: "button", "data-action": "remove-chart", "aria-label": `Remove chart ${w.uuid}`, onclick: () => removeChart(w) }, "remove")), plotEl);
      list.append(box);
      api(`${base}/charts/${encPath(w.uuid)}`)
        .then((data) => drawChart(plotEl, data))
        .catch((e) => clear(plotEl, e instanceof ApiError && /no stored output/.test(e.message) ? h("p.muted.small", e.message + ": run the block first.") : errorBox(e, "Chart")));
    }
  }

  async function removeChart(w) {
    if (!window.confirm(`Remove chart ${w.name || w.uuid}?`)) return;
    try { await api(blockUrl(project, pipeline, w.uuid), { method: "DELETE", query: { delete_file: "true" } }); await refresh(); }
    catch (e) { toast(e.message, "error"); }
  }

  // Add a chart, or edit one (`existing`): its type, columns and code. A changed type or
  // column re-creates the chart under the same uuid; a code-only change rewrites its file.
  async function addChart(block, existing = null) {
    const cfg = existing ? existing.configuration || {} : {};
    const srcName = existing ? (existing.upstream_blocks || [])[0] : block && block.uuid;
    let oldCode = "";
    if (existing) {
      try { oldCode = (await api(codeUrl(project, pipeline, existing.uuid))).code; } catch { oldCode = ""; }
    }
    const src = h("select", { name: "block" }, spec.blocks.map((b) => h("option", { value: b.uuid, selected: b.uuid === srcName }, b.uuid)));
    const typeValue = cfg.chart_type ? cfg.chart_type + (cfg.chart_style ? ":" + cfg.chart_style : "") : "";
    const type = h("select", { name: "chart_type" }, CHART_TYPES.map(([v, l]) => h("option", { value: v, selected: v === typeValue }, l)));
    const x = h("input", { name: "x", value: cfg.x || "", placeholder: "column, e.g. trip_distance" });
    const y = h("input", { name: "y", value: cfg.y || "", placeholder: "column(s), comma-separated (bar/line)" });
    const buckets = h("input", { name: "buckets", type: "number", min: 1, max: 200, value: cfg.buckets || 20 });
    const codeBox = h("div.editor-box.chart-code", { "data-chart-code": existing ? existing.uuid : "new" });
    const err = h("div");
    let cm = null;
    const go = button(existing ? "Save chart" : "Add chart", () => busy(go, async () => {
      const [chartType, style] = type.value.split(":");
      const configuration = { chart_type: chartType };
      if (style) configuration.chart_style = style;
      if (x.value.trim()) configuration.x = x.value.trim();
      if (y.value.trim()) configuration.y = y.value.split(",").map((v) => v.trim()).filter(Boolean).join(",");
      if (chartType === "histogram" || chartType === "pie chart") configuration.buckets = Number(buckets.value) || 20;
      const code = cm ? cm.getValue() : "";
      const uuid = existing ? existing.uuid : `${src.value.replace(/\//g, "_")}_${chartType.replace(/ /g, "_")}_${Math.random().toString(36).slice(2, 6)}`;
      const name = `${type.selectedOptions[0].textContent} of ${src.value}`;
      try {
        if (existing) {
          const same = (k) => String(cfg[k] ?? "") === String(configuration[k] ?? "");
          const configSame = ["chart_type", "chart_style", "x", "y", "buckets"].every(same) && srcName === src.value;
          if (configSame) {
            if (code !== oldCode) await api(codeUrl(project, pipeline, uuid), { method: "PUT", body: { code } });
          } else {
            // the code is checked by the add below; remove first (same uuid), put back on failure
            await api(blockUrl(project, pipeline, uuid), { method: "DELETE", query: { delete_file: "true" } });
            try {
              await api(`${base}/blocks`, { method: "POST", body: { uuid, type: "chart", upstream_blocks: [src.value], configuration: { ...cfg, ...configuration, ...(style ? {} : { chart_style: undefined }) }, code: code.trim() ? code : undefined, name } });
            } catch (e) {
              await api(`${base}/blocks`, { method: "POST", body: { uuid, type: "chart", upstream_blocks: [srcName], configuration: cfg, code: oldCode.trim() ? oldCode : undefined, name: existing.name } }).catch(() => {});
              throw e;
            }
          }
        } else {
          await api(`${base}/blocks`, { method: "POST", body: { uuid, type: "chart", upstream_blocks: [src.value], configuration, code: code.trim() ? code : undefined, name } });
        }
        m.close(); toast(existing ? "Chart saved" : "Chart added", "success"); await refresh();
        chartsBox.scrollIntoView({ behavior: "smooth" });
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: existing ? "save-chart-submit" : "add-chart-submit" });
    const m = modal(existing ? `Edit chart ${existing.name || existing.uuid}` : "Add chart", h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      field("Block", src, "The chart reads this block's latest stored output (df_1)."), field("Chart type", type),
      field("x", x, "A column of df_1, or a variable defined by the chart code."), field("y", y), field("Buckets", buckets, "Histogram bins / pie slices."),
      h("div.field", h("span.label", { id: "chart-code-label" }, "Code"), codeBox, h("div.help", "Optional: df_1 is the block's output; define x (and y) for the chart.")), err), [go]);
    m.dialog.classList.add("wide");
    cm = window.CodeMirror(codeBox, { value: oldCode, mode: "python", lineNumbers: true, inputStyle: "contenteditable", indentUnit: 4, viewportMargin: Infinity,
      screenReaderLabel: "Chart code", extraKeys: { Tab: (c) => c.execCommand("insertSoftTab") } });
    setTimeout(() => cm.refresh(), 0);
  }

  // ------------------------------------------------------------ wiring
  async function refresh() {
    await Promise.all([loadSpec(), loadStates()]);
    if (!alive) return;
    drawHead(); drawDagBox(); drawBlocks(); drawVars(); drawCharts();
  }

  try {
    await Promise.all([loadSpec(), loadStates()]);
  } catch (e) {
    clear(root, errorBox(e, `Pipeline ${project}/${pipeline}`), h("p", h("a", { href: "/" }, "Back to the overview")));
    return;
  }
  drawHead(); drawDagBox(); drawBlocks(); drawVars(); drawCharts();
  drawAlertRules(rulesBox, project, pipeline);
  // A run still going (started elsewhere): follow it.
  const running = states.runs.find((r) => r.status === "running" || r.status === "queued");
  if (running) watchRun(running);
  // Cheap polling keeps statuses fresh when runs start elsewhere (triggers, CLI).
  const poll = async () => {
    if (!alive) return;
    const before = JSON.stringify(states.runs[0] || null);
    await loadStates();
    if (alive && JSON.stringify(states.runs[0] || null) !== before) { drawHead(); drawDagBox(); }
    pollTimer = setTimeout(poll, 5000);
  };
  pollTimer = setTimeout(poll, 5000);
  const beforeUnload = (e) => { if (pending.size || [...editors.values()].some((x) => x.dirty)) { e.preventDefault(); e.returnValue = ""; } };
  window.addEventListener("beforeunload", beforeUnload);
  // switching pipelines (or any page) inside the app asks first when an edit is unsaved
  setLeaveGuard(() => {
    const dirty = [...new Set([...[...editors.entries()].filter(([, x]) => x.dirty).map(([u]) => u), ...pending.keys()])];
    return !dirty.length || window.confirm(`Unsaved changes in ${dirty.join(", ")}. Leave without saving?`);
  });
  return () => { alive = false; clearTimeout(pollTimer); if (stopStream) stopStream(); window.removeEventListener("beforeunload", beforeUnload); };
}

function legend() {
  const types = ["data_loader", "transformer", "data_exporter", "custom", "sensor"];
  return h("div.legend", types.map((t) => h("span.legend-item", h("i", { style: { background: TYPE_COLORS[t] } }), typeLabel(t))),
    h("span.legend-item", h("i.dashed"), "dynamic"));
}
void navigate;

// Values that parse as JSON (numbers, true/false/null, lists, objects) keep their type.
function parseValue(raw) {
  if (/^(-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null|\[.*\]|\{.*\})$/s.test(raw.trim())) { try { return JSON.parse(raw.trim()); } catch { return raw; } }
  return raw;
}
