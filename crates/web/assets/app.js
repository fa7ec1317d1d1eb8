// One app: its stack's services (apps deployed from a Compose file),
// replicas (refreshed every 2 s), scale, metrics charts, releases with
// rollback, recent events (builds, rollouts, crashes, scaling).
"use strict";

(() => {
  const { api, el, table, replace, badge, ago, safeHref, param, every, requireLogin, showError } = Slipway;
  requireLogin();
  const name = param("name");
  if (!name) {
    showError(new Error("missing app name in the address (?name=APP)"));
    return;
  }
  const path = "/apps/" + encodeURIComponent(name);
  document.getElementById("app-name").textContent = name;
  document.title = name + " · Slipway";
  document.getElementById("app-summary").before(el("p", { class: "crumbs" }, el("a", { id: "logs-link", href: "/ui/app-logs?app=" + encodeURIComponent(name), text: "Logs: search and follow live" })));
  document.getElementById("app-summary").before(el("p", { class: "crumbs" }, el("a", { id: "settings-link", href: "/ui/app-settings?app=" + encodeURIComponent(name), text: "Settings: variables, secrets, domains" })));
  const scaleInput = document.getElementById("scale-input");
  let current; // the app's release; releases reload when it changes
  let releasesLoaded = false;

  function renderApp(a) {
    const href = safeHref(a.url);
    document.getElementById("app-summary").replaceChildren(
      badge(a.status), " ", a.repo, " @ ", a.branch,
      a.release ? " · release v" + a.release : "",
      href ? " · " : "",
      href ? el("a", { href, text: a.url, rel: "noopener noreferrer", target: "_blank" }) : "",
    );
    // A stack's replicas belong to its services (scaled one by one).
    const stack = Array.isArray(a.services);
    document.getElementById("scale-form").hidden = stack;
    document.getElementById("replica-count").textContent = stack ? "" : a.ready + "/" + a.replicas + " ready";
    if (document.activeElement !== scaleInput && scaleInput.value === "") scaleInput.value = a.replicas;
    renderServices(a.services);
    if (!releasesLoaded || current !== a.release) {
      releasesLoaded = true;
      current = a.release;
      loadReleases().catch(showError);
    }
  }

  // A stack's services: wanted and ready replicas, and where each is.
  // The badge's colour follows the state (`running` is a healthy one here).
  const SERVICE_BADGE = { running: "healthy", starting: "starting", stopped: "idle", restoring: "draining", task: "idle" };
  function renderServices(services) {
    const card = document.getElementById("services-card");
    card.hidden = !Array.isArray(services);
    if (card.hidden) return;
    const up = services.filter((s) => !s.task && s.state === "running").length;
    const long = services.filter((s) => !s.task).length;
    document.getElementById("service-count").textContent = up + "/" + long + " running";
    const first = services.find((s) => !s.task);
    document.getElementById("service-scale-hint").textContent = "slipway scale " + name + " " + (first ? first.name : "SERVICE") + "=N";
    const rows = services.map((s) => [
      el("code", { text: s.name }),
      s.task ? el("span", { class: "muted", text: "one-off task" }) : s.ready + "/" + s.replicas + (s.scaled ? " (scaled)" : ""),
      el("span", { class: "badge status-" + (SERVICE_BADGE[s.state] || "idle"), "data-state": s.state, text: s.task ? "task" : s.state }),
    ]);
    replace("services", table(["Service", "Ready", "State"], rows, "No services."));
    // The charts can show one service's CPU, memory and replicas.
    const select = document.getElementById("chart-service");
    const names = services.filter((s) => !s.task).map((s) => s.name);
    const have = Array.from(select.options).slice(1).map((o) => o.value);
    if (names.join(",") !== have.join(",")) {
      const chosen = select.value;
      select.replaceChildren(el("option", { value: "", text: "whole app" }), ...names.map((n) => el("option", { value: n, text: n })));
      select.value = names.includes(chosen) ? chosen : "";
    }
    document.getElementById("chart-service-label").hidden = names.length === 0;
  }

  // One line about the autoscale policy (set with `slipway autoscale`).
  function renderAutoscale(p) {
    const line = document.getElementById("autoscale");
    if (!p.enabled) {
      line.textContent = "Autoscaling off (slipway autoscale " + name + " --min 1 --max 3 --rps 50).";
      return;
    }
    const target = p.cpu_percent != null ? p.cpu_percent + " % CPU" : p.rps_per_replica + " req/s";
    const last = p.last_decision ? " Last decision: " + p.last_decision.reason + " (" + ago(p.last_decision.at) + ")." : "";
    line.textContent = "Autoscaling " + p.min + "–" + p.max + " replicas at " + target + " per replica; scale-down window " + p.scale_down_window_s + " s." + last;
  }

  async function refreshReplicas() {
    const [a, replicas, policy] = await Promise.all([api("GET", path), api("GET", path + "/replicas"), api("GET", path + "/autoscale")]);
    renderAutoscale(policy);
    renderApp(a);
    const stack = replicas.some((r) => r.service);
    const rows = replicas.map((r) => [
      ...(stack ? [r.service || ""] : []),
      el("code", { text: r.id }),
      "v" + r.release,
      badge(r.state),
      r.address,
      String(r.restarts),
      ago(r.started_at),
    ]);
    const head = ["Replica", "Release", "State", "Address", "Restarts", "Started"];
    replace("replicas", table(stack ? ["Service", ...head] : head, rows, "No replicas running."));
  }

  async function loadReleases() {
    const releases = await api("GET", path + "/releases");
    const rows = releases.map((r) => [
      "v" + r.number,
      badge(r.status),
      el("code", { text: String(r.sha).slice(0, 12) }),
      r.description + (r.error ? " — " + r.error : ""),
      r.created_by,
      ago(r.created_at),
      r.number === current
        ? el("span", { class: "muted", text: "current" })
        : el("button", { type: "button", class: "small", "data-release": r.number, text: "Roll back", onclick: () => rollback(r.number) }),
    ]);
    replace("releases", table(["Release", "Status", "Commit", "Description", "By", "When", ""], rows, "No releases yet: push to the app's branch."));
  }

  // The latest events, newest first: what `slipway events APP` shows.
  const EVENTS_SHOWN = 20;
  async function refreshEvents() {
    const events = await api("GET", path + "/events");
    const rows = events.slice(-EVENTS_SHOWN).reverse().map((e) => [
      el("time", { datetime: e.at, title: new Date(e.at).toLocaleString(), text: ago(e.at) }),
      badge(e.kind),
      el("span", { class: "event-message", text: e.message }),
    ]);
    replace("events", table(["When", "Kind", "Event"], rows, "Nothing has happened yet: push to the app's branch."));
  }

  async function rollback(number) {
    if (!confirm("Roll " + name + " back to release v" + number + "?")) return;
    try {
      await api("POST", path + "/rollback", { release: number });
      await loadReleases();
    } catch (e) {
      showError(e);
    }
  }

  document.getElementById("scale-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(null);
    const state = document.getElementById("scale-state");
    state.textContent = "scaling…";
    try {
      const a = await api("PUT", path + "/scale", { replicas: Number(scaleInput.value) });
      renderApp(a);
      state.textContent = "asked for " + a.replicas;
    } catch (e) {
      state.textContent = "";
      showError(e);
    }
  });

  const CHARTS = [
    ["requests_per_s", "Requests per second", "/s"],
    ["p99_ms", "Latency p99", "ms"],
    ["cpu_percent", "CPU", "%"],
    ["memory_bytes", "Memory", "bytes"],
  ];
  const canvases = {};
  document.getElementById("charts").replaceChildren(
    ...CHARTS.map(([key, title]) => {
      canvases[key] = el("canvas", { class: "chart", "data-series": key });
      return el("figure", {}, el("figcaption", { text: title }), canvases[key]);
    }),
  );

  async function refreshCharts() {
    const state = document.getElementById("charts-state");
    try {
      const service = document.getElementById("chart-service").value;
      const query = "/metrics?range=1h&step=10s" + (service ? "&service=" + encodeURIComponent(service) : "");
      const m = await api("GET", path + query);
      // A service has no request series of its own (the proxy counts per app).
      state.textContent = service ? "Service " + service + ": CPU and memory of its replicas; requests are the app's." : "";
      for (const [key, , unit] of CHARTS) {
        const points = (m.series && m.series[key]) || [];
        canvases[key].parentElement.hidden = Boolean(service) && !(m.series && key in m.series);
        SlipwayChart.draw(canvases[key], points, unit);
      }
    } catch (e) {
      state.textContent = e.status === 404 ? "Metrics are not available on this server." : e.message;
    }
  }

  every(2000, refreshReplicas);
  document.getElementById("chart-service").addEventListener("change", () => refreshCharts());
  every(10000, refreshCharts);
  every(5000, refreshEvents);
})();
