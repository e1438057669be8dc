// Files: the workspace as a tree (one folder loaded per expand, so big workspaces stay
// fast), a code editor for the open file (syntax by extension; Ctrl+S saves; Python is
// compiled by the server first), create / rename-move / delete, upload, download.
// The project selector scopes the tree: with a project chosen, other projects are hidden.
import { h, clear, api, enc, errorBox, button, field, modal, toast, busy, headers, ApiError } from "../lib.js";
import { setTitle, state, navigate, setLeaveGuard } from "../app.js";

const MODES = { python: "python", sql: "text/x-sql", yaml: "yaml", markdown: "markdown" };

export default async function filesPage(root, { query }) {
  setTitle("Files", "Files");
  const projects = new Set(state.projects.map((p) => p.name));
  const tree = h("ul.tree", { role: "tree", "aria-label": "Workspace files" });
  const editorPanel = h("section.section.file-editor", { "aria-label": "Open file" });
  let current = null; // {path, cm, dirty, saveBtn, message}
  let folder = ""; // target folder of New / Upload: the selected folder or the open file's folder
  let folderSelected = false;
  const upload = h("input.sr-only", { type: "file", id: "upload-input", multiple: true, onchange: () => uploadFiles() });
  clear(root,
    h("div.page-head", h("div", h("h1", "Files"), h("p.muted.desc", state.project
      ? `Project ${state.project} and the workspace's shared files (utils/, settings, requirements). Other projects are hidden: choose "All projects" to see them.`
      : "The whole workspace. Blockyard's own state (.blockyard/, keys, databases) is never shown.")),
    h("div.actions",
      button("New file", () => create("file"), "secondary", { id: "new-file" }),
      button("New folder", () => create("folder"), "secondary", { id: "new-folder" }),
      h("label.button.secondary", { for: "upload-input", tabindex: "0", onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); upload.click(); } } }, "Upload"),
      upload)),
    h("div.files-grid", h("section.section.tree-box", h("h2", "Workspace"), h("div.target.muted.small", { id: "target-folder" }), tree), editorPanel));
  showTarget();
  clear(editorPanel, h("p.muted", "Choose a file in the tree to open it."));

  function showTarget() {
    const dir = folder;
    clear(root.querySelector("#target-folder"), "New files and uploads go to ", h("code", "/" + dir),
      folderSelected && dir ? [
        button("Rename folder", () => moveDialog(dir, true), "link small", { id: "rename-folder" }),
        button("Delete folder", () => deleteDialog(dir, "folder"), "link small", { id: "delete-folder" })] : null);
  }

  // ---------------------------------------------------------------- tree
  async function loadFolder(path, ul, depth) {
    clear(ul, h("li.muted.small", { role: "none" }, "Loading…"));
    let data;
    try { data = await api("/ui-api/files/list", { query: { path } }); }
    catch (e) { clear(ul, h("li", { role: "none" }, errorBox(e))); return; }
    let entries = data.entries;
    if (!path && state.project) entries = entries.filter((e) => e.type !== "dir" || !projects.has(e.name) || e.name === state.project);
    clear(ul, entries.length ? entries.map((e) => node(e, depth)) : h("li.muted.small", { role: "none" }, "(empty)"));
  }

  function node(e, depth) {
    const li = h("li", { role: "treeitem", "data-path": e.path, "data-type": e.type, "aria-level": String(depth + 1), "aria-selected": "false" });
    const label = h("button.tree-item", { type: "button", style: { paddingLeft: 6 + depth * 14 + "px" }, title: e.path,
      onclick: () => (e.type === "dir" ? toggle() : openFile(e.path)) },
      h("span.tree-icon", { "aria-hidden": "true" }, e.type === "dir" ? "▸" : "·"), h("span.tree-name", e.name));
    li.append(label);
    let sub = null;
    if (e.type === "dir") li.setAttribute("aria-expanded", "false");
    async function toggle() {
      select(li, e.path, true);
      if (li.getAttribute("aria-expanded") === "true") {
        li.setAttribute("aria-expanded", "false"); label.firstChild.textContent = "▸"; if (sub) sub.hidden = true; return;
      }
      li.setAttribute("aria-expanded", "true"); label.firstChild.textContent = "▾";
      if (!sub) { sub = h("ul", { role: "group" }); li.append(sub); }
      sub.hidden = false;
      await loadFolder(e.path, sub, depth + 1);
    }
    li.toggle = toggle;
    return li;
  }

  function select(li, path, isDir) {
    for (const x of tree.querySelectorAll("[aria-selected=true]")) x.setAttribute("aria-selected", "false");
    if (li) li.setAttribute("aria-selected", "true");
    folder = isDir ? path : path.split("/").slice(0, -1).join("/");
    folderSelected = isDir;
    showTarget();
  }

  // Expand the folders down to `path` (a file's or folder's path), loading each on the way.
  async function reveal(path) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const li = tree.querySelector(`li[data-path="${CSS.escape(parts.slice(0, i).join("/"))}"]`);
      if (li && li.getAttribute("aria-expanded") !== "true") await li.toggle();
    }
  }

  async function reload(path) {
    // reload the folder holding `path` (the root when it is at the top)
    const parent = path.split("/").slice(0, -1).join("/");
    if (!parent) { await loadFolder("", tree, 0); return; }
    const li = tree.querySelector(`li[data-path="${CSS.escape(parent)}"]`);
    if (!li) { await reveal(path); return; }
    if (li.getAttribute("aria-expanded") === "true") await loadFolder(parent, li.querySelector("ul"), Number(li.getAttribute("aria-level")));
    else await li.toggle();
  }

  // ---------------------------------------------------------------- editor
  function confirmLeave() {
    return !(current && current.dirty) || window.confirm(`${current.path} has unsaved changes. Leave without saving?`);
  }

  async function openFile(path, { push = true } = {}) {
    if (current && current.path === path) return;
    if (!confirmLeave()) return;
    const li = tree.querySelector(`li[data-path="${CSS.escape(path)}"]`);
    select(li, path, false);
    clear(editorPanel, h("p.muted", { "aria-busy": "true" }, "Opening ", path, "…"));
    if (push) history.replaceState({}, "", "/files?" + new URLSearchParams({ ...(state.project ? { project: state.project } : {}), path }));
    const message = h("div.editor-message", { role: "status" });
    const saveBtn = button("Save", () => save(), "small", { "data-action": "save", disabled: true });
    const toolbar = h("div.editor-toolbar",
      h("span.path", { title: path }, h("code", path)), h("span.muted.small", "Ctrl+S saves"), message, saveBtn,
      button("Download", () => download(path), "small secondary", { "data-action": "download" }),
      button("Rename / move", () => moveDialog(path), "small secondary", { "data-action": "move" }),
      button("Delete", () => deleteDialog(path, "file"), "small danger", { "data-action": "delete" }));
    let data;
    try { data = await api("/ui-api/files/content", { query: { path } }); }
    catch (e) {
      current = null;
      clear(editorPanel, toolbar, errorBox(e, "Cannot open " + path));
      saveBtn.hidden = true;
      return;
    }
    const box = h("div.editor-box.file-editor-box");
    clear(editorPanel, toolbar, box);
    const cm = window.CodeMirror(box, {
      value: data.content, mode: MODES[data.language] || null, lineNumbers: true, inputStyle: "contenteditable", indentUnit: 4, tabSize: 4, indentWithTabs: false,
      matchBrackets: true, autoCloseBrackets: true, styleActiveLine: true, screenReaderLabel: `Contents of ${path}`,
      extraKeys: { "Ctrl-S": () => save(), "Cmd-S": () => save(), Tab: (c) => c.execCommand(c.somethingSelected() ? "indentMore" : "insertSoftTab"), "Shift-Tab": "indentLess", Esc: (c) => c.getInputField().blur() },
    });
    current = { path, cm, dirty: false, saveBtn, message, errorLine: undefined, language: data.language };
    editorPanel.dataset.open = path;
    cm.on("change", () => {
      current.dirty = true; saveBtn.disabled = false; clear(message, "unsaved changes");
      if (current.errorLine !== undefined) { cm.removeLineClass(current.errorLine, "background", "cm-error-line"); current.errorLine = undefined; }
    });
  }

  async function save() {
    const cur = current;
    if (!cur || !cur.dirty) return true;
    try {
      await api("/ui-api/files/content", { method: "PUT", body: { path: cur.path, content: cur.cm.getValue() } });
      cur.dirty = false; cur.saveBtn.disabled = true;
      clear(cur.message, h("span.ok", "saved"));
      return true;
    } catch (e) {
      const line = e instanceof ApiError && e.error && e.error.line;
      if (line) {
        cur.errorLine = line - 1;
        cur.cm.addLineClass(line - 1, "background", "cm-error-line");
        cur.cm.scrollIntoView({ line: line - 1, ch: 0 }, 80);
      }
      clear(cur.message, h("span.error-text", { "data-error-line": line || "" }, line ? `Line ${line}: ` : "", e.message, " — not saved"));
      return false;
    }
  }

  async function download(path) {
    // fetch + blob: the request carries the token header a plain link could not
    try {
      const r = await api("/ui-api/files/download", { query: { path }, raw: true });
      const url = URL.createObjectURL(await r.blob());
      const a = h("a", { href: url, download: path.split("/").pop() });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 5000);
    } catch (e) { toast(e.message, "error"); }
  }

  // ---------------------------------------------------------------- create, move, delete, upload
  function create(kind) {
    const name = h("input", { name: "path", required: true, value: folder ? folder + "/" : "", placeholder: kind === "file" ? "utils/data_preparation/cleaning.py" : "utils/data_preparation" });
    const err = h("div");
    const go = button(kind === "file" ? "Create file" : "Create folder", () => busy(go, async () => {
      const path = name.value.trim().replace(/^\/+/, "");
      try {
        await api("/ui-api/files", { method: "POST", body: { path, type: kind } });
        m.close(); toast(`${path} created`, "success");
        await reload(path); await reveal(path);
        if (kind === "file") await openFile(path);
        else select(tree.querySelector(`li[data-path="${CSS.escape(path)}"]`), path, true);
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: "create-path" });
    const m = modal(kind === "file" ? "New file" : "New folder", h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      field("Path", name, "Relative to the workspace; missing folders are created."), err), [go]);
  }

  function moveDialog(path, isDir = false) {
    const to = h("input", { name: "to", required: true, value: path });
    const err = h("div");
    const go = button("Rename / move", () => busy(go, async () => {
      const dest = to.value.trim().replace(/^\/+/, "");
      if (current && current.path === path && current.dirty && !(await save())) { clear(err, errorBox(new Error("save or fix the file first"))); return; }
      try {
        await api("/ui-api/files/move", { method: "POST", body: { path, to: dest } });
        m.close(); toast(`Moved to ${dest}`, "success");
        if (!isDir || (current && current.path.startsWith(path + "/"))) { current = null; clear(editorPanel, h("p.muted", "Choose a file in the tree to open it.")); }
        await loadFolder("", tree, 0); await reveal(dest);
        if (isDir) { await reveal(dest + "/x"); select(tree.querySelector(`li[data-path="${CSS.escape(dest)}"]`), dest, true); }
        else await openFile(dest);
      } catch (e) { clear(err, errorBox(e)); }
    }), "primary", { id: "move-submit" });
    const m = modal(`Rename or move ${path}`, h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      field("New path", to, "Relative to the workspace; the folder must exist."), err), [go]);
  }

  function deleteDialog(path, kind) {
    const err = h("div");
    const go = button("Delete", () => busy(go, async () => {
      try {
        await api("/ui-api/files", { method: "DELETE", query: { path } });
        m.close(); toast(`${path} deleted`, "success");
        if (current && (current.path === path || current.path.startsWith(path + "/"))) {
          current = null; delete editorPanel.dataset.open;
          clear(editorPanel, h("p.muted", "Choose a file in the tree to open it."));
        }
        await reload(path);
      } catch (e) { clear(err, errorBox(e)); }
    }), "danger", { id: "confirm-delete" });
    const m = modal(`Delete ${path}?`, h("div", h("p", kind === "folder" ? "The folder and everything in it are deleted." : "The file is deleted."), err), [go]);
    setTimeout(() => go.focus(), 0);
  }

  async function uploadFiles() {
    for (const file of upload.files) {
      const path = (folder ? folder + "/" : "") + file.name;
      try {
        const r = await fetch("/ui-api/files/upload?" + new URLSearchParams({ path }), { method: "PUT", headers: headers(), body: file, credentials: "same-origin" });
        if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
        toast(`Uploaded ${path}`, "success");
        await reload(path);
      } catch (e) { toast(`${path}: ${e.message}`, "error"); }
    }
    upload.value = "";
  }

  // Folder context: a Delete for the selected folder (files have theirs in the editor toolbar).
  tree.addEventListener("keydown", (e) => {
    const li = e.target.closest("li[role=treeitem]");
    if (!li) return;
    if (e.key === "Delete") { e.preventDefault(); deleteDialog(li.dataset.path, li.dataset.type === "dir" ? "folder" : "file"); }
    if (e.key === "F2") { e.preventDefault(); moveDialog(li.dataset.path, li.dataset.type === "dir"); }
  });

  await loadFolder("", tree, 0);
  const want = query.get("path");
  if (want) { await reveal(want); await openFile(want, { push: false }); }
  else if (state.project) await reveal(state.project + "/x");
  // Ctrl+S outside the editor (the editor handles its own and prevents the default)
  const onKey = (e) => { if ((e.ctrlKey || e.metaKey) && e.key === "s" && current && !e.defaultPrevented) { e.preventDefault(); save(); } };
  document.addEventListener("keydown", onKey);
  const beforeUnload = (e) => { if (current && current.dirty) { e.preventDefault(); e.returnValue = ""; } };
  window.addEventListener("beforeunload", beforeUnload);
  setLeaveGuard(() => !(current && current.dirty) || window.confirm(`${current.path} has unsaved changes. Leave without saving?`));
  void navigate; void enc;
  return () => { document.removeEventListener("keydown", onKey); window.removeEventListener("beforeunload", beforeUnload); setLeaveGuard(null); };
}
