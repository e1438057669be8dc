// All runs with filters (pipeline, status, trigger, dates) and pagination.
import { h, clear, api, statusBadge, errorBox, fmtTime, duration, empty, field, button } from "../lib.js";
import { navigate, setTitle, state } from "../app.js";

const STATUSES = ["queued", "running", "completed", "failed", "cancelled", "upstream_failed", "condition_failed", "initial"];
const LIMIT = 50;

export default async function runsPage(root, { query }) {
  setTitle("Runs", "Runs");
  const q = Object.fromEntries(query.entries());
  const project = q.project || state.project || "";
  const offset = Math.max(0, Number(q.offset || 0));

  const pipelines = h("select", { name: "pipeline" }, h("option", { value: "" }, "All pipelines"));
  const status = h("select", { name: "status" }, h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s }, s.replace(/_/g, " "))));
  // by trigger name (the value is its id)
  const trigger = h("select", { name: "trigger_id" }, h("option", { value: "" }, "Any trigger"),
    q.trigger_id ? h("option", { value: q.trigger_id }, `#${q.trigger_id}`) : null);
  const since = h("input", { name: "since", type: "date" });
  const until = h("input", { name: "until", type: "date" });
  status.value = q.status || ""; trigger.value = q.trigger_id || ""; since.value = (q.since || "").slice(0, 10); until.value = (q.until || "").slice(0, 10);
  const apply = (e) => {
    if (e) e.preventDefault();
    const p = new URLSearchParams();
    if (project) p.set("project", project);
    if (!single.checked) p.set("single", "hide");
    if (pipelines.value) p.set("pipeline", pipelines.value);
    if (status.value) p.set("status", status.value);
    if (trigger.value) p.set("trigger_id", trigger.value);
    if (since.value) p.set("since", since.value);
    if (until.value) p.set("until", until.value);
    navigate("/runs" + (p.toString() ? "?" + p : ""));
  };
  // single-block executions (Execute / With upstream on the pipeline page) can be hidden
  const single = h("input", { type: "checkbox", name: "single", checked: q.single !== "hide" });
  for (const el of [pipelines, status, since, until, single, trigger]) el.addEventListener("change", apply);
  api("/api/triggers").then((list) => {
    clear(trigger, h("option", { value: "" }, "Any trigger"), list.filter((t) => !project || t.project === project)
      .map((t) => h("option", { value: String(t.id) }, `${t.name} (${t.project}/${t.pipeline_uuid})`)));
    trigger.value = q.trigger_id || "";
  }).catch(() => {});
  const form = h("form.filters", { onsubmit: apply, "aria-label": "Filter runs" },
    field("Pipeline", pipelines), field("Status", status), field("Trigger", trigger), field("Created from", since), field("Created before", until),
    h("div.field", h("span", "\u00a0"), h("label.check", single, " Single-block runs")),
    h("div.field", h("span", "\u00a0"), h("div.actions", button("Apply", apply, "secondary small"), h("a", { href: project ? "/runs?project=" + encodeURIComponent(project) : "/runs" }, "Reset"))));
  const body = h("div");
  clear(root, h("div.page-head", h("h1", "Runs")), h("section.section", form, body));

  api("/api/pipelines").then((list) => {
    for (const p of list.filter((x) => !project || x.project === project)) pipelines.append(h("option", { value: `${p.project}/${p.uuid}` }, `${p.project}/${p.uuid}`));
    pipelines.value = q.pipeline || "";
  }).catch(() => {});

  let timer = null, alive = true;
  async function load() {
    try {
      const untilIso = q.until ? new Date(new Date(q.until).getTime() + (q.until.length <= 10 ? 86400000 : 0)).toISOString() : null;
      const data = await api("/api/runs", { query: { project: project || null, pipeline: q.pipeline, status: q.status, trigger_id: q.trigger_id, since: q.since ? new Date(q.since).toISOString() : null, until: untilIso, limit: LIMIT, offset } });
      if (!alive) return;
      draw(data);
    } catch (e) {
      if (alive) clear(body, errorBox(e, "Could not list runs"));
    }
    if (alive && offset === 0) timer = setTimeout(load, 4000);
  }

  function draw(data) {
    if (q.single === "hide") data = { ...data, runs: data.runs.filter((r) => !r.block) };
    if (!data.runs.length) {
      clear(body, empty(data.total ? "No runs on this page" : "No runs", Object.keys(q).some((k) => k !== "project") ? "No run matches these filters." : "Runs appear here once a pipeline ran: open a pipeline and click Run @once."));
      return;
    }
    const page = (o) => {
      const p = new URLSearchParams(query);
      if (o) p.set("offset", o); else p.delete("offset");
      return "/runs?" + p;
    };
    clear(body,
      h("div.table-wrap", h("table.data.runs", { "aria-label": "Runs" },
        h("thead", h("tr", ["Run", "Pipeline", "Status", "Trigger", "Created", "Duration", "Blocks"].map((c) => h("th", c)))),
        h("tbody", data.runs.map((r) => h("tr", { "data-run": r.id },
          h("td", h("a", { href: `/runs/${r.id}` }, `#${r.id}`), r.retry_of ? h("div.muted.small", `retry of #${r.retry_of}`) : null,
            r.block ? h("div", h("span.tag.single", { title: "A single-block execution" }, r.with_upstream ? `block ${r.block} + upstream` : `block ${r.block}`)) : null),
          h("td", h("a", { href: `/pipelines/${encodeURIComponent(r.project)}/${encodeURIComponent(r.pipeline_uuid)}` }, `${r.project}/${r.pipeline_uuid}`)),
          h("td", statusBadge(r.status), r.error ? h("div.error-text.small.clip", { title: r.error }, r.error.split("\n")[0]) : null),
          h("td", r.trigger_id ? h("a", { href: `/triggers/${r.trigger_id}` }, `trigger #${r.trigger_id}`) : r.backfill_id ? `backfill #${r.backfill_id}` : h("span.muted", "manual")),
          h("td", fmtTime(r.created_at)),
          h("td", r.started_at ? duration(r.started_at, r.completed_at) : "—"),
          h("td", String(r.block_count))))))),
      h("nav.pager", { "aria-label": "Pages" },
        h("span.muted", `${(offset + 1).toLocaleString()}–${(offset + data.runs.length).toLocaleString()} of ${data.total.toLocaleString()}`),
        offset > 0 ? h("a", { href: page(0) }, "« First") : null,
        offset > 0 ? h("a", { href: page(Math.max(0, offset - LIMIT)), rel: "prev" }, "‹ Newer") : null,
        offset + LIMIT < data.total ? h("a", { href: page(offset + LIMIT), rel: "next" }, "Older ›") : null));
  }

  load();
  return () => { alive = false; clearTimeout(timer); };
}
