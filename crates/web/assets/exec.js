// Exec playground: pick a language, run code in a sandbox, see its output.
"use strict";

(async () => {
  const { api, el, requireLogin, showError } = Slipway;
  requireLogin();
  const select = document.getElementById("language");
  try {
    const runtimes = await api("GET", "/exec/runtimes");
    select.replaceChildren(
      ...runtimes.map((r) =>
        el("option", {
          value: r.language + "@" + r.version,
          text: r.language + " " + r.version + (r.installed ? "" : " (image not built)"),
        }),
      ),
    );
    const sh = runtimes.find((r) => r.language === "busybox-sh");
    if (sh) select.value = sh.language + "@" + sh.version;
  } catch (e) {
    showError(e);
  }

  document.getElementById("exec-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(null);
    const button = document.getElementById("run-button");
    const [language, version] = select.value.split("@");
    const stdin = document.getElementById("stdin").value;
    button.disabled = true;
    document.getElementById("result-state").textContent = "running…";
    try {
      const job = await api("POST", "/exec/run", {
        language,
        version,
        files: [{ content: document.getElementById("code").value }],
        stdin: stdin || null,
      });
      const phase = job.compile && job.compile.exit_code ? job.compile : job.run || {};
      document.getElementById("result").hidden = false;
      document.getElementById("result-state").textContent = job.state;
      const parts = [];
      if (job.compile && job.compile.exit_code) parts.push("compilation failed");
      if (phase.exit_code !== null && phase.exit_code !== undefined) parts.push("exit " + phase.exit_code);
      if (phase.signal) parts.push(phase.signal);
      if (phase.time_ms !== undefined) parts.push(phase.time_ms + " ms");
      if (job.error) parts.push(job.error);
      document.getElementById("result-exit").textContent = parts.join(" · ");
      document.getElementById("stdout").textContent = phase.stdout || "";
      document.getElementById("stderr").textContent = phase.stderr || "";
    } catch (e) {
      document.getElementById("result-state").textContent = "";
      showError(e);
    } finally {
      button.disabled = false;
    }
  });
})();
