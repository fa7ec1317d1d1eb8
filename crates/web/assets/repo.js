// One repository: its files and history at a branch (directory listing,
// file viewer, commits, one commit's changed files) and its pipelines,
// refreshed every 5 s. Where the page is (branch, path, view) lives in the
// address, so links, reloads and the back button work.
"use strict";

(() => {
  const { api, el, table, replace, badge, ago, duration, repoParam, every, requireLogin, showError, token } = Slipway;
  requireLogin();
  let repo;
  try {
    repo = repoParam();
  } catch (e) {
    showError(e);
    return;
  }
  const base = "/repos/" + repo.path;
  const PAGE = 30;
  document.getElementById("repo-name").textContent = repo.full;
  document.title = repo.full + " · Slipway";
  api("GET", base)
    .then((r) => {
      document.getElementById("repo-description").textContent = r.description || "";
      document.getElementById("clone-url").textContent = location.origin + r.clone_path;
    })
    .catch(showError);

  /** Where the page is, read from the address. */
  function where() {
    const p = new URLSearchParams(location.search);
    return {
      ref: p.get("ref") || "",
      view: p.get("view") || "tree",
      path: p.get("path") || "",
      sha: p.get("sha") || "",
      skip: Math.max(0, Number(p.get("skip")) || 0),
    };
  }

  /** The page's address for place `w`. */
  function href(w) {
    const p = new URLSearchParams();
    p.set("r", repo.full);
    if (w.ref) p.set("ref", w.ref);
    if (w.view && w.view !== "tree") p.set("view", w.view);
    if (w.path) p.set("path", w.path);
    if (w.sha) p.set("sha", w.sha);
    if (w.skip) p.set("skip", String(w.skip));
    return "/ui/repo?" + p.toString();
  }

  /** Goes to place `w` without reloading the page. */
  function go(w) {
    history.pushState(null, "", href(w));
    render();
  }

  /** A link to place `w`, followed in the page (new tabs still work). */
  function link(text, w, attrs) {
    return el(
      "a",
      Object.assign({}, attrs || {}, {
        href: href(w),
        text,
        onclick: (ev) => {
          if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
          ev.preventDefault();
          go(w);
        },
      }),
    );
  }

  /** A query string of the non-empty values. */
  function qs(values) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(values)) {
      if (v !== "" && v !== null && v !== undefined) p.set(k, String(v));
    }
    const s = p.toString();
    return s ? "?" + s : "";
  }

  function size(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function parentOf(path) {
    const i = path.lastIndexOf("/");
    return i < 0 ? "" : path.slice(0, i);
  }

  /** `repo / dir / dir / last`: every part but the last links to its directory. */
  function crumbs(w, path) {
    const parts = path ? path.split("/") : [];
    const out = [link(repo.full.split("/")[1], { ref: w.ref }, { class: "crumb-root" })];
    parts.forEach((part, i) => {
      out.push(" / ");
      const upTo = parts.slice(0, i + 1).join("/");
      out.push(i === parts.length - 1 ? el("span", { class: "crumb-here", text: part }) : link(part, { ref: w.ref, path: upTo }));
    });
    return out;
  }

  const empty = () => ({
    crumbs: [],
    body: el("p", { id: "empty-repo", class: "muted", text: "This repository is empty: push a branch to it with git (the clone URL is above)." }),
  });

  async function treeView(w) {
    const t = await api("GET", base + "/tree" + qs({ ref: w.ref, path: w.path }));
    if (!t.ref) return empty();
    const rows = [];
    if (w.path) rows.push([link("..", { ref: w.ref, path: parentOf(w.path) }, { class: "tree-up" }), "", ""]);
    for (const e of t.entries) {
      let name;
      if (e.type === "dir") name = link(e.name + "/", { ref: w.ref, path: e.path }, { class: "tree-dir" });
      else if (e.type === "submodule") name = el("span", { class: "tree-submodule", text: e.name + " @ " + e.sha.slice(0, 12) });
      else name = link(e.name, { ref: w.ref, view: "blob", path: e.path }, { class: "tree-file" });
      rows.push([name, e.type, e.size === null || e.size === undefined ? "" : size(e.size)]);
    }
    const body = el(
      "div",
      {},
      table(["Name", "Type", "Size"], rows, "This directory is empty."),
      t.truncated ? el("p", { class: "muted", text: "Only the first entries are listed." }) : "",
    );
    return { crumbs: crumbs(w, w.path), body };
  }

  async function download(w, name) {
    try {
      const res = await fetch("/api/v1" + base + "/blob" + qs({ ref: w.ref, path: w.path, raw: 1 }), {
        headers: { Authorization: "Bearer " + token() },
      });
      if (!res.ok) throw new Error("download failed: HTTP " + res.status);
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (e) {
      showError(e);
    }
  }

  async function blobView(w) {
    const b = await api("GET", base + "/blob" + qs({ ref: w.ref, path: w.path }));
    const head = el(
      "p",
      { class: "file-head" },
      el("strong", { text: b.name }),
      " · " + size(b.size) + " · at ",
      el("code", { text: b.commit.slice(0, 12) }),
      " · ",
      link("History", { ref: w.ref, view: "commits", path: w.path }, { id: "file-history" }),
      " ",
      el("button", { type: "button", class: "small", id: "download", text: "Download", onclick: () => download(w, b.name) }),
    );
    let content;
    if (b.binary) content = el("p", { id: "file-note", class: "muted", text: "Binary file (" + size(b.size) + "): not shown." });
    else if (b.truncated) content = el("p", { id: "file-note", class: "muted", text: "This file is too large to show (" + size(b.size) + "): download it." });
    else content = el("pre", { id: "file-content", class: "code", text: b.content });
    return { crumbs: crumbs(w, w.path), body: el("div", {}, head, content) };
  }

  async function commitsView(w) {
    const page = await api("GET", base + "/commits" + qs({ ref: w.ref, path: w.path, limit: PAGE, skip: w.skip || "" }));
    if (!page.ref) return empty();
    const rows = page.commits.map((c) => [
      link(c.sha.slice(0, 12), { ref: w.ref, view: "commit", sha: c.sha }, { class: "commit-link sha" }),
      c.subject,
      c.author,
      el("span", { title: c.time, text: ago(c.time) }),
    ]);
    const pager = el(
      "p",
      { class: "pager" },
      w.skip > 0 ? link("← Newer", Object.assign({}, w, { skip: Math.max(0, w.skip - PAGE) }), { id: "commits-newer" }) : "",
      page.has_more ? link("Older →", Object.assign({}, w, { skip: w.skip + PAGE }), { id: "commits-older" }) : "",
    );
    const title = w.path ? ["History of ", el("code", { text: w.path }), " on " + page.ref] : ["Commits on " + page.ref];
    return { crumbs: title, body: el("div", {}, table(["Commit", "Message", "Author", "When"], rows, "No commits."), pager) };
  }

  async function commitView(w) {
    const c = await api("GET", base + "/commits/" + encodeURIComponent(w.sha));
    const parents = [];
    c.parents.forEach((p, i) => {
      if (i) parents.push(", ");
      parents.push(link(p.slice(0, 12), { ref: w.ref, view: "commit", sha: p }, { class: "sha" }));
    });
    const rows = c.files.map((f) => [
      el("span", { class: "badge change-" + f.status, text: f.status }),
      el(
        "span",
        {},
        f.status === "deleted" ? f.path : link(f.path, { ref: c.sha, view: "blob", path: f.path }, { class: "changed-file" }),
        f.old_path ? el("span", { class: "muted", text: " (from " + f.old_path + ")" }) : "",
      ),
      f.binary ? "binary" : "+" + f.additions + " −" + f.deletions,
    ]);
    const s = c.stats;
    const body = el(
      "div",
      { id: "commit-detail" },
      el("h3", { id: "commit-subject", text: c.subject }),
      el("p", { class: "muted" }, c.author + " <" + c.email + "> · ", el("span", { title: c.time, text: ago(c.time) }), " · ", el("code", { text: c.sha })),
      parents.length ? el("p", { class: "muted" }, "Parents: ", ...parents) : "",
      c.message.trim() !== c.subject ? el("pre", { class: "code message", text: c.message }) : "",
      el("p", { id: "commit-stats", text: s.files + (s.files === 1 ? " file" : " files") + " changed, +" + s.additions + " −" + s.deletions }),
      table(["Change", "File", "Lines"], rows, "No files changed."),
      c.files_truncated ? el("p", { class: "muted", text: "Only the first files are listed." }) : "",
      el("p", {}, link("Browse the files at this commit", { ref: c.sha }, { id: "browse-at" })),
    );
    return { crumbs: [link("Commits", { ref: w.ref, view: "commits" }), " / ", el("span", { class: "crumb-here", text: c.sha.slice(0, 12) })], body };
  }

  const VIEWS = { tree: treeView, blob: blobView, commits: commitsView, commit: commitView };

  const select = document.getElementById("branch-select");
  let defaultBranch = "";

  async function loadBranches() {
    const b = await api("GET", base + "/branches");
    defaultBranch = b.default_branch || (b.branches[0] && b.branches[0].name) || "";
    const names = b.branches.map((br) => br.name);
    const options = b.branches.map((br) => el("option", { value: br.name, text: br.name + (br.default ? " (default)" : "") }));
    const ref = where().ref;
    if (ref && !names.includes(ref)) options.push(el("option", { value: ref, text: ref }));
    select.replaceChildren(...options);
    select.disabled = options.length === 0;
    markBranch();
  }

  function markBranch() {
    const ref = where().ref || defaultBranch;
    if ([...select.options].some((o) => o.value === ref)) select.value = ref;
  }

  select.addEventListener("change", () => {
    const view = where().view;
    go({ ref: select.value, view: view === "commits" || view === "commit" ? "commits" : "tree" });
  });

  function markTabs(w) {
    const files = document.getElementById("tab-files");
    const commits = document.getElementById("tab-commits");
    files.href = href({ ref: w.ref });
    commits.href = href({ ref: w.ref, view: "commits" });
    const onCommits = w.view === "commits" || w.view === "commit";
    files.classList.toggle("active", !onCommits);
    commits.classList.toggle("active", onCommits);
  }
  for (const [id, view] of [["tab-files", "tree"], ["tab-commits", "commits"]]) {
    document.getElementById(id).addEventListener("click", (ev) => {
      ev.preventDefault();
      go({ ref: where().ref, view });
    });
  }

  let rendering = 0; // a newer render wins over a slower older one
  async function render() {
    const w = where();
    const mine = ++rendering;
    markTabs(w);
    markBranch();
    const view = VIEWS[w.view] || treeView;
    const crumbBox = document.getElementById("breadcrumb");
    try {
      const { crumbs: parts, body } = await view(w);
      if (mine !== rendering) return;
      crumbBox.replaceChildren(...parts);
      replace("browse-view", body);
    } catch (e) {
      if (mine !== rendering) return;
      crumbBox.replaceChildren(...crumbs(w, ""));
      replace("browse-view", el("p", { id: "browse-error", class: "error-text", text: e.message }));
    }
  }
  window.addEventListener("popstate", render);
  loadBranches().catch(showError);
  render();

  every(5000, async () => {
    const list = await api("GET", base + "/pipelines?limit=50");
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
