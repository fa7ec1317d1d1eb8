// The machines that run replicas: state, load against capacity, labels, and
// (for administrators) cordon / uncordon / drain. Refreshed every 5 s.
"use strict";

(() => {
  const { api, el, table, replace, badge, ago, every, requireLogin, showError } = Slipway;
  requireLogin();

  const GiB = 1024 * 1024 * 1024;

  function cores(millis) {
    return (millis / 1000).toFixed(millis % 1000 ? 1 : 0);
  }

  /** "used / total unit" with a small bar. */
  function load(used, total, fmt, unit) {
    const pct = total ? Math.min(100, Math.round((used / total) * 100)) : 0;
    return el(
      "span",
      { class: "load", title: pct + " %" },
      el("meter", { min: "0", max: "100", value: String(pct) }),
      " " + fmt(used) + " / " + fmt(total) + " " + unit,
    );
  }

  /** Requested against capacity, and what the replicas use (single-node mode measures it). */
  function resource(n, key, fmt, unit) {
    const bar = load(n.allocated[key], n.capacity[key], fmt, unit + " requested");
    if (!n.used) return bar;
    return el("span", {}, bar, el("br"), el("span", { class: "muted used", text: "using " + fmt(n.used[key]) + " " + unit }));
  }

  function labels(map) {
    const entries = Object.entries(map || {});
    if (!entries.length) return el("span", { class: "muted", text: "none" });
    return el("span", {}, entries.map(([k, v]) => el("code", { class: "label", text: k + "=" + v })));
  }

  function action(node, verb) {
    return el("button", {
      type: "button",
      class: "small",
      "data-node": node.id,
      "data-action": verb,
      text: verb,
      onclick: async () => {
        try {
          await api("POST", "/nodes/" + encodeURIComponent(node.id) + "/" + verb);
          showError(null);
          refresh();
        } catch (e) {
          showError(e);
        }
      },
    });
  }

  function actions(node) {
    const out = [];
    if (node.schedule === "active") out.push(action(node, "cordon"), action(node, "drain"));
    else out.push(action(node, "uncordon"));
    return el("span", { class: "actions" }, out);
  }

  async function refresh() {
    let nodes;
    try {
      nodes = await api("GET", "/nodes");
    } catch (e) {
      if (e.status === 403) {
        replace("nodes", el("p", { class: "muted", text: "Only administrators can see the nodes." }));
        return;
      }
      throw e;
    }
    const single = nodes.length === 1 && nodes[0].id === "local";
    document.getElementById("cluster-mode").textContent = single
      ? "Single-node mode: this server runs every replica (" + nodes[0].replicas + " now). Set cluster_etcd_endpoints and join agents with `slipway agent --join` to add machines."
      : "Cluster mode: " + nodes.length + " nodes registered in etcd.";
    document.getElementById("node-count").textContent = String(nodes.length);
    replace(
      "nodes",
      table(
        ["Node", "State", "Replicas", "CPU", "Memory", "Labels", "Epoch", "Registered", ""],
        nodes.map((n) => [
          el("span", {}, el("strong", { class: "node-id", text: n.id }), el("br"), el("span", { class: "muted", text: n.hostname + " · v" + n.version })),
          el("span", {}, badge(n.state), n.state === "lost" && n.schedule !== "active" ? [" ", badge(n.schedule)] : ""),
          String(n.replicas),
          resource(n, "cpu_millis", cores, "cores"),
          resource(n, "memory_bytes", (b) => (b / GiB).toFixed(1), "GiB"),
          labels(n.labels),
          String(n.epoch),
          el("time", { datetime: n.registered_at, title: new Date(n.registered_at).toLocaleString(), text: ago(n.registered_at) }),
          single ? "" : actions(n),
        ]),
        "No node has registered.",
      ),
    );
  }

  every(5000, refresh);
})();
