// Settings: notification channels (send a test alert) and secrets (write-only values).
import { h, clear, api, errorBox, field, button, busy, toast, table, fmtTime, empty, modal } from "../lib.js";
import { setTitle, state, refreshProjects } from "../app.js";

export default async function settings(root) {
  setTitle("Settings", "Settings");
  const notif = h("section.section");
  const secrets = h("section.section");
  const projectsBox = h("section.section", { "aria-label": "Projects" });
  clear(root, h("div.page-head", h("h1", "Settings")), projectsBox, notif, secrets);

  // ------------------------------------------------------------ projects
  const pList = h("div");
  const pName = h("input", { name: "register_name", required: true, placeholder: "unit_3_deploying" });
  const pPath = h("input", { name: "register_path", placeholder: "(same as the name)" });
  const pMsg = h("div", { role: "status" });
  async function loadProjectList() {
    try {
      const ps = await api("/api/projects");
      clear(pList, table(["Project", "Folder", "Pipelines", ""], ps.map((p) => [h("a", { href: "/projects/" + encodeURIComponent(p.name) }, p.name), h("code", p.path), String(p.pipelines.length),
        button("Rename", () => renameProject(p.name), "small secondary", { "data-rename": p.name, "aria-label": `Rename ${p.name}` })])));
    } catch (e) { clear(pList, errorBox(e)); }
  }
  function renameProject(old) {
    const input = h("input", { name: "new_name", required: true, value: old });
    const err = h("div");
    const go = button("Rename", () => busy(go, async () => {
      try {
        const out = await api(`/ui-api/projects/${encodeURIComponent(old)}/rename`, { method: "POST", body: { new_name: input.value.trim() } });
        m.close();
        toast(`Renamed ${old} to ${out.name}`, "success");
        await loadProjectList(); await refreshProjects();
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: "rename-project-submit" });
    const m = modal(`Rename ${old}`, h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      field("New name", input, "Its folder is renamed too (when it is the project's own folder); runs, triggers and backfills recorded under the old name move with it. Refused while a run is unfinished."),
      h("button", { type: "submit", hidden: true, tabindex: -1 }), err), [go]);
  }
  const reg = button("Register", () => busy(reg, async () => {
    try {
      const out = await api("/ui-api/projects/register", { method: "POST", body: { name: pName.value.trim(), path: pPath.value.trim() || null } });
      clear(pMsg, h("span.ok", `Registered ${out.name} (${out.pipelines.length} pipelines)`));
      pName.value = ""; pPath.value = "";
      await loadProjectList(); await refreshProjects();
    } catch (e) { clear(pMsg, errorBox(e)); }
  }), "primary", { id: "register-project" });
  clear(projectsBox, h("h2", "Projects"), h("p.muted.small", "The workspace's projects (settings.yaml). Register a folder that already holds a Mage project (metadata.yaml, pipelines/) — New project on the overview creates one from scratch."),
    pList, h("form.filters", { onsubmit: (e) => { e.preventDefault(); reg.click(); } }, field("Name", pName), field("Folder", pPath), h("div.field", h("span", "\u00a0"), reg),
      h("button", { type: "submit", hidden: true, tabindex: -1 }, "Register")), pMsg);
  loadProjectList();

  // ------------------------------------------------------------ notifications
  const project = h("select", { name: "project" }, state.projects.map((p) => h("option", { value: p.name, selected: p.name === state.project }, p.name)));
  const pipeline = h("select", { name: "pipeline" }, h("option", { value: "" }, "(project defaults)"));
  const info = h("div");
  const results = h("div", { role: "status" });
  async function loadPipelines() {
    const p = state.projects.find((x) => x.name === project.value);
    clear(pipeline, h("option", { value: "" }, "(project defaults)"), (p ? p.pipelines : []).map((u) => h("option", { value: u }, u)));
    await loadConfig();
  }
  async function loadConfig() {
    if (!project.value) { clear(info, h("p.muted", "No projects.")); return; }
    try {
      const c = await api("/ui-api/notifications", { query: { project: project.value, pipeline: pipeline.value } });
      clear(info, c.channels.length
        ? h("p", "Channels: ", c.channels.map((x) => h("span.tag", x)), " · alert on: ", (c.alert_on || ["trigger_failure", "trigger_passed_sla"]).join(", "),
            h("div.muted.small", "From ", Object.values(c.sources).filter((v, i, a) => a.indexOf(v) === i).join(", ")))
        : h("p.muted", "No channels configured: fill in the project settings below, or add notification_config to a pipeline's metadata.yaml."));
    } catch (e) { clear(info, errorBox(e)); }
  }
  // the project's notification_config as a form (only the fields shown are changed)
  const form = h("form.notif-form", { "aria-label": "Project notification settings" });
  const EVENTS = [["trigger_failure", "Run failed"], ["trigger_success", "Run succeeded"], ["trigger_passed_sla", "Run passed its SLA"]];
  const LABELS = { smtp_host: "SMTP host", smtp_port: "SMTP port", smtp_user: "SMTP user", smtp_password: "SMTP password", smtp_mail_from: "From", to_emails: "To (comma-separated)", webhook_url: "Webhook URL", url: "URL", method: "Method" };
  const TITLES = { email_config: "Email", slack_config: "Slack", teams_config: "Microsoft Teams", discord_config: "Discord", webhook_config: "Webhook" };
  const formMsg = h("div", { role: "status" });
  const shown = (v) => v == null ? "" : Array.isArray(v) ? v.join(", ") : String(v);
  async function loadForm() {
    if (!project.value) { clear(form); return; }
    let c;
    try { c = await api("/ui-api/notification-config", { query: { project: project.value } }); } catch (e) { clear(form, errorBox(e)); return; }
    const on = c.alert_on || ["trigger_failure", "trigger_passed_sla"];
    const boxes = EVENTS.map(([v, label]) => h("label.check", h("input", { type: "checkbox", name: "alert_on", value: v, checked: on.includes(v) }), " " + label));
    const sets = Object.entries(c.fields).map(([key, fields]) => {
      const cur = c.channels[key];
      if (Array.isArray(cur)) return h("fieldset", h("legend", TITLES[key]), h("p.muted.small", `${cur.length} channels: edit them in ${c.file}.`));
      return h("fieldset", { "data-channel": key }, h("legend", TITLES[key]),
        h("div.filters", fields.map((f) => field(LABELS[f], h("input", { name: `${key}.${f}`, "data-field": f, value: shown(cur && cur[f]),
          type: f === "smtp_password" && !shown(cur && cur[f]).includes("{{") ? "password" : "text", autocomplete: "off",
          placeholder: f.includes("password") || f.includes("url") ? "{{ env_var('NAME') }}" : "" })))));
    });
    const save = button("Save notification settings", () => busy(save, async () => {
      const channels = {};
      for (const fs of form.querySelectorAll("fieldset[data-channel]")) {
        const vals = {};
        for (const el of fs.querySelectorAll("input[data-field]")) vals[el.dataset.field] = el.value;
        channels[fs.dataset.channel] = vals;
      }
      const alert_on = [...form.querySelectorAll("input[name=alert_on]:checked")].map((x) => x.value);
      try {
        await api("/ui-api/notification-config", { method: "PUT", body: { project: project.value, alert_on, channels } });
        clear(formMsg, h("span.ok", `Saved in ${c.file}`));
        await loadConfig();
      } catch (e) { clear(formMsg, errorBox(e)); }
    }), "primary", { id: "save-notifications" });
    clear(form, h("h3", `Project settings (${c.file})`),
      h("p.muted.small", "Secrets: write {{ env_var('NAME') }} or {{ mage_secret_var('NAME') }}; values left as they are are kept as written. Other keys of notification_config",
        c.other_keys.length ? ` (${c.other_keys.join(", ")})` : "", " are kept."),
      h("fieldset", h("legend", "Alert on"), boxes), sets, h("button", { type: "submit", hidden: true, tabindex: -1 }), save, formMsg);
    form.onsubmit = (e) => { e.preventDefault(); save.click(); };
  }
  project.addEventListener("change", loadForm);
  project.addEventListener("change", loadPipelines);
  pipeline.addEventListener("change", loadConfig);
  const send = button("Send test alert", () => busy(send, async () => {
    clear(results, h("span.muted", "Sending…"));
    try {
      const r = await api("/ui-api/notifications/test", { method: "POST", body: { project: project.value, pipeline: pipeline.value || null } });
      clear(results, r.results.length ? table(["Channel", "Result", "Target", "Error"], r.results.map((x) => [x.channel, x.ok ? h("span.ok", "sent") : h("span.bad", "failed"), x.target || "", x.error || ""]))
        : h("p.muted", "Nothing to send: no channel is configured."));
    } catch (e) { clear(results, errorBox(e)); }
  }), "primary", { id: "send-test-alert" });
  clear(notif, h("h2", "Notifications"), h("div.filters", field("Project", project), field("Pipeline", pipeline), h("div.field", h("span", "\u00a0"), send)), info, results, form);
  await loadPipelines();
  await loadForm();

  // ------------------------------------------------------------ secrets
  const list = h("div");
  const name = h("input", { name: "secret_name", required: true, autocomplete: "off", placeholder: "SMTP_PASSWORD" });
  const value = h("input", { name: "secret_value", type: "password", required: true, autocomplete: "new-password" });
  const scope = h("select", { name: "secret_project" }, h("option", { value: "" }, "Workspace (all projects)"), state.projects.map((p) => h("option", { value: p.name }, p.name)));
  const msg = h("div");
  async function loadSecrets() {
    try {
      const s = await api("/ui-api/secrets");
      if (!s.available) { clear(list, h("p.muted", "Secrets are unavailable: " + s.reason)); return; }
      clear(list, s.secrets.length ? table(["Name", "Scope", "Updated", ""], s.secrets.map((x) => [h("code", x.name), x.project || "workspace", fmtTime(x.updated_at || x.created_at),
        button("Delete", (e) => busy(e.currentTarget, async () => {
          try { await api(`/ui-api/secrets/${encodeURIComponent(x.name)}`, { method: "DELETE", query: { project: x.project } }); await loadSecrets(); } catch (err) { toast(err.message, "error"); }
        }), "small secondary")])) : empty("No secrets", "Blocks read them with get_secret_value('NAME'); alert configs with {{ mage_secret_var('NAME') }}."));
    } catch (e) { clear(list, errorBox(e)); }
  }
  const save = button("Save secret", () => busy(save, async () => {
    try {
      await api("/ui-api/secrets", { method: "POST", body: { name: name.value.trim(), value: value.value, project: scope.value || null } });
      value.value = "";
      clear(msg, h("span.ok", `Saved ${name.value.trim()} (the value cannot be read back)`));
      await loadSecrets();
    } catch (e) { clear(msg, errorBox(e)); }
  }), "primary", { id: "save-secret" });
  clear(secrets, h("h2", "Secrets"), h("p.muted.small", "Values are encrypted in the database and never shown again; setting an existing name replaces its value."),
    h("form.filters", { onsubmit: (e) => { e.preventDefault(); save.click(); } }, field("Name", name), field("Value", value), field("Scope", scope), h("div.field", h("span", "\u00a0"), save)), msg, list);
  await loadSecrets();
}
