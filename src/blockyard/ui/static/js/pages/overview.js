// Overview: projects, pipelines (tags, last run, active triggers), recent failures.
import { h, clear, api, enc, ago, statusBadge, empty, errorBox, button, field, modal, toast, busy, fmtTime } from "../lib.js";
import { navigate, setTitle, setProject, state, refreshProjects } from "../app.js";

export default async function overview(root, { project, pipelinesOnly }) {
  if (project !== undefined) setProject(project);
  const selected = project !== undefined ? project : state.project;
  const title = pipelinesOnly ? "Pipelines" : selected ? selected : "Overview";
  setTitle(title, pipelinesOnly ? "Pipelines" : selected ? h("a", { href: "/" }, "Projects") : "Overview", selected && !pipelinesOnly ? selected : null);

  const body = h("div");
  const head = h("div.page-head",
    h("h1", title),
    h("div.actions",
      button("New pipeline", () => newPipeline(selected), "primary", { id: "new-pipeline" }),
      button("New project", newProject, "secondary")));
  clear(root, head, body);

  let timer = null, alive = true;
  async function load() {
    try {
      const data = await api("/ui-api/overview", { query: { project: selected || null } });
      if (!alive) return;
      draw(data);
    } catch (e) {
      if (alive) clear(body, errorBox(e, "Could not load the overview"));
    }
    if (alive) timer = setTimeout(load, 5000);
  }

  function draw(data) {
    const parts = [];
    if (!selected && !pipelinesOnly) {
      parts.push(h("section.section", h("h2", "Projects"),
        data.projects.length
          ? h("div.cards", data.projects.map((p) => h("a.card.project-card", { href: "/projects/" + enc(p.name), "data-project": p.name },
              h("div.card-title", p.name), h("div.muted", `${p.pipelines} pipeline${p.pipelines === 1 ? "" : "s"}`))))
          : empty("No projects yet", "Create a project to hold your pipelines.", button("New project", newProject, "primary"))));
    }
    const status = h("div.stats",
      stat("Pipelines", data.pipelines.length),
      stat("Running runs", data.runs.running, "/runs?status=running"),
      stat("Queued runs", data.runs.queued, "/runs?status=queued"),
      stat("Active triggers", data.active_triggers.length, "/triggers"),
      stat("Recent failures", data.recent_failures.length, "/runs?status=failed"));
    parts.unshift(status);
    parts.push(h("section.section", h("h2", "Pipelines"),
      data.pipelines.length ? pipelineTable(data.pipelines, !selected)
        : empty("No pipelines" + (selected ? ` in ${selected}` : ""), "A pipeline is a DAG of blocks: create one, then add data loaders, transformers and exporters.",
            button("New pipeline", () => newPipeline(selected), "primary"))));
    const side = [];
    side.push(h("section.section", h("h2", "Recent failures"),
      data.recent_failures.length
        ? h("ul.list", data.recent_failures.map((r) => h("li",
            h("a", { href: `/runs/${r.id}` }, `#${r.id} ${r.project}/${r.pipeline_uuid}`), " ", statusBadge(r.status),
            h("div.muted.small", ago(r.created_at), r.error ? " — " + r.error.split("\n")[0].slice(0, 140) : ""))))
        : h("p.muted", "No failed runs. ")));
    side.push(h("section.section", h("h2", "Active triggers"),
      data.active_triggers.length
        ? h("ul.list", data.active_triggers.map((t) => h("li",
            h("a", { href: `/triggers?edit=${t.id}` }, t.name), h("span.muted", ` ${t.project}/${t.pipeline_uuid} · ${t.schedule_type}${t.schedule_interval ? " " + t.schedule_interval : ""}`))))
        : h("p.muted", "No active triggers. Create one on a pipeline's page or under Triggers.")));
    clear(body, h("div.grid-main", h("div", parts), h("div", side)));
  }

  load();
  return () => { alive = false; clearTimeout(timer); };
}

