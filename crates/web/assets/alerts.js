// Alerts across the apps the caller can see: firing now, and recent history,
// refreshed every 5 s.
"use strict";

(() => {
  const { api, el, table, replace, badge, ago, every, requireLogin } = Slipway;
  requireLogin();

  function appLink(name) {
    return el("a", { class: "app-link", href: "/ui/app?name=" + encodeURIComponent(name), text: name });
  }

  function since(ts) {
    return el("time", { datetime: ts, title: new Date(ts).toLocaleString(), text: ago(ts) });
  }

  every(5000, async () => {
    const [firing, recent] = await Promise.all([
      api("GET", "/alerts?state=firing&limit=200"),
      api("GET", "/alerts?state=resolved&limit=100"),
    ]);
    document.getElementById("firing-count").textContent = firing.length ? String(firing.length) : "";
    replace(
      "firing",
      table(
        ["App", "Alert", "Value", "Threshold", "Firing since"],
        firing.map((a) => [
          appLink(a.app),
          el("span", {}, badge(a.state), " ", a.rule),
          AlertFmt.value(a.value, a.unit),
          AlertFmt.value(a.threshold, a.unit),
          since(a.started_at),
        ]),
        "Nothing is firing.",
      ),
    );
    replace(
      "history",
      table(
        ["App", "Alert", "Value when resolved", "Started", "Resolved", "Lasted"],
        recent.map((a) => [
          appLink(a.app),
          el("span", {}, badge(a.state), " ", a.rule),
          AlertFmt.value(a.value, a.unit),
          since(a.started_at),
          a.resolved_at ? since(a.resolved_at) : "",
          AlertFmt.lasted(a.duration_s),
        ]),
        "No alert has resolved yet.",
      ),
    );
  });
})();
