// A pipeline: its steps (refreshed every 2 s until it ends) and the live log
// of the selected step, followed over SSE.
"use strict";

(() => {
  const { api, stream, el, badge, ago, duration, param, repoParam, requireLogin, showError } = Slipway;
  requireLogin();
  let repo;
  const number = Number(param("n"));
  try {
    repo = repoParam();
    if (!Number.isInteger(number) || number < 1) throw new Error("missing pipeline number in the address (?n=N)");
  } catch (e) {
    showError(e);
    return;
  }
  const base = "/repos/" + repo.path + "/pipelines/" + number;
  const repoLink = document.getElementById("repo-link");
  repoLink.textContent = repo.full;
  repoLink.href = "/ui/repo?r=" + encodeURIComponent(repo.full);
  document.getElementById("pipeline-title").textContent = repo.full + " #" + number;
  document.title = repo.full + " #" + number + " · Slipway";

  const FINISHED = ["success", "failure", "cancelled", "error", "skipped"];
  let selected = param("step");
  let following = null; // { step, controller }
  let timer = null;

  function renderSteps(p) {
    const summary = document.getElementById("pipeline-summary");
    summary.replaceChildren(
      badge(p.status), " ", p.branch || p.ref_name, " ",
      el("code", { text: String(p.sha).slice(0, 12) }),
      " by ", p.actor, " · queued ", ago(p.created_at),
      p.duration_ms !== null ? " · took " + duration(p.duration_ms) : "",
      p.error ? el("span", { class: "error-text", text: " · " + p.error }) : "",
    );
    const steps = p.steps || [];
    document.getElementById("steps").replaceChildren(
      ...steps.map((s) =>
        el("li", {},
          el("button", {
            type: "button",
            class: "step" + (s.name === selected ? " selected" : ""),
            "data-step": s.name,
            onclick: () => select(s.name),
          },
          el("span", { class: "step-name", text: s.name }),
          badge(s.status),
          el("span", { class: "muted", text: s.exit_code !== null ? "exit " + s.exit_code : "" }),
          el("span", { class: "muted", text: duration(s.duration_ms) }),
          ),
        ),
      ),
    );
    if (!selected && steps.length) {
      const running = steps.find((s) => s.status === "running");
      select((running || steps[0]).name);
    }
  }

  async function refresh() {
    const p = await api("GET", base);
    renderSteps(p);
    if (FINISHED.includes(p.status) && timer) {
      clearInterval(timer);
      timer = null;
    }
  }

  function select(step) {
    if (following && following.step === step) return;
    if (following) following.controller.abort();
    selected = step;
    document.querySelectorAll("#steps .step").forEach((b) => b.classList.toggle("selected", b.dataset.step === step));
    document.getElementById("log-step").textContent = step;
    const log = document.getElementById("log");
    log.replaceChildren();
    const controller = new AbortController();
    following = { step, controller };
    follow(step, log, controller);
  }

  async function follow(step, log, controller) {
    const state = document.getElementById("log-state");
    state.textContent = "following…";
    let after = 0;
    // Reconnects after a dropped connection, from the last line seen.
    for (let attempt = 0; attempt < 20 && !controller.signal.aborted; attempt++) {
      let ended = false;
      try {
        await stream(
          base + "/steps/" + encodeURIComponent(step) + "/logs?follow=1&after=" + after,
          (event, data) => {
            const value = JSON.parse(data);
            if (event === "log") {
              after = value.number;
              const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
              log.append(el("div", { class: "line" + (value.stream === "stderr" ? " stderr" : ""), text: value.text }));
              if (stick) log.scrollTop = log.scrollHeight;
            } else if (event === "end") {
              ended = true;
              state.textContent = "ended: " + value.status;
            }
          },
          controller.signal,
        );
      } catch (e) {
        if (controller.signal.aborted) return;
        if (e instanceof Slipway.ApiError) {
          state.textContent = "";
          showError(e);
          return;
        }
      }
      if (ended || controller.signal.aborted) {
        refresh().catch(showError);
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  refresh().catch(showError);
  timer = setInterval(() => refresh().catch(showError), 2000);
})();
