// velocity-estimation's per-track speeds as a chart over time: inline SVG, no dependencies, no network.
// One polyline per track (a dot for a track measured on one pair only), speed in m/s against time in seconds
// (frame_id / velocity.fps); hovering shows the nearest point's track, class, time and speed. The chart is one
// role="img" with a summary for screen readers; the per-track table beside it keeps every number.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 260;
const MARGIN = { top: 12, right: 14, bottom: 40, left: 52 };
const PLOT = { w: WIDTH - MARGIN.left - MARGIN.right, h: HEIGHT - MARGIN.top - MARGIN.bottom };

// media/draw.py's PALETTE (BGR there) as RGB, in its order: a track's line has the colour of its box in the
// annotated video (both index by track_id modulo 20).
export const TRACK_PALETTE = [
  "#ff3838", "#ff9d97", "#ff701f", "#ffb21d", "#cfd231", "#48f90a", "#92cc17", "#3ddb86", "#1a9334", "#00d4bb",
  "#2c99a8", "#00c2ff", "#344593", "#6473ff", "#0018ec", "#8438ff", "#520085", "#cb38ff", "#ff95c8", "#ff37c7",
];

export function trackColour(trackId) {
  const n = TRACK_PALETTE.length;
  return TRACK_PALETTE[((Math.trunc(trackId) % n) + n) % n];
}

function svg(name, attributes = {}) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

// About `count` round tick values (1, 2 or 5 × 10^k apart) from 0 up to at least `max`.
function ticks(max, count = 5) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw * (1 - 1e-9));
  const values = Array.from({ length: Math.ceil(max / step - 1e-9) + 1 }, (_, i) => i * step);
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return { values, top: values[values.length - 1], label: (v) => v.toFixed(digits) };
}

// Per track id: its class and its measured points {t, speed, frame}, in frame order.
export function speedSeries(velocity) {
  const fps = velocity?.fps > 0 ? velocity.fps : null;
  const tracks = new Map();
  const frames = [...(velocity?.data ?? [])].sort((a, b) => a.frame_id - b.frame_id);
  for (const frame of frames) {
    for (const track of frame.tracks ?? []) {
      if (!Number.isFinite(track.speed_mps_est)) continue;
      const entry = tracks.get(track.track_id) ?? { id: track.track_id, cls: track.class_name, points: [] };
      entry.points.push({ t: fps ? frame.frame_id / fps : frame.frame_id, speed: track.speed_mps_est, frame: frame.frame_id });
      tracks.set(track.track_id, entry);
    }
  }
  return { fps, series: [...tracks.values()].sort((a, b) => a.id - b.id) };
}

function axes(group, xTicks, yTicks, x, y, timeUnit) {
  for (const v of yTicks.values) {
    group.append(svg("line", { class: "grid", x1: 0, x2: PLOT.w, y1: y(v), y2: y(v) }));
    const text = svg("text", { x: -6, y: y(v), "text-anchor": "end", "dominant-baseline": "middle" });
    text.textContent = yTicks.label(v);
    group.append(text);
  }
  for (const v of xTicks.values) {
    group.append(svg("line", { class: "tick", x1: x(v), x2: x(v), y1: PLOT.h, y2: PLOT.h + 4 }));
    const text = svg("text", { x: x(v), y: PLOT.h + 16, "text-anchor": "middle" });
    text.textContent = xTicks.label(v);
    group.append(text);
  }
  group.append(svg("line", { class: "axis", x1: 0, x2: PLOT.w, y1: PLOT.h, y2: PLOT.h }));
  group.append(svg("line", { class: "axis", x1: 0, x2: 0, y1: 0, y2: PLOT.h }));
  const xTitle = svg("text", { x: PLOT.w / 2, y: PLOT.h + 34, "text-anchor": "middle", class: "axis-title" });
  xTitle.textContent = timeUnit === "s" ? "time (s)" : "frame";
  const yTitle = svg("text", {
    x: -PLOT.h / 2, y: -40, "text-anchor": "middle", transform: "rotate(-90)", class: "axis-title",
  });
  yTitle.textContent = "speed (m/s)";
  group.append(xTitle, yTitle);
}

