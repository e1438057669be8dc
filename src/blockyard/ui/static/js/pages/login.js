// Login: the server token (BLOCKYARD_API_TOKEN), checked, then sent as a bearer.
import { h, clear, api, errorBox, field, button, busy, setToken, session } from "../lib.js";

export default async function login(root, { query }) {
  document.title = "Log in · Blockyard";
  const token = h("input", { name: "token", type: "password", required: true, autocomplete: "current-password" });
  const remember = h("input", { type: "checkbox", name: "remember" });
  const err = h("div", { role: "alert" });
  const go = button("Log in", () => busy(go, async () => {
    try {
      await api("/ui-api/login", { method: "POST", body: { token: token.value.trim() } });
      setToken(token.value.trim(), remember.checked);
      const next = query.get("next") || "/";
      location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/");
    } catch (e) { clear(err, errorBox(e.status === 401 ? new Error("Wrong token.") : e)); token.select(); }
  }), "primary", { id: "login" });
  clear(root, h("div.login-box",
    h("div.brand", { style: { color: "#111827", marginBottom: "14px" } }, h("span.logo", { style: { color: "#fff" } }, "▦"), "Blockyard"),
    h("p.muted", session.auth ? `Workspace ${session.workspace} needs the server's API token.` : "This server needs no token."),
    h("form", { onsubmit: (e) => { e.preventDefault(); go.click(); } },
      field("API token", token, "The value of BLOCKYARD_API_TOKEN (or --token) on the server."),
      h("label.check", remember, " Remember on this computer"), err, h("div.actions", go))));
  token.focus();
}
