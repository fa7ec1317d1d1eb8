// An app's logs: search the stored lines (text, replica, since) and follow
// new ones live. The API answers NDJSON; it is read with fetch (the token
// goes in a header) line by line as it streams.
"use strict";

(() => {
  const { el, param, requireLogin, showError, token, ApiError } = Slipway;
  requireLogin();
  const name = param("app");
  if (!name) {
    showError(new Error("missing app name in the address (?app=NAME)"));
    return;
  }
  const path = "/apps/" + encodeURIComponent(name) + "/logs";
  const appLink = document.getElementById("app-link");
  appLink.textContent = name;
  appLink.href = "/ui/app?name=" + encodeURIComponent(name);
  document.getElementById("logs-title").textContent = "Logs of " + name;
  document.title = name + " logs · Slipway";

  const HISTORY = 500; // lines of history a search shows
  const KEPT = 5000; // lines kept on the page while following
  const fields = { q: "log-q", replica: "log-replica", since: "log-since" };
  const log = document.getElementById("log");
  const state = document.getElementById("log-state");
  const follow = document.getElementById("log-follow");
  let controller = null;

  function line(rec) {
    const ts = String(rec.ts || "").replace("T", " ").replace("Z", "");
    return el(
      "div",
      { class: "line" + (rec.stream === "stderr" ? " stderr" : "") },
      el("span", { class: "ts", text: ts }),
      " ",
      el("span", { class: "rep", text: rec.replica || "" }),
      " ",
      el("span", { class: "text", text: rec.line || "" }),
    );
  }

  function append(rec) {
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(line(rec));
    while (log.childElementCount > KEPT) log.firstElementChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  async function failure(res) {
    let message = res.statusText;
    let code = "http_" + res.status;
    try {
      const body = await res.json();
      message = body.error.message;
      code = body.error.code;
    } catch (_) {
      /* keep the status text */
    }
    return new ApiError(res.status, code, message);
  }

  /** Runs the search in the form; with "Follow live", keeps reading new lines. */
  async function run() {
    if (controller) controller.abort();
    controller = new AbortController();
    const signal = controller.signal;
    showError(null);
    const params = new URLSearchParams({ limit: String(HISTORY) });
    const shown = new URLSearchParams({ app: name });
    for (const [key, id] of Object.entries(fields)) {
      const value = document.getElementById(id).value.trim();
      if (value) {
        params.set(key, value);
        shown.set(key, value);
      }
    }
    if (follow.checked) params.set("follow", "true");
    history.replaceState(null, "", "?" + shown.toString());
    log.replaceChildren();
    state.textContent = "Searching…";
    let count = 0;
    try {
      const res = await fetch("/api/v1" + path + "?" + params.toString(), {
        headers: { Authorization: "Bearer " + token(), Accept: "application/x-ndjson" },
        signal,
      });
      if (!res.ok) throw await failure(res);
      if (follow.checked) state.textContent = "Following live…";
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const text = buffer.slice(0, end).trim();
          buffer = buffer.slice(end + 1);
          if (!text) continue; // keep-alive
          append(JSON.parse(text));
          count++;
        }
      }
      state.textContent =
        count === 0
          ? "No matching lines."
          : count + (count === HISTORY ? " lines (the newest " + HISTORY + ")" : " lines");
    } catch (e) {
      if (signal.aborted) return;
      state.textContent = "";
      showError(e);
    }
  }

  for (const [key, id] of Object.entries(fields)) {
    const value = param(key);
    if (value) document.getElementById(id).value = value;
  }
  document.getElementById("log-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run();
  });
  follow.addEventListener("change", run);
  run();
})();