// The chart (a <figure>), or a one-line note when no track was measured.
export function speedChart(velocity) {
  const { fps, series } = speedSeries(velocity);
  const figure = document.createElement("figure");
  figure.className = "speed-chart";
  figure.id = "speed-chart";
  if (!series.length) {
    figure.append(Object.assign(document.createElement("figcaption"), { textContent: "No track was measured." }));
    return figure;
  }
  for (const s of series) for (const p of s.points) p.track = s;
  const all = series.flatMap((s) => s.points);
  const maxSpeed = Math.max(...all.map((p) => p.speed));
  const maxT = Math.max(...all.map((p) => p.t));
  const timeUnit = fps ? "s" : "frame";
  const yTicks = ticks(maxSpeed > 0 ? maxSpeed : 1);
  const xTicks = ticks(maxT > 0 ? maxT : fps ? 1 / fps : 1);
  const x = (t) => (t / xTicks.top) * PLOT.w;
  const y = (v) => PLOT.h - (v / yTicks.top) * PLOT.h;
  for (const p of all) [p.x, p.y] = [x(p.t), y(p.speed)];

  const fastest = all.reduce((a, b) => (b.speed > a.speed ? b : a));
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart" });
  chart.setAttribute(
    "aria-label",
    `Speed over time of ${series.length} track${series.length === 1 ? "" : "s"} ` +
      `(${[...new Set(series.map((s) => s.cls))].join(", ")}); fastest: track ${fastest.track.id} at ` +
      `${fastest.speed.toFixed(2)} m/s at ${timeUnit === "s" ? `${fastest.t.toFixed(2)} s` : `frame ${fastest.t}`}. ` +
      "Every value is in the per-track table.",
  );
  const plot = svg("g", { transform: `translate(${MARGIN.left},${MARGIN.top})` });
  axes(plot, xTicks, yTicks, x, y, timeUnit);
  const lines = svg("g", { class: "tracks" });
  for (const s of series) {
    const colour = trackColour(s.id);
    const attributes = { class: "track", "data-track-id": s.id, stroke: colour, fill: colour };
    const shape = s.points.length === 1
      ? svg("circle", { ...attributes, cx: s.points[0].x, cy: s.points[0].y, r: 3.5 })
      : svg("polyline", { ...attributes, fill: "none", points: s.points.map((p) => `${p.x},${p.y}`).join(" ") });
    lines.append(shape);
  }
  const focus = svg("circle", { class: "focus", r: 5, visibility: "hidden" });
  plot.append(lines, focus);
  chart.append(plot);

  const tip = document.createElement("div");
  tip.className = "chart-tip";
  tip.hidden = true;
  tip.setAttribute("aria-hidden", "true"); // the table says the same to screen readers
  const highlight = (id) => {
    lines.classList.toggle("dimmed", id !== null);
    for (const shape of lines.children) shape.classList.toggle("on", shape.dataset.trackId === String(id));
  };
  const hide = () => {
    tip.hidden = true;
    focus.setAttribute("visibility", "hidden");
    highlight(null);
  };
  chart.addEventListener("pointermove", (event) => {
    const matrix = plot.getScreenCTM();
    if (!matrix) return;
    const at = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
    const nearest = all.reduce((a, b) => (Math.hypot(b.x - at.x, b.y - at.y) < Math.hypot(a.x - at.x, a.y - at.y) ? b : a));
    if (Math.hypot(nearest.x - at.x, nearest.y - at.y) > 40) return hide();
    Object.entries({ cx: nearest.x, cy: nearest.y, stroke: trackColour(nearest.track.id), visibility: "visible" })
      .forEach(([k, v]) => focus.setAttribute(k, v));
    const time = timeUnit === "s" ? `${nearest.t.toFixed(2)} s` : `frame ${nearest.t}`;
    tip.textContent = `track ${nearest.track.id} (${nearest.track.cls}) · ${time} · ${nearest.speed.toFixed(2)} m/s`;
    tip.dataset.trackId = nearest.track.id;
    tip.dataset.frame = nearest.frame;
    tip.hidden = false;
    highlight(nearest.track.id);
    const screen = new DOMPoint(nearest.x, nearest.y).matrixTransform(matrix);
    const box = figure.getBoundingClientRect();
    const right = screen.x - box.left > box.width * 0.6; // near the right edge: the tip goes to the point's left
    tip.style.left = `${screen.x - box.left + (right ? -8 : 8)}px`;
    tip.style.top = `${screen.y - box.top - 30}px`;
    tip.style.transform = right ? "translateX(-100%)" : "";
  });
  chart.addEventListener("pointerleave", hide);

  const legend = document.createElement("ul");
  legend.className = "chart-legend";
  legend.setAttribute("aria-hidden", "true");
  for (const s of series) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = trackColour(s.id);
    item.append(swatch, `#${s.id} ${s.cls}`);
    item.dataset.trackId = s.id;
    item.addEventListener("pointerenter", () => highlight(s.id));
    item.addEventListener("pointerleave", () => highlight(null));
    legend.append(item);
  }
  const caption = document.createElement("figcaption");
  caption.textContent = `Per-track speed over time (${series.length} track${series.length === 1 ? "" : "s"}; ${fps ? `${fps} fps` : "frames"}, ` +
    `${velocity.meter_per_pixel ?? "?"} m/px). Hover for values.`;
  figure.append(chart, tip, legend, caption);
  return figure;
}