function stat(label, value, href) {
  const inner = [h("div.stat-value", String(value)), h("div.stat-label", label)];
  return href ? h("a.stat", { href }, inner) : h("div.stat", inner);
}

function pipelineTable(pipelines, showProject) {
  return h("div.table-wrap", h("table.data.pipelines", { "aria-label": "Pipelines" },
    h("thead", h("tr", showProject ? h("th", "Project") : null, h("th", "Pipeline"), h("th", "Tags"), h("th", "Blocks"),
      h("th", "Last run"), h("th", "Triggers"))),
    h("tbody", pipelines.map((p) => h("tr", { "data-pipeline": `${p.project}/${p.uuid}` },
      showProject ? h("td", p.project) : null,
      h("td", h("a.pipeline-link", { href: `/pipelines/${enc(p.project)}/${enc(p.uuid)}` }, p.uuid),
        p.name && p.name !== p.uuid ? h("div.muted.small", p.name) : null,
        p.error ? h("div.error-text.small", p.error) : p.description ? h("div.muted.small.clip", p.description) : null),
      h("td", (p.tags || []).map((t) => h("span.tag", String(t)))),
      h("td", String(p.blocks)),
      h("td", p.last_run ? [h("a", { href: `/runs/${p.last_run.id}` }, statusBadge(p.last_run.status)), h("div.muted.small", ago(p.last_run.created_at))] : h("span.muted", "never run")),
      h("td", p.active_triggers ? `${p.active_triggers} active` : h("span.muted", "none")))))));
}

export function newProject() {
  const name = h("input", { name: "name", required: true, placeholder: "unit_1_data_prep", pattern: "[A-Za-z0-9_\\-]+" });
  const err = h("div");
  const create = button("Create project", () => busy(create, async () => {
    try {
      await api("/api/projects", { method: "POST", body: { name: name.value.trim() } });
      m.close();
      await refreshProjects();
      setProject(name.value.trim());
      toast(`Project ${name.value.trim()} created`, "success");
      navigate("/projects/" + enc(name.value.trim()));
    } catch (e) { clear(err, errorBox(e)); }
  }), "primary");
  const m = modal("New project", h("form", { onsubmit: (e) => { e.preventDefault(); create.click(); } },
    field("Project name", name, "Letters, digits and underscores; it becomes a folder and is registered in settings.yaml."), err), [create]);
}

export function newPipeline(project) {
  const projects = state.projects.map((p) => p.name);
  const proj = h("select", { name: "project" }, projects.map((p) => h("option", { value: p, selected: p === project }, p)));
  const name = h("input", { name: "name", required: true, placeholder: "Data preparation" });
  const uuid = h("input", { name: "uuid", placeholder: "data_preparation" });
  const desc = h("textarea", { name: "description", rows: 2 });
  const tags = h("input", { name: "tags", placeholder: "comma, separated" });
  name.addEventListener("input", () => { if (!uuid.dataset.touched) uuid.value = name.value.trim().toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, ""); });
  uuid.addEventListener("input", () => { uuid.dataset.touched = "1"; });
  const err = h("div");
  const create = button("Create pipeline", () => busy(create, async () => {
    try {
      const body = { uuid: uuid.value.trim(), name: name.value.trim() || null, description: desc.value.trim() || null,
        tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean) };
      const out = await api(`/api/projects/${enc(proj.value)}/pipelines`, { method: "POST", body });
      m.close();
      toast(`Pipeline ${out.uuid} created`, "success");
      navigate(`/pipelines/${enc(proj.value)}/${enc(out.uuid)}`);
    } catch (e) { clear(err, errorBox(e)); }
  }), "primary", { id: "create-pipeline" });
  const m = modal("New pipeline", h("form", { onsubmit: (e) => { e.preventDefault(); create.click(); } },
    projects.length ? null : h("p.error-text", "Create a project first."),
    field("Project", proj), field("Name", name), field("Pipeline uuid", uuid, "The folder name under pipelines/ (letters, digits, underscores)."),
    field("Description", desc), field("Tags", tags), err), [create]);
}
void fmtTime;
