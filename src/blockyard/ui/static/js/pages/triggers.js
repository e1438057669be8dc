// Triggers (schedule / API / sensor-event) and backfills with progress.
import { h, clear, api, statusBadge, errorBox, fmtTime, empty, field, button, modal, toast, busy, table, ago, duration } from "../lib.js";
import { setTitle, state } from "../app.js";

const INTERVALS = ["@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"];

async function pipelineRefs() {
  // scoped by the project selector
  try { return (await api("/api/pipelines")).filter((p) => !state.project || p.project === state.project).map((p) => `${p.project}/${p.uuid}`); } catch { return []; }
}

export default async function triggersPage(root, { backfills, query, triggerId }) {
  if (triggerId) return triggerPage(root, triggerId);
  return backfills ? backfillsPage(root, query) : triggersList(root, query);
}

function lastRunCell(info) {
  const lr = info && info.last_run;
  return lr ? h("span", h("a", { href: `/runs/${lr.id}` }, `#${lr.id}`), " ", statusBadge(lr.status), h("div.muted.small", ago(lr.created_at))) : h("span.muted", "never");
}
function nextRunCell(t, info) {
  if (t.status === "inactive") return h("span.muted", "disabled");
  if (t.schedule_type !== "time") return h("span.muted", t.schedule_type === "api" ? "on request" : "on event");
  return info && info.next_run ? fmtTime(info.next_run) : h("span.muted", "—");
}

// One trigger: its settings, last and next run, and its runs.
async function triggerPage(root, id) {
  setTitle(`Trigger #${id}`, h("a", { href: "/triggers" }, "Triggers"), `#${id}`);
  let t, info, runs;
  try {
    [t, info, runs] = await Promise.all([api(`/api/triggers/${id}`), api("/ui-api/triggers"), api("/api/runs", { query: { trigger_id: id, limit: 50 } })]);
  } catch (e) { clear(root, errorBox(e, `Trigger #${id}`), h("a", { href: "/triggers" }, "All triggers")); return; }
  const i = info[String(id)] || {};
  clear(root,
    h("div.page-head", h("div", h("h1", t.name || `#${id}`, " ", statusBadge(t.status || "active")),
      h("p.muted", h("a", { href: `/pipelines/${encodeURIComponent(t.project)}/${encodeURIComponent(t.pipeline_uuid)}` }, `${t.project}/${t.pipeline_uuid}`))),
      h("div.actions", h("a", { href: `/triggers?edit=${id}` }, "Edit"), " ", h("a", { href: `/runs?trigger_id=${id}` }, "All its runs"))),
    h("section.section", h("dl.kv",
      h("dt", "Type"), h("dd", t.schedule_type),
      h("dt", "Schedule"), h("dd", t.schedule_interval || "—"),
      h("dt", "Start"), h("dd", fmtTime(t.start_time)),
      h("dt", "Last run"), h("dd", lastRunCell(i)),
      h("dt", "Next run"), h("dd", nextRunCell(t, i)),
      h("dt", "Runs"), h("dd", String(i.runs || 0)),
      h("dt", "Variables"), h("dd", h("code", JSON.stringify(t.variables || {}))),
      t.error ? [h("dt", "Error"), h("dd.error-text", t.error)] : null)),
    h("section.section", h("h2", "Runs"), table(["Run", "Status", "Created", "Duration"], runs.runs.map((r) => [
      h("a", { href: `/runs/${r.id}` }, `#${r.id}`), statusBadge(r.status), fmtTime(r.created_at), r.started_at ? duration(r.started_at, r.completed_at) : "—"]),
    { empty: "This trigger has not run yet." })));
}

function apiUrl(t) {
  return `${location.origin}/api/pipeline_schedules/${t.id}/pipeline_runs/${t.token || "<token>"}`;
}

function copyBox(text, label) {
  return h("div.copy", h("pre", { "aria-label": label }, text), button("Copy", (e) => {
    navigator.clipboard && navigator.clipboard.writeText(text).then(() => toast("Copied"), () => toast("Select the text and copy it", "info"));
    e.currentTarget.blur();
  }, "small secondary"));
}

