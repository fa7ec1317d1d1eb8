// Apps the caller can see, with their state, refreshed every 5 s.
"use strict";

(() => {
  const { api, el, table, replace, badge, safeHref, every, requireLogin } = Slipway;
  requireLogin();
  every(5000, async () => {
    const apps = await api("GET", "/apps");
    const rows = apps.map((a) => {
      const href = safeHref(a.url);
      return [
        el("a", { class: "app-link", href: "/ui/app?name=" + encodeURIComponent(a.name), text: a.name }),
        a.repo,
        badge(a.status),
        el("span", { class: "count", text: a.ready + "/" + a.replicas }),
        href ? el("a", { href, text: a.url, rel: "noopener noreferrer", target: "_blank" }) : "",
      ];
    });
    replace("apps", table(["App", "Repository", "Status", "Ready", "URL"], rows, "No apps yet: create one with `slipway app create`."));
  });
})();
