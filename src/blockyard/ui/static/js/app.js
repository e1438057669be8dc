// Blockyard UI: layout, project selector, client-side routing (History API).
import { h, clear, api, loadSession, session, token, errorBox, forgetToken } from "./lib.js";

const routes = [
  [/^\/$/, () => import("./pages/overview.js"), () => ({})],
  [/^\/projects\/([^/]+)\/?$/, () => import("./pages/overview.js"), (m) => ({ project: decodeURIComponent(m[1]) })],
  [/^\/pipelines\/?$/, () => import("./pages/overview.js"), () => ({ pipelinesOnly: true })],
  [/^\/pipelines\/([^/]+)\/([^/]+)\/?$/, () => import("./pages/pipeline.js"), (m) => ({ project: decodeURIComponent(m[1]), pipeline: decodeURIComponent(m[2]) })],
  [/^\/runs\/?$/, () => import("./pages/runs.js"), () => ({})],
  [/^\/runs\/(\d+)\/?$/, () => import("./pages/run.js"), (m) => ({ id: Number(m[1]) })],
  [/^\/triggers\/?$/, () => import("./pages/triggers.js"), () => ({})],
  [/^\/triggers\/(\d+)\/?$/, () => import("./pages/triggers.js"), (m) => ({ triggerId: Number(m[1]) })],
  [/^\/backfills\/?$/, () => import("./pages/triggers.js"), () => ({ backfills: true })],
  [/^\/dashboards\/?$/, () => import("./pages/dashboards.js"), () => ({})],
  [/^\/dashboards\/files(?:\/(.+?))?\/?$/, () => import("./pages/file_dashboards.js"), (m) => ({ name: m[1] ? decodeURIComponent(m[1]) : "" })],
  [/^\/files\/?$/, () => import("./pages/files.js"), () => ({})],
  [/^\/settings\/?$/, () => import("./pages/settings.js"), () => ({})],
  [/^\/serving\/?$/, () => import("./pages/serving.js"), () => ({})],
  [/^\/login\/?$/, () => import("./pages/login.js"), () => ({})],
];

const NAV = [
  ["/", "Overview", "M3 12l9-8 9 8v8a1 1 0 01-1 1h-5v-6H9v6H4a1 1 0 01-1-1z"],
  ["/pipelines", "Pipelines", "M4 6h6v4H4zM14 14h6v4h-6zM7 10v4h10"],
  ["/runs", "Runs", "M5 4l14 8-14 8z"],
  ["/triggers", "Triggers", "M13 2L4 14h7l-1 8 9-12h-7z"],
  ["/backfills", "Backfills", "M4 4v16h16M8 16l4-5 3 3 5-6"],
  ["/files", "Files", "M4 4h6l2 2h8v14H4zM4 9h16"],
  ["/dashboards", "Dashboards", "M4 20V10M10 20V4M16 20v-8M22 20H2"],
  ["/serving", "Serving", "M12 3v6M12 15v6M5 12h14M8 6l8 12M16 6L8 18"],
  ["/settings", "Settings", "M12 8a4 4 0 100 8 4 4 0 000-8zM2 12h3M19 12h3M12 2v3M12 19v3"],
];

export const state = { project: localStorage.getItem("blockyard-project") || "", projects: [] };
let cleanup = null;
let main, projectSelect, navEl, crumbs;
// Pages scoped by the project selector: the choice travels in their URL (?project=).
export const SCOPED = ["/runs", "/triggers", "/backfills", "/dashboards", "/files"];
// A page with unsaved edits sets a guard: () => true to leave, false to stay.
let leaveGuard = null;
let shownUrl = location.pathname + location.search;

export function setLeaveGuard(fn) { leaveGuard = fn; }

function mayLeave() {
  if (!leaveGuard) return true;
  return leaveGuard();
}

export function navigate(path, { replace = false } = {}) {
  if (!mayLeave()) return false;
  if (replace) history.replaceState({}, "", path);
  else history.pushState({}, "", path);
  render();
  return true;
}

// `path` with ?project=<the selected project> when it is a scoped page.
export function scoped(path) {
  if (!state.project || !SCOPED.some((p) => path === p || path.startsWith(p + "?"))) return path;
  const [base, q = ""] = path.split("?");
  const params = new URLSearchParams(q);
  params.set("project", state.project);
  return base + "?" + params.toString();
}

function updateNavLinks() {
  if (!navEl) return;
  for (const a of navEl.querySelectorAll("a")) a.setAttribute("href", scoped(a.dataset.nav));
}

export function setTitle(title, ...trail) {
  document.title = title ? `${title} · Blockyard` : "Blockyard";
  trail = trail.filter((t) => t !== null && t !== undefined && t !== false && t !== "");
  clear(crumbs, trail.map((t, i) => [i ? h("span.sep", "/") : null, t]));
}

export function setProject(name) {
  state.project = name || "";
  if (name) localStorage.setItem("blockyard-project", name);
  else localStorage.removeItem("blockyard-project");
  if (projectSelect) projectSelect.value = state.project;
  updateNavLinks();
}

