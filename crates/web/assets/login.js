// Login page: POST /auth/login, keep the token for this browser tab, go on.
"use strict";

(() => {
  const { api, setToken, showError, param } = Slipway;
  const form = document.getElementById("login-form");

  /** Only same-site dashboard paths are followed after login. */
  function next() {
    const n = param("next") || "";
    return n.startsWith("/ui/") && !n.startsWith("//") ? n : "/ui/repos";
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(null);
    const button = document.getElementById("login-button");
    button.disabled = true;
    try {
      const res = await api("POST", "/auth/login", {
        username: document.getElementById("username").value,
        password: document.getElementById("password").value,
        token_name: "web dashboard",
      });
      setToken(res.token, res.info.id);
      location.href = next();
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
    }
  });
})();
