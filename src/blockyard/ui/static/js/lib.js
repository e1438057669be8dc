// Shared helpers: DOM building, the API client (token + CSRF), SSE over fetch, formatting.

export function h(tag, attrs, ...children) {
  const [head, ...classes] = tag.split(".");
  const [name, id] = head.split("#");
  const el = document.createElement(name || "div");
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(" ");
  // a <pre> (logs, errors, values) may scroll: keyboard users must be able to reach it
  if (el.tagName === "PRE") el.tabIndex = 0;
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "class") el.className += (el.className ? " " : "") + v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string" && k !== "list") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// ------------------------------------------------------------------ API client
export class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && (body.detail || body.message)) || `HTTP ${status}`;
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.body = body || {};
    this.error = this.body.error || null; // {file, line, block, pipeline, hint}
  }
}

const session = { csrf: null, auth: false, workspace: "", version: "" };
export { session };

export function token() {
  return sessionStorage.getItem("blockyard-token") || localStorage.getItem("blockyard-token") || "";
}
export function setToken(value, remember) {
  sessionStorage.setItem("blockyard-token", value);
  if (remember) localStorage.setItem("blockyard-token", value);
}
export function forgetToken() {
  sessionStorage.removeItem("blockyard-token");
  localStorage.removeItem("blockyard-token");
}

function cookie(name) {
  const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
  return m ? decodeURIComponent(m[1]) : null;
}

export function headers(extra = {}) {
  const out = { ...extra };
  const t = token();
  if (t) out["Authorization"] = "Bearer " + t;
  const csrf = cookie("blockyard_csrf") || session.csrf;
  if (csrf) out["X-Blockyard-CSRF"] = csrf;
  return out;
}

export async function loadSession() {
  const r = await fetch("/ui-api/session", { credentials: "same-origin" });
  Object.assign(session, await r.json());
  return session;
}

export async function api(path, { method = "GET", body, query, raw = false, signal } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const opts = { method, headers: headers(), credentials: "same-origin", signal };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  if (r.status === 401 && session.auth && !location.pathname.startsWith("/login")) {
    forgetToken();
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    throw new ApiError(401, { detail: "please log in" });
  }
  if (raw) {
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
    return r;
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) throw new ApiError(r.status, typeof data === "object" ? data : { detail: text });
  return data;
}

export const enc = encodeURIComponent;
// A block uuid may contain "/" (tuning/sklearn): keep the slashes in paths.
export const encPath = (s) => String(s).split("/").map(encodeURIComponent).join("/");

// Server-Sent Events through fetch (EventSource cannot send the Authorization header).
export function streamEvents(path, onEvent, { onEnd } = {}) {
  const ctrl = new AbortController();
  (async () => {
    try {
      const r = await fetch(path, { headers: headers(), signal: ctrl.signal });
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = "message", data = [];
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (!data.length) continue;
          let parsed;
          try { parsed = JSON.parse(data.join("\n")); } catch { parsed = data.join("\n"); }
          onEvent(event, parsed);
        }
      }
      onEnd && onEnd(null);
    } catch (e) {
      if (e.name !== "AbortError") onEnd && onEnd(e);
    }
  })();
  return () => ctrl.abort();
}

// ------------------------------------------------------------------ formatting
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function ago(iso) {
  if (!iso) return "never";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 60) return "just now";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

export function duration(start, end) {
  if (!start) return "—";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  return fmtSeconds(ms / 1000);
}

export function fmtSeconds(s) {
  if (s === null || s === undefined || isNaN(s)) return "—";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function statusBadge(status, extra) {
  const s = status || "none";
  return h("span.badge.status-" + s.replace(/[^a-z_]/g, ""), { title: "status: " + s, "data-status": s }, extra ? `${s} ${extra}` : s.replace(/_/g, " "));
}

export const BLOCK_TYPES = ["data_loader", "transformer", "data_exporter", "custom", "sensor", "scratchpad", "markdown"];
export const typeLabel = (t) => ({ data_loader: "Data loader", transformer: "Transformer", data_exporter: "Data exporter", custom: "Custom", sensor: "Sensor", scratchpad: "Scratchpad", markdown: "Markdown", chart: "Chart", callback: "Callback", conditional: "Conditional", global_data_product: "Global data product" }[t] || t);

// ------------------------------------------------------------------ feedback
export function toast(message, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) document.body.append((box = h("div", { id: "toasts", role: "status", "aria-live": "polite" })));
  const t = h("div.toast." + kind, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}

export function errorBox(err, title) {
  const e = err instanceof ApiError ? err : null;
  const where = e && e.error && e.error.file ? ` (${e.error.file}${e.error.line ? ":" + e.error.line : ""})` : "";
  return h("div.error-box", { role: "alert" },
    title ? h("strong", title + ": ") : null,
    (err && err.message) || String(err), where,
    e && e.error && e.error.hint ? h("div.hint", e.error.hint) : null);
}

export function empty(title, text, action) {
  return h("div.empty", h("div.empty-title", title), text ? h("p", text) : null, action || null);
}

export function field(label, input, help) {
  const id = input.id || "f-" + Math.random().toString(36).slice(2, 9);
  input.id = id;
  return h("div.field", h("label", { for: id }, label), input, help ? h("div.help", help) : null);
}

export function button(label, onClick, cls = "", attrs = {}) {
  return h("button" + (cls ? "." + cls.split(" ").join(".") : ""), { type: "button", onclick: onClick, ...attrs }, label);
}

// Run `fn` while `btn` shows it is busy; errors go to a toast unless handled.
export async function busy(btn, fn) {
  const old = btn.textContent;
  btn.disabled = true;
  btn.setAttribute("aria-busy", "true");
  try { return await fn(); }
  finally { btn.disabled = false; btn.removeAttribute("aria-busy"); btn.textContent = old; }
}

export function modal(title, body, actions = []) {
  const close = () => { overlay.remove(); document.removeEventListener("keydown", onKey); };
  const onKey = (e) => { if (e.key === "Escape") close(); };
  // Enter in any field submits a dialog's form (implicit submission needs a submit button)
  if (body instanceof HTMLFormElement && !body.querySelector("[type=submit]")) body.append(h("button", { type: "submit", hidden: true, tabindex: -1 }, "Submit"));
  const dialog = h("div.modal", { role: "dialog", "aria-modal": "true", "aria-label": title },
    h("h2", title), body, h("div.modal-actions", ...actions, button("Cancel", close, "secondary")));
  const overlay = h("div.overlay", { onclick: (e) => { if (e.target === overlay) close(); } }, dialog);
  document.body.append(overlay);
  document.addEventListener("keydown", onKey);
  setTimeout(() => { const f = dialog.querySelector("input,select,textarea"); if (f) f.focus(); }, 0);
  return { close, dialog };
}

export function table(columns, rows, { empty: emptyText = "No rows" } = {}) {
  if (!rows.length) return h("div.muted", emptyText);
  return h("div.table-wrap", h("table.data",
    h("thead", h("tr", columns.map((c) => h("th", c)))),
    h("tbody", rows.map((r) => h("tr", r.map((v) => h("td", v === null || v === undefined ? "" : (v instanceof Node ? v : String(v)))))))));
}
