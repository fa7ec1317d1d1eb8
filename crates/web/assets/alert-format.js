// How alert values and durations read, shared by the Alerts page and the
// app page's alerts section.
"use strict";

const AlertFmt = (() => {
  function num(v) {
    if (typeof v !== "number" || !isFinite(v)) return "–";
    return Number.isInteger(v) ? String(v) : v.toFixed(2).replace(/\.?0+$/, "");
  }

  /** `40%`, `350 ms`, `1 replicas`; `–` without a value. */
  function value(v, unit) {
    if (v === null || v === undefined) return "–";
    if (unit === "%") return num(v) + "%";
    return unit ? num(v) + " " + unit : num(v);
  }

  /** Seconds as `45s`, `3m 20s`, `2h 5m`. */
  function lasted(s) {
    if (typeof s !== "number") return "";
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }

  return { value, lasted };
})();
