// One repository: its pipelines, newest first, refreshed every 5 s.
"use strict";

(() => {
  const { api, el, table, replace, badge, ago, duration, repoParam, every, requireLogin, showError } = Slipway;
  requireLogin();
  let repo;
  try {
    repo = repoParam();
  } catch (e) {
    showError(e);
    return;
  }
  document.getElementById("repo-name").textContent = repo.full;
  document.title = repo.full + " · Slipway";
  api("GET", "/repos/" + repo.path)
    .then((r) => (document.getElementById("repo-description").textContent = r.description || ""))
    .catch(showError);

  every(5000, async () => {
    const list = await api("GET", "/repos/" + repo.path + "/pipelines?limit=50");
    const rows = list.map((p) => [
      el("a", {
        class: "pipeline-link",
        href: "/ui/pipeline?r=" + encodeURIComponent(repo.full) + "&n=" + encodeURIComponent(p.number),
        text: "#" + p.number,
      }),
      badge(p.status),
      p.branch || p.ref_name,
      el("code", { text: String(p.sha).slice(0, 12) }),
      p.actor,
      ago(p.created_at),
      duration(p.duration_ms),
    ]);
    replace("pipelines", table(["Pipeline", "Status", "Branch", "Commit", "By", "Queued", "Took"], rows, "No pipelines yet: push a commit with a .slipway.yml."));
  });
})();
