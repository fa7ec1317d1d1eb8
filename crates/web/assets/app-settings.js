// One app's configuration: environment variables (set, change, remove),
// secrets (names only: values go in through a password field and never come
// back), settings (replicas, health check path, domains), and the releases
// these changes make, refreshed every 2 s.
"use strict";

(() => {
  const { api, el, table, replace, badge, ago, param, every, requireLogin, showError } = Slipway;
  requireLogin();
  const name = param("app");
  if (!name) {
    showError(new Error("missing app name in the address (?app=APP)"));
    return;
  }
  const path = "/apps/" + encodeURIComponent(name);
  const appLink = document.getElementById("app-link");
  appLink.textContent = name;
  appLink.href = "/ui/app?name=" + encodeURIComponent(name);
  document.getElementById("settings-title").textContent = name + " settings";
  document.title = name + " settings · Slipway";
  const $ = (id) => document.getElementById(id);
  let current = null; // the app's release number
  let saved = null; // the settings as loaded, to send only what changed

  /** An API error as one readable line. */
  function describe(e) {
    const status = e.status ? " (HTTP " + e.status + ")" : "";
    if (e.status === 403) return "You may not change this app: " + e.message + status;
    return (e.message || String(e)) + status;
  }

  function state(id, text, cls) {
    $(id).textContent = text;
    $(id).className = cls;
  }

  /** What a change answered: the release it made, or that it was saved. */
  function made(res, what) {
    return res && res.number ? what + ": release v" + res.number + " created" : what + ": saved";
  }

  /** Runs change `fn` with `button` disabled; its outcome or error shows in
   * `stateId`, once the page shows the change (the lists are redrawn first). */
  async function change(button, stateId, fn) {
    showError(null);
    button.disabled = true;
    state(stateId, "saving…", "muted");
    try {
      const outcome = await fn();
      await Promise.all([loadApp(), loadSecrets(), loadReleases()]);
      state(stateId, outcome, "state-ok");
    } catch (e) {
      state(stateId, describe(e), "error-text");
    } finally {
      button.disabled = false;
    }
  }

  function renderEnv(env) {
    const rows = Object.keys(env)
      .sort()
      .map((k) => {
        const edit = el("button", {
          type: "button", class: "small", "data-edit": k, text: "Edit",
          onclick: () => {
            $("env-key").value = k;
            $("env-value").value = env[k];
            $("env-value").focus();
          },
        });
        const remove = el("button", {
          type: "button", class: "small", "data-unset": k, text: "Remove",
          onclick: () => {
            if (!confirm("Remove " + k + " from " + name + "?")) return;
            change(remove, "env-state", async () => made(await api("PATCH", path + "/config", { unset: [k] }), "removed " + k));
          },
        });
        return [el("code", { class: "env-key", text: k }), el("code", { class: "env-value", text: env[k] }), el("span", {}, edit, " ", remove)];
      });
    replace("env", table(["Name", "Value", ""], rows, "No variables set."));
  }

  function domainsText(list) {
    return (list || []).join("\n");
  }

  async function loadApp() {
    const a = await api("GET", path);
    current = a.release;
    renderEnv(a.env || {});
    const now = { replicas: a.replicas, health: a.health.path, domains: domainsText(a.domains) };
    // Fill the form at first, and afterwards only fields nobody is editing.
    const fields = [["replicas", "replicas"], ["health-path", "health"], ["domains", "domains"]];
    for (const [id, key] of fields) {
      const input = $(id);
      if (!saved || (document.activeElement !== input && String(input.value) === String(saved[key]))) input.value = now[key];
    }
    saved = now;
  }

  async function loadSecrets() {
    const list = await api("GET", path + "/secrets");
    const rows = list.map((s) => {
      const remove = el("button", {
        type: "button", class: "small", "data-secret-remove": s.name, text: "Remove",
        onclick: () => {
          if (!confirm("Remove secret " + s.name + " from " + name + "?")) return;
          change(remove, "secret-state", async () => {
            await api("DELETE", path + "/secrets/" + encodeURIComponent(s.name));
            return "secret " + s.name + " removed";
          });
        },
      });
      return [el("code", { class: "secret-name", text: s.name }), el("span", { class: "muted", text: "hidden" }), ago(s.updated_at), remove];
    });
    replace("secrets", table(["Name", "Value", "Updated", ""], rows, "No secrets."));
  }

  async function loadReleases() {
    const [a, releases] = await Promise.all([api("GET", path), api("GET", path + "/releases")]);
    current = a.release;
    const rows = releases.map((r) => [
      "v" + r.number,
      badge(r.status),
      r.description + (r.error ? " — " + r.error : ""),
      r.created_by,
      ago(r.created_at),
      r.number === current ? el("span", { class: "muted", text: "current" }) : "",
    ]);
    replace("releases", table(["Release", "Status", "Description", "By", "When", ""], rows, "No releases yet: push to the app's branch."));
  }

  $("env-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("env-key").value.trim();
    const value = $("env-value").value;
    change($("env-button"), "env-state", async () => {
      const res = await api("PATCH", path + "/config", { set: { [key]: value } });
      $("env-key").value = "";
      $("env-value").value = "";
      return made(res, "set " + key);
    });
  });

  $("secret-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const secret = $("secret-name").value.trim();
    const value = $("secret-value").value;
    change($("secret-button"), "secret-state", async () => {
      await api("PUT", path + "/secrets/" + encodeURIComponent(secret), { value });
      $("secret-name").value = "";
      $("secret-value").value = "";
      return "secret " + secret + " set";
    });
  });

  $("settings-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const patch = {};
    const replicas = Number($("replicas").value);
    if (saved && replicas !== saved.replicas) patch.replicas = replicas;
    const health = $("health-path").value.trim();
    if (saved && health !== saved.health) patch.health = { path: health };
    const domains = $("domains").value.split(/[\s,]+/).filter(Boolean);
    if (saved && domains.join("\n") !== saved.domains) patch.domains = domains;
    if (!Object.keys(patch).length) {
      state("settings-state", "nothing changed", "muted");
      return;
    }
    change($("settings-button"), "settings-state", async () => {
      await api("PATCH", path, patch);
      saved = null; // take the saved values into the form
      return "saved " + Object.keys(patch).join(", ");
    });
  });

  loadApp().catch(showError);
  loadSecrets().catch(showError);
  every(2000, loadReleases);
})();
