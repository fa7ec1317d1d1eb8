// Line charts on <canvas>: one series of [unix seconds, value] points each.
"use strict";

const SlipwayChart = (() => {
  function fmt(v, unit) {
    if (unit === "bytes") {
      const units = ["B", "KiB", "MiB", "GiB"];
      let i = 0;
      while (Math.abs(v) >= 1024 && i < units.length - 1) {
        v /= 1024;
        i++;
      }
      return v.toFixed(v < 10 && i ? 1 : 0) + " " + units[i];
    }
    const s = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(2);
    return unit ? s + " " + unit : s;
  }

  function clock(t) {
    const d = new Date(t * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  /** Draws `points` on `canvas`, with the y range from 0 to the maximum. */
  function draw(canvas, points, unit) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 320;
    const h = canvas.clientHeight || 140;
    canvas.width = w * ratio;
    canvas.height = h * ratio;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 56, r: 8, t: 8, b: 20 };
    const pts = points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    ctx.strokeStyle = "#e5e7eb";
    ctx.lineWidth = 1;
    ctx.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
    if (pts.length === 0) {
      ctx.fillText("no data yet", pad.l + 8, pad.t + 16);
      return;
    }
    const t0 = pts[0][0];
    const t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
    const max = Math.max(...pts.map((p) => p[1])) || 1;
    const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
    const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
    ctx.textAlign = "right";
    ctx.fillText(fmt(max, unit), pad.l - 4, pad.t + 10);
    ctx.fillText(fmt(0, unit), pad.l - 4, h - pad.b);
    ctx.textAlign = "left";
    ctx.fillText(clock(t0), pad.l, h - 5);
    ctx.textAlign = "right";
    ctx.fillText(clock(t1), w - pad.r, h - 5);
    ctx.strokeStyle = "#2563eb";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
    ctx.stroke();
  }

  return { draw, fmt };
})();
