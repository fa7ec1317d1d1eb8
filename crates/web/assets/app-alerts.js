// The app page's Alerts section: the app's rules with the state of their
// alert, and its recent alerts, refreshed every 5 s.
"use strict";

(() => {
  const { api, el, table, replace, badge, ago, param, every } = Slipway;
  const name = param("name");
  if (!name || !document.getElementById("alert-rules")) return;
  const path = "/apps/" + encodeURIComponent(name);

  every(5000, async () => {
    const [rules, events] = await Promise.all([
      api("GET", path + "/alerts"),
      api("GET", path + "/alerts/events?limit=20"),
    ]);
    const firing = events.filter((e) => e.state === "firing").length;
    document.getElementById("alert-count").textContent = firing ? firing + " firing" : "";
    replace(
      "alert-rules",
      table(
        ["Rule", "State", "Value now", "Since"],
        rules.map((r) => [
          r.summary,
          badge(r.state),
          AlertFmt.value(r.value, r.unit),
          r.since ? ago(r.since) : "",
        ]),
        "No alert rules: add one with `slipway alert add " + name + " --kind error-rate --above 5`.",
      ),
    );
    replace(
      "alert-events",
      table(
        ["Alert", "State", "Value", "Started", "Lasted"],
        events.map((a) => [
          a.rule,
          badge(a.state),
          AlertFmt.value(a.value, a.unit),
          ago(a.started_at),
          AlertFmt.lasted(a.duration_s),
        ]),
        "No alerts yet.",
      ),
    );
  });
})();