async function triggersList(root, query) {
  setTitle("Triggers", "Triggers");
  const filter = query.get("pipeline") || "";
  const body = h("div");
  // Before the page (and its "New trigger" button) exists: edit() reads refs.
  const refs = await pipelineRefs();
  clear(root, h("div.page-head", h("div", h("h1", "Triggers"), h("p.muted", "Run pipelines on a schedule, from an HTTP call (API trigger) or when a sensor/event fires.")),
    h("div.actions", button("New trigger", () => edit(null), "primary", { id: "new-trigger" }))), h("section.section", body));

  let infos = {};
  async function load() {
    try {
      let [list, info] = await Promise.all([api("/api/triggers"), api("/ui-api/triggers").catch(() => ({}))]);
      infos = info;
      if (filter) list = list.filter((t) => `${t.project}/${t.pipeline_uuid}` === filter);
      if (state.project) list = list.filter((t) => t.project === state.project);
      draw(list);
      const editId = Number(query.get("edit"));
      if (editId) { const t = list.find((x) => x.id === editId); if (t) { query.delete("edit"); edit(t); } }
    } catch (e) { clear(body, errorBox(e, "Could not list triggers")); }
  }

  function draw(list) {
    if (!list.length) { clear(body, empty("No triggers" + (filter ? ` for ${filter}` : ""), "A schedule trigger runs a pipeline at fixed times; an API trigger gives a URL to call.", button("New trigger", () => edit(null), "primary"))); return; }
    clear(body, h("div.table-wrap", h("table.data.triggers", { "aria-label": "Triggers" },
      h("thead", h("tr", ["Name", "Pipeline", "Type", "Schedule", "Status", "Last run", "Next run", ""].map((c) => h("th", c)))),
      h("tbody", list.map((t) => h("tr", { "data-trigger": t.id },
        h("td", h("a", { href: `/triggers/${t.id}`, "data-action": "open" }, t.name || `#${t.id}`)),
        h("td", h("a", { href: `/pipelines/${encodeURIComponent(t.project)}/${encodeURIComponent(t.pipeline_uuid)}` }, `${t.project}/${t.pipeline_uuid}`)),
        h("td", t.schedule_type),
        h("td", t.schedule_type === "time" ? [t.schedule_interval || "—", t.start_time ? h("div.muted.small", "from " + fmtTime(t.start_time)) : null] : t.schedule_type === "api" ? h("span.muted", "on request") : h("span.muted", "on event")),
        h("td", statusBadge(t.status || "active")),
        h("td", lastRunCell(infos[String(t.id)])),
        h("td", nextRunCell(t, infos[String(t.id)])),
        h("td", h("div.actions",
          button("Edit", () => edit(t), "small secondary", { "data-action": "edit" }),
          button(t.status === "inactive" ? "Enable" : "Disable", (e) => busy(e.currentTarget, async () => {
            try { await api(`/api/triggers/${t.id}`, { method: "PUT", body: { status: t.status === "inactive" ? "active" : "inactive" } }); await load(); }
            catch (err) { toast(err.message, "error"); }
          }), "small secondary", { "data-action": "toggle" }),
          button("Delete", (e) => busy(e.currentTarget, async () => {
            if (!confirm(`Delete trigger ${t.name}?`)) return;
            try { await api(`/api/triggers/${t.id}`, { method: "DELETE" }); await load(); } catch (err) { toast(err.message, "error"); }
          }), "small secondary")))))))));
  }

  function edit(t) {
    const isNew = !t;
    t = t || { schedule_type: "time", schedule_interval: "@daily", status: "active", variables: {}, pipeline: filter || refs[0] };
    const pipeline = h("select", { name: "pipeline", disabled: !isNew }, refs.map((r) => h("option", { value: r, selected: r === (t.pipeline || `${t.project}/${t.pipeline_uuid}`) }, r)));
    const name = h("input", { name: "name", value: t.name || "", required: true });
    const type = h("select", { name: "schedule_type" }, [["time", "Schedule"], ["api", "API"], ["event", "Event / sensor"]].map(([v, l]) => h("option", { value: v, selected: v === t.schedule_type }, l)));
    const interval = h("input", { name: "schedule_interval", value: t.schedule_interval || "", list: "intervals", placeholder: "@daily or a cron expression: 0 6 * * 1" });
    const start = h("input", { name: "start_time", type: "datetime-local", value: t.start_time ? String(t.start_time).slice(0, 16) : "" });
    const vars = h("textarea", { name: "variables", rows: 4 }, JSON.stringify(t.variables || {}, null, 2));
    const active = h("input", { type: "checkbox", name: "active", checked: (t.status || "active") === "active" });
    const schedule = h("div", field("Interval", interval, "@once, @hourly, @daily, @weekly, @monthly or cron"), field("Start time", start),
      h("datalist", { id: "intervals" }, INTERVALS.map((i) => h("option", { value: i }))));
    const apiInfo = h("div");
    const sync = () => {
      schedule.hidden = type.value !== "time";
      clear(apiInfo, type.value === "api"
        ? (t.id ? h("div", h("p.small", "Call this URL to queue a run (the token in the URL is the credential):"), copyBox(apiUrl(t), "Trigger URL"),
            h("p.small", "Ready to paste:"), copyBox(`curl -X POST ${apiUrl(t)} \\\n  -H 'Content-Type: application/json' \\\n  -d '{"pipeline_run": {"variables": {"key": "value"}}}'`, "curl command"))
          : h("p.muted.small", "Save the trigger to get its URL, token and a ready curl command."))
        : null);
    };
    type.addEventListener("change", sync); sync();
    const err = h("div");
    const save = button(isNew ? "Create trigger" : "Save trigger", () => busy(save, async () => {
      let variables;
      try { variables = JSON.parse(vars.value || "{}"); } catch (e) { clear(err, errorBox(new Error("Variables must be a JSON object: " + e.message))); return; }
      const [project, pipeline_uuid] = pipeline.value.split("/");
      const body = { name: name.value.trim(), schedule_type: type.value, status: active.checked ? "active" : "inactive", variables };
      if (type.value === "time") { body.schedule_interval = interval.value.trim() || null; body.start_time = start.value ? new Date(start.value).toISOString() : null; }
      try {
        const out = isNew ? await api("/api/triggers", { method: "POST", body: { ...body, project, pipeline_uuid } }) : await api(`/api/triggers/${t.id}`, { method: "PUT", body });
        toast(isNew ? `Trigger ${out.name} created` : "Trigger saved", "success");
        await load();
        if (out.schedule_type === "api") { m.close(); edit(out); } else m.close();
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: "save-trigger" });
    const m = modal(isNew ? "New trigger" : `Trigger ${t.name}`, h("form", { onsubmit: (e) => { e.preventDefault(); save.click(); } },
      field("Pipeline", pipeline), field("Name", name), field("Type", type), schedule, apiInfo,
      field("Variables (JSON)", vars, "Override the pipeline's variables for runs of this trigger."),
      h("label.check", active, " Active"), err), [save]);
  }

  await load();
  const timer = setInterval(load, 10000);
  return () => clearInterval(timer);
}

async function backfillsPage(root) {
  setTitle("Backfills", "Backfills");
  const body = h("div");
  // Before the page (and its "New backfill" button) exists: create() reads refs.
  const refs = await pipelineRefs();
  clear(root, h("div.page-head", h("div", h("h1", "Backfills"), h("p.muted", "Run a pipeline once per interval over a past date range; each run gets interval_start_datetime and interval_end_datetime.")),
    h("div.actions", button("New backfill", () => create(), "primary", { id: "new-backfill" }))), h("section.section", body));

  async function load() {
    try {
      const list = (await api("/api/backfills")).filter((b) => !state.project || b.project === state.project);
      if (!list.length) { clear(body, empty("No backfills", "Create one to rerun a pipeline over past dates.", button("New backfill", () => create(), "primary"))); return; }
      clear(body, table(["Backfill", "Pipeline", "Range", "Interval", "Progress", "Status", ""], list.map((b) => [
        h("a", { href: `/runs?backfill_id=${b.id}` }, b.name || `#${b.id}`),
        `${b.project || ""}/${b.pipeline_uuid || ""}`,
        `${fmtTime(b.start_datetime || b.start)} → ${fmtTime(b.end_datetime || b.end)}`,
        `${b.units && b.units > 1 ? b.units + " × " : ""}${b.interval || ""}`,
        progress(b),
        statusBadge(b.status),
        ["queued", "running"].includes(b.status) ? button("Cancel", (e) => busy(e.currentTarget, async () => { try { await api(`/api/backfills/${b.id}/cancel`, { method: "POST" }); await load(); } catch (err) { toast(err.message, "error"); } }), "small secondary") : "",
      ])));
    } catch (e) { clear(body, errorBox(e, "Could not list backfills")); }
  }

  function progress(b) {
    const total = b.total_runs || 0;
    const seg = (n, color) => (total && n ? h("span", { style: { width: (100 * n) / total + "%", background: color } }) : null);
    return h("div", { title: `${b.completed || 0} completed, ${b.failed || 0} failed, ${b.running || 0} running, ${b.queued || 0} queued of ${total}` },
      h("div.progress", seg(b.completed, "#16a34a"), seg(b.failed, "#dc2626"), seg(b.running, "#2563eb"), seg(b.cancelled, "#9ca3af")),
      h("div.muted.small", `${b.done ?? (b.completed || 0) + (b.failed || 0)}/${total} runs`));
  }

  function create() {
    const pipeline = h("select", { name: "pipeline" }, refs.map((r) => h("option", { value: r }, r)));
    const start = h("input", { name: "start", type: "date", required: true });
    const end = h("input", { name: "end", type: "date", required: true });
    const interval = h("select", { name: "interval" }, ["hour", "day", "week", "month"].map((i) => h("option", { value: i, selected: i === "day" }, i)));
    const vars = h("textarea", { name: "variables", rows: 3 }, "{}");
    const err = h("div");
    const go = button("Create backfill", () => busy(go, async () => {
      let variables;
      try { variables = JSON.parse(vars.value || "{}"); } catch (e) { clear(err, errorBox(new Error("Variables must be a JSON object"))); return; }
      try {
        await api("/api/backfills", { method: "POST", body: { pipeline: pipeline.value, start: start.value, end: end.value, interval: interval.value, variables } });
        m.close(); toast("Backfill created", "success"); await load();
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: "create-backfill" });
    const m = modal("New backfill", h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      field("Pipeline", pipeline), field("Start", start), field("End", end), field("Interval", interval), field("Variables (JSON)", vars), err), [go]);
  }

  await load();
  const timer = setInterval(load, 3000);
  return () => clearInterval(timer);
}
