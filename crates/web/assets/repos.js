// Repositories the caller can see.
"use strict";

(async () => {
  const { api, el, table, replace, ago, requireLogin, showError } = Slipway;
  requireLogin();
  try {
    const repos = await api("GET", "/repos");
    const rows = repos.map((r) => {
      const full = r.owner + "/" + r.name;
      return [
        el("a", { class: "repo-link", href: "/ui/repo?r=" + encodeURIComponent(full), text: full }),
        r.description || "",
        el("span", { class: "badge", text: r.private ? "private" : "public" }),
        ago(r.created_at),
      ];
    });
    replace("repos", table(["Repository", "Description", "Visibility", "Created"], rows, "No repositories yet: create one with `slipway repo create NAME`."));
  } catch (e) {
    showError(e);
  }
})();
