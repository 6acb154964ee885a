// Gale console charts: small SVG line, multi-line, bar and scatter charts, no library.
"use strict";
const Chart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 260, L = 52, R = 14, T = 12, B = 28;

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ticks returns about n round values spanning [lo, hi].
  function ticks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function fmt(v) {
    const a = Math.abs(v);
    return a >= 10000 ? (v / 1000).toFixed(0) + "k" : a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(1) : v.toPrecision(2);
  }

  // frame draws axes and grid for x in [x0, x1], y in [y0, y1]; returns the svg and the scale functions.
  function frame(x0, x1, y0, y1, xlabel, ylabel, xfmt) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    const sx = x => L + (x - x0) / ((x1 - x0) || 1) * (W - L - R);
    const sy = y => H - B - (y - y0) / ((y1 - y0) || 1) * (H - T - B);
    for (const y of ticks(y0, y1, 5)) {
      svg.append(el("line", { class: "grid", x1: L, x2: W - R, y1: sy(y), y2: sy(y) }));
      svg.append(el("text", { x: L - 6, y: sy(y) + 3, "text-anchor": "end" }, fmt(y)));
    }
    const xt = ticks(x0, x1, 6);
    for (const x of xt) {
      svg.append(el("text", { x: sx(x), y: H - B + 14, "text-anchor": "middle" }, xfmt ? xfmt(x, x1 - x0) : fmt(x)));
    }
    svg.append(el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    svg.append(el("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    if (xlabel) svg.append(el("text", { x: W - R, y: H - 2, "text-anchor": "end" }, xlabel));
    if (ylabel) svg.append(el("text", { x: 4, y: T + 2 }, ylabel));
    return { svg, sx, sy };
  }

  function timeLabel(ms, span) {
    const d = new Date(ms);
    const p = n => String(n).padStart(2, "0");
    return span > 2 * 86400e3 ? `${d.getMonth() + 1}/${d.getDate()}` : `${p(d.getHours())}:${p(d.getMinutes())}`;
  }

  function extent(vals) {
    let lo = Infinity, hi = -Infinity;
    for (const v of vals) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (lo === hi) { lo -= 1; hi += 1; }
    return [lo, hi];
  }

  // line draws values [{time, value}] over time.
  function line(values, unit) {
    if (!values.length) return null;
    const [t0, t1] = extent(values.map(p => p.time));
    let [y0, y1] = extent(values.map(p => p.value));
    const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
    const f = frame(t0, t1, y0, y1, "", unit, timeLabel);
    const d = values.map((p, i) => (i ? "L" : "M") + f.sx(p.time).toFixed(1) + " " + f.sy(p.value).toFixed(1)).join("");
    f.svg.append(el("path", { class: "line", d }));
    return f.svg;
  }

  // scatter draws points [[x, y]] with an optional model curve [[x, y]] as a dashed line.
  function scatter(points, model, xlabel, ylabel) {
    const xs = points.map(p => p[0]).concat(model.map(p => p[0]));
    const ys = points.map(p => p[1]).concat(model.map(p => p[1]));
    if (!xs.length) return null;
    const [, x1] = extent(xs), [, y1] = extent(ys);
    const f = frame(0, x1 * 1.05, 0, y1 * 1.08, xlabel, ylabel);
    for (const p of points) f.svg.append(el("circle", { class: "pt", cx: f.sx(p[0]).toFixed(1), cy: f.sy(p[1]).toFixed(1), r: 2.2 }));
    if (model.length) {
      const d = model.map((p, i) => (i ? "L" : "M") + f.sx(p[0]).toFixed(1) + " " + f.sy(p[1]).toFixed(1)).join("");
      f.svg.append(el("path", { class: "model", d }));
    }
    return f.svg;
  }

  const PALETTE = ["#3fa7d6", "#e0a93b", "#4caf7a", "#e0584f", "#7a8cff", "#6fd3e0", "#c792ea", "#8a97a5"];

  // legend is a row of coloured names under a chart.
  function legend(names) {
    const d = document.createElement("div");
    d.className = "legend";
    names.forEach((n, i) => {
      const s = document.createElement("span"), dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = PALETTE[i % PALETTE.length];
      s.append(dot, n);
      d.append(s);
    });
    return d;
  }

  // lines draws series [{name, points: [[seconds, value]]}] against seconds since the start, one colour each.
  function lines(series, unit) {
    const all = series.flatMap(s => s.points);
    if (!all.length) return null;
    const [x0, x1] = extent(all.map(p => p[0]));
    let [y0, y1] = extent(all.map(p => p[1]));
    y0 = Math.min(0, y0); y1 += (y1 - y0) * 0.08;
    const f = frame(x0, x1, y0, y1, "seconds", unit);
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const d = s.points.map((p, j) => (j ? "L" : "M") + f.sx(p[0]).toFixed(1) + " " + f.sy(p[1]).toFixed(1)).join("");
      f.svg.append(el("path", { class: "series", d, stroke: PALETTE[i % PALETTE.length] }));
    });
    const box = document.createElement("div");
    box.append(f.svg, legend(series.map(s => s.name)));
    return box;
  }

  // bars draws each series' value as a labelled horizontal bar.
  function bars(series, unit) {
    if (!series.length) return null;
    const vals = series.map(s => (s.points[0] || [0, 0])[1]), hi = Math.max(...vals, 1);
    const rowH = 44, Hh = series.length * rowH + 8, Lw = 150;
    const svg = el("svg", { viewBox: `0 0 ${W} ${Hh}`, role: "img" });
    series.forEach((s, i) => {
      const y = 4 + i * rowH, w = Math.max(1, (W - Lw - 90) * vals[i] / hi);
      svg.append(el("text", { class: "bar-label", x: Lw - 10, y: y + 26, "text-anchor": "end" }, s.name));
      svg.append(el("rect", { x: Lw, y: y + 6, width: w.toFixed(1), height: rowH - 14, rx: 3, fill: PALETTE[i % PALETTE.length] }));
      svg.append(el("text", { class: "bar-label", x: Lw + w + 8, y: y + 26 }, vals[i].toLocaleString() + (unit ? " " + unit : "")));
    });
    return svg;
  }

  return { el, line, scatter, lines, bars };
})();