function icon(d) {
  const s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  s.setAttribute("viewBox", "0 0 24 24");
  s.setAttribute("aria-hidden", "true");
  s.classList.add("icon");
  const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
  p.setAttribute("d", d);
  s.append(p);
  return s;
}

function layout() {
  projectSelect = h("select#project-select", { id: "project-select", onchange: (e) => {
    const value = e.target.value;
    if (!mayLeave()) { e.target.value = state.project; return; }
    leaveGuard = null;
    setProject(value);
    const path = location.pathname;
    if (SCOPED.some((p) => path === p || path.startsWith(p + "/"))) {
      // stay on the page, scoped to the new project (kept in the URL)
      const params = new URLSearchParams(location.search);
      if (value) params.set("project", value); else params.delete("project");
      for (const k of ["pipeline", "path", "offset"]) params.delete(k);
      const q = params.toString();
      navigate(path + (q ? "?" + q : ""));
    } else navigate(value ? "/projects/" + encodeURIComponent(value) : "/");
  } });
  navEl = h("nav.nav", { "aria-label": "Main" }, NAV.map(([href, label, d]) =>
    h("a", { href, "data-nav": href }, icon(d), h("span", label))));
  crumbs = h("div.crumbs");
  main = h("main#main", { id: "main", tabindex: "-1" });
  const logout = session.auth ? h("button.link", { type: "button", onclick: () => { forgetToken(); location.assign("/login"); } }, "Log out") : null;
  document.body.replaceChildren(
    h("a.skip", { href: "#main" }, "Skip to content"),
    h("div.shell",
      h("aside.sidebar",
        h("a.brand", { href: "/" }, h("span.logo", "▦"), h("span", "Blockyard")),
        h("div.workspace", h("span.muted", "Workspace"), h("strong", session.workspace || "")),
        h("label.sr-only", { for: "project-select" }, "Project"),
        projectSelect,
        navEl,
        h("div.sidebar-foot", h("span.muted", "v" + (session.version || "")), logout)),
      h("div.content", h("header.topbar", crumbs, h("div#live.live", { id: "live" })), main)));
}

async function loadProjects() {
  try {
    state.projects = await api("/api/projects");
  } catch (e) {
    state.projects = [];
  }
  clear(projectSelect, h("option", { value: "" }, "All projects"),
    state.projects.map((p) => h("option", { value: p.name }, p.name)));
  if (state.project && !state.projects.some((p) => p.name === state.project)) setProject("");
  projectSelect.value = state.project;
}

export async function refreshProjects() { await loadProjects(); }

async function render() {
  if (cleanup) { try { cleanup(); } catch { /* page gone */ } cleanup = null; }
  leaveGuard = null;
  const path = location.pathname;
  shownUrl = path + location.search;
  const fromUrl = new URLSearchParams(location.search).get("project");
  if (fromUrl !== null && fromUrl !== state.project && (!fromUrl || state.projects.some((p) => p.name === fromUrl))) setProject(fromUrl);
  if (fromUrl === null && state.project && SCOPED.includes(path.replace(/\/$/, ""))) {
    history.replaceState({}, "", scoped(path + location.search));
    shownUrl = location.pathname + location.search;
  }
  updateNavLinks();
  for (const a of navEl.querySelectorAll("a")) {
    const href = a.dataset.nav;
    const on = href === "/" ? path === "/" || path.startsWith("/projects/") : path.startsWith(href);
    a.classList.toggle("active", on);
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  for (const [re, load, params] of routes) {
    const m = path.match(re);
    if (!m) continue;
    const mod = await load();
    const page = h("div.page");
    clear(main, page);
    try {
      const result = await mod.default(page, { ...params(m), query: new URLSearchParams(location.search) });
      if (typeof result === "function") cleanup = result;
    } catch (e) {
      console.error(e);
      clear(page, errorBox(e, "This page could not be loaded"));
    }
    return;
  }
  setTitle("Not found");
  clear(main, h("div.page", h("h1", "Page not found"), h("p", h("a", { href: "/" }, "Back to the overview"))));
}

// Internal links: <a href="/..."> navigate without reloading.
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  const href = a.getAttribute("href");
  if (!href.startsWith("/") || href.startsWith("/api") || href.startsWith("/docs") || href.startsWith("/static") || href.startsWith("/ui-api")) return;
  e.preventDefault();
  navigate(href);
});
window.addEventListener("popstate", () => {
  if (!mayLeave()) { history.pushState({}, "", shownUrl); return; }
  leaveGuard = null;
  render();
});

async function boot() {
  await loadSession();
  if (session.auth && !token() && location.pathname !== "/login") {
    location.replace("/login?next=" + encodeURIComponent(location.pathname + location.search));
    return;
  }
  if (location.pathname === "/login") {
    document.body.replaceChildren(main = h("main#main", { id: "main", class: "login-main" }));
    const mod = await import("./pages/login.js");
    await mod.default(main, { query: new URLSearchParams(location.search) });
    return;
  }
  layout();
  await loadProjects();
  await render();
}

boot().catch((e) => {
  document.body.replaceChildren(h("div.page", errorBox(e, "Blockyard could not start")));
});
