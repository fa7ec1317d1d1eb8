// Shared by every page: the API client (token in sessionStorage), a DOM
// builder that only ever inserts text (never HTML), the SSE reader, the nav.
"use strict";

const Slipway = (() => {
  const TOKEN_KEY = "slipway.token";
  const TOKEN_ID_KEY = "slipway.token_id";

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  /** Keeps the login's token (and its id, to revoke it at logout) for this tab. */
  function setToken(t, id) {
    sessionStorage.setItem(TOKEN_KEY, t);
    sessionStorage.setItem(TOKEN_ID_KEY, String(id));
  }

  function toLogin() {
    const next = location.pathname + location.search;
    location.href = "/ui/login?next=" + encodeURIComponent(next);
  }

  /** Stops the page when nobody is logged in (sends them to the login page). */
  function requireLogin() {
    if (!token()) {
      toLogin();
      throw new Error("not logged in");
    }
  }

  /** Revokes the login's token on the server (best effort), then forgets it. */
  async function logout() {
    const id = sessionStorage.getItem(TOKEN_ID_KEY);
    if (token() && id && /^[0-9]+$/.test(id)) {
      try {
        await api("DELETE", "/user/tokens/" + id);
      } catch (_) {
        /* already revoked or expired: forgetting it is enough */
      }
    }
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_ID_KEY);
    location.href = "/ui/login";
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    const t = token();
    if (t) h.Authorization = "Bearer " + t;
    return h;
  }

  /** Calls `/api/v1{path}`; resolves to the decoded JSON, rejects with ApiError. */
  async function api(method, path, body) {
    const init = { method, headers: headers() };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch("/api/v1" + path, init);
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = text;
    }
    if (res.status === 401 && path !== "/auth/login") {
      sessionStorage.removeItem(TOKEN_KEY);
      toLogin();
    }
    if (!res.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(res.status, err.code || "http_" + res.status, err.message || res.statusText);
    }
    return data;
  }

  /**
   * Reads a Server-Sent Events response with fetch (EventSource cannot send
   * the Authorization header) and calls onEvent(name, data) per event.
   * Resolves when the stream ends; abort it with `signal`.
   */
  async function stream(path, onEvent, signal) {
    const res = await fetch("/api/v1" + path, {
      headers: headers({ Accept: "text/event-stream" }),
      signal,
    });
    if (!res.ok) {
      let message = res.statusText;
      try {
        message = (await res.json()).error.message;
      } catch (_) {
        /* keep the status text */
      }
      throw new ApiError(res.status, "http_" + res.status, message);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line === "" || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "event") event = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) onEvent(event, data.join("\n"));
      }
    }
  }

  /**
   * Builds an element. `attrs`: `class`, `text`, `on<event>` handlers, other
   * attributes set with setAttribute. Children: nodes or strings (as text).
   */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** A link only to http(s) URLs or same-site paths. */
  function safeHref(url) {
    const s = String(url || "");
    return /^https?:\/\//i.test(s) || (s.startsWith("/") && !s.startsWith("//")) ? s : null;
  }

  /** A table; `rows` are arrays of nodes or strings. */
  function table(head, rows, empty) {
    if (!rows.length) return el("p", { class: "muted", text: empty });
    return el(
      "table",
      {},
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))),
    );
  }

  function replace(id, node) {
    document.getElementById(id).replaceChildren(node);
  }

  function badge(status) {
    const s = String(status || "unknown");
    return el("span", { class: "badge status-" + s.replace(/[^a-z_]/g, ""), text: s });
  }

  function ago(ts) {
    if (!ts) return "";
    const s = Math.round((Date.now() - new Date(ts).getTime()) / 1000);
    if (s < 60) return Math.max(s, 0) + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "";
    if (ms < 1000) return ms + " ms";
    const s = Math.round(ms / 1000);
    return s < 60 ? s + " s" : Math.floor(s / 60) + "m " + (s % 60) + "s";
  }

  function param(name) {
    return new URLSearchParams(location.search).get(name);
  }

  /** `owner/name` from the `r` query parameter, URL-encoded for API paths. */
  function repoParam() {
    const r = param("r") || "";
    const [owner, name] = r.split("/");
    if (!owner || !name) throw new Error("missing repository in the address (?r=owner/name)");
    return { full: owner + "/" + name, path: encodeURIComponent(owner) + "/" + encodeURIComponent(name) };
  }

  function showError(err) {
    const box = document.getElementById("error");
    if (!box) return;
    if (!err) {
      box.hidden = true;
      return;
    }
    box.textContent = err.message || String(err);
    box.hidden = false;
  }

  /** Runs `fn` now and every `ms`, showing (not throwing) its errors. */
  function every(ms, fn) {
    const tick = async () => {
      try {
        await fn();
      } catch (e) {
        showError(e);
      }
    };
    tick();
    return setInterval(tick, ms);
  }

  function nav() {
    const header = document.getElementById("nav");
    if (!header) return;
    const page = document.body.dataset.page;
    const link = (href, text, name) =>
      el("a", { href, text, class: page === name || page === name.slice(0, -1) ? "active" : null });
    const items = [el("a", { href: "/ui/", class: "brand", text: "Slipway" })];
    if (token()) {
      const who = el("span", { class: "who" });
      items.push(
        el(
          "nav",
          {},
          link("/ui/repos", "Repositories", "repos"),
          link("/ui/apps", "Apps", "apps"),
          link("/ui/alerts", "Alerts", "alerts"),
          link("/ui/nodes", "Nodes", "nodes"),
          link("/ui/exec", "Exec", "exec"),
        ),
        el("span", { class: "spacer" }),
        who,
        el("button", { id: "logout", class: "link", type: "button", onclick: logout, text: "Log out" }),
      );
      api("GET", "/user")
        .then((u) => (who.textContent = u.username))
        .catch(() => {});
    }
    header.replaceChildren(...items);
  }

  document.addEventListener("DOMContentLoaded", nav);

  return {
    api, stream, el, table, replace, badge, ago, duration, param, repoParam, showError,
    every, requireLogin, setToken, token, safeHref, ApiError,
  };
})();
