// The playground: ES modules, no dependencies, no network requests beyond this server's /infer, /jobs, /health and
// /openapi.json. It names no task: the task list comes from /health, and which option fields a task shows from the
// options schema /openapi.json gives it (a field's data-options) or from its model kinds in /health (data-kinds).
// It sends exactly the JSON any client sends: {task, model, payloadBase64, mimeType, options}.

import { speedChart } from "./chart.js";
import { runAsJob } from "./jobs.js";

const INFER_URL = new URL("../infer", location.href);
const HEALTH_URL = new URL("../health", location.href);
const OPENAPI_URL = new URL("../openapi.json", location.href);

// COCO keypoint pairs (0-based, ultralytics' order) and a colour per limb group.
const SKELETON = [
  [15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7], [6, 8], [7, 9],
  [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6],
];
const LIMB_COLOUR = (a, b) => (Math.max(a, b) <= 6 && !(a === 5 && b === 6) ? "#33b5ff" : a >= 11 || b >= 11 ? "#ff9f1a" : "#38e06c");
const KEYPOINT_MIN_CONF = 0.5;
const PALETTE = [
  "#ff3838", "#2c99a8", "#ff9d97", "#ff701f", "#ffb21d", "#cfd231", "#48f90a", "#92cc17", "#3ddb86", "#1a9334",
  "#00d4bb", "#ff95c8", "#00c2ff", "#344593", "#6473ff", "#0018ec", "#8438ff", "#520085", "#cb38ff", "#ff37c7",
];

const $ = (selector) => document.querySelector(selector);
const form = $("#form");
const fileInput = $("#file");
const runButton = $("#run");
const statusLine = $("#status");
const errorBox = $("#error");
const canvas = $("#canvas");
const video = $("#video");
const threshold = $("#threshold");

const state = {
  input: null, // {file, kind: "image"|"video", bitmap?}
  videoUrl: null,
  result: null,
  health: null,
  options: {}, // task → the names of its options (from /openapi.json)
  running: false,
  prompts: { points: [], labels: [], bboxes: [] }, // SAM 2, in pixels of the input image
  drag: null, // {x, y} where a press on the canvas started
};

// ---------------------------------------------------------------- small helpers

function currentTask() {
  return form.elements.task?.value ?? "";
}

// What /health says of a task: its title, default model (store name and the name clients send), model kind.
function taskInfo(task) {
  return state.health?.models?.[task] ?? {};
}

// Whether the task takes every option named: "!name" means it must not take that one.
function takes(task, ...names) {
  const own = state.options[task] ?? [];
  return names.every((name) => (name.startsWith("!") ? !own.includes(name.slice(1)) : own.includes(name)));
}

// Each task's option names, from the OpenAPI document: InferRequest's allOf picks the options schema per task.
function optionsByTask(openapi) {
  const schemas = openapi?.components?.schemas ?? {};
  const byTask = {};
  for (const rule of schemas.InferRequest?.allOf ?? []) {
    const task = rule.if?.properties?.task?.const;
    const schema = schemas[(rule.then?.properties?.options?.$ref ?? "").split("/").pop()];
    if (task) byTask[task] = Object.keys(schema?.properties ?? {});
  }
  return byTask;
}

function say(text) {
  statusLine.textContent = text;
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

function colourFor(index) {
  return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

function fmt(value, digits = 3) {
  if (typeof value !== "number") return value === null || value === undefined ? "—" : String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return value.toFixed(digits);
}

function mediaKindOf(file) {
  if (file.type.startsWith("video/")) return "video";
  if (file.type.startsWith("image/")) return "image";
  return /\.(mp4|webm|mov|avi|mkv|m4v)$/i.test(file.name) ? "video" : "image";
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).slice(String(reader.result).indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function base64ToBlob(base64, type) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type });
}

function setVideoSource(blob, caption) {
  if (state.videoUrl) URL.revokeObjectURL(state.videoUrl);
  state.videoUrl = URL.createObjectURL(blob);
  video.src = state.videoUrl;
  $("#video-caption").textContent = caption;
  $("#video-view").hidden = false;
  video.play().catch(() => {}); // autoplay may be refused; the controls remain
}

function clearResult() {
  state.result = null;
  showError("");
  $("#tables").replaceChildren();
  $("#raw").hidden = true;
  $("#raw").open = false;
  $("#raw-json").textContent = "";
  $("#depth-scale").hidden = true;
}

// ---------------------------------------------------------------- task and options

function onTaskChange() {
  const task = currentTask();
  const kinds = taskInfo(task).kinds ?? [];
  for (const element of document.querySelectorAll("[data-options]")) {
    element.hidden = !takes(task, ...element.dataset.options.split(" "));
  }
  for (const element of document.querySelectorAll("[data-kinds]")) {
    element.hidden = !element.dataset.kinds.split(" ").some((kind) => kinds.includes(kind));
  }
  $("#model").placeholder = taskInfo(task).request_name ?? "";
  fillModelNames();
}

function fillModelNames() {
  const list = $("#model-names");
  list.replaceChildren();
  const installed = state.health?.installed ?? {};
  const info = taskInfo(currentTask());
  const kinds = info.kinds ?? [info.kind]; // velocity takes a flow model or a detector
  for (const [name, model] of Object.entries(installed)) {
    if (!kinds.includes(model.kind)) continue;
    const option = document.createElement("option");
    option.value = name;
    option.label = model.weights;
    list.append(option);
  }
}

function requestOptions(task) {
  const options = { threshold: Number(threshold.value) };
  if (takes(task, "text_prompt", "!points")) options.text_prompt = $("#text-prompt").value;
  if (takes(task, "points")) Object.assign(options, promptOptions());
  if (takes(task, "meter_per_pixel")) options.meter_per_pixel = Number($("#meter-per-pixel").value);
  if (takes(task, "tracker")) options.tracker = $("#tracker").value;
  if (takes(task, "subtract_camera_motion")) options.subtract_camera_motion = $("#subtract-camera-motion").checked;
  const maxFrames = $("#max-frames").value;
  if (maxFrames && takes(task, "max_frames")) options.max_frames = Number(maxFrames);
  return options;
}

// ---------------------------------------------------------------- input

async function useInput(file) {
  clearResult();
  clearPrompts();
  const kind = mediaKindOf(file);
  state.input = { file, kind, bitmap: null };
  const size = `${(file.size / 1024).toFixed(0)} KB`;
  if (kind === "image") {
    try {
      state.input.bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch {
      state.input.bitmap = null; // not decodable here; the server will say what it thinks
    }
    $("#video-view").hidden = true;
    if (state.input.bitmap) {
      const { width, height } = state.input.bitmap;
      drawBase();
      setCanvasCaption(`Input: ${file.name}, ${width}×${height}`, `Input image ${file.name}, ${width} by ${height} pixels`);
      $("#input-info").textContent = `${file.name} — image, ${width}×${height}, ${size}`;
    } else {
      $("#image-view").hidden = true;
      $("#input-info").textContent = `${file.name} — ${size} (this browser cannot preview it)`;
    }
  } else {
    $("#image-view").hidden = true;
    setVideoSource(file, `Input: ${file.name}`);
    $("#input-info").textContent = `${file.name} — video, ${size}`;
  }
  say("Ready to run.");
}

async function useSample(path) {
  const response = await fetch(new URL(path, location.href));
  if (!response.ok) throw new Error(`sample ${path}: HTTP ${response.status}`);
  const blob = await response.blob();
  fileInput.value = "";
  await useInput(new File([blob], path.split("/").pop(), { type: blob.type }));
}

// ---------------------------------------------------------------- drawing

function setCanvasCaption(caption, label) {
  $("#image-caption").textContent = caption;
  canvas.setAttribute("aria-label", label);
  $("#image-view").hidden = false;
}

function drawBase() {
  const bitmap = state.input.bitmap;
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  return ctx;
}

function scaleOf(width, height) {
  const side = Math.max(width, height);
  return { line: Math.max(2, Math.round(side / 400)), font: Math.max(12, Math.round(side / 45)) };
}

function tracePolygon(ctx, points) {
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.closePath();
}

function drawLabel(ctx, text, x, y, colour, font) {
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  const width = ctx.measureText(text).width + 6;
  const height = font + 4;
  const top = y - height >= 0 ? y - height : y;
  ctx.fillStyle = colour;
  ctx.fillRect(x, top, width, height);
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
  ctx.fillStyle = 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#000" : "#fff"; // legible on light and dark labels
  ctx.textBaseline = "top";
  ctx.fillText(text, x + 3, top + 2);
}

function drawInstances(items, colourKey) {
  const ctx = drawBase();
  const { line, font } = scaleOf(canvas.width, canvas.height);
  ctx.lineJoin = "round";
  items.forEach((item, i) => {
    if (!Array.isArray(item.mask_polygon) || item.mask_polygon.length < 3) return;
    const colour = colourFor(colourKey(item, i));
    tracePolygon(ctx, item.mask_polygon);
    ctx.globalAlpha = 0.4;
    ctx.fillStyle = colour;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.lineWidth = Math.max(1, line / 2);
    ctx.strokeStyle = colour;
    ctx.stroke();
  });
  items.forEach((item, i) => {
    const box = item.box;
    if (!box) return;
    ctx.lineWidth = line;
    ctx.strokeStyle = colourFor(colourKey(item, i));
    ctx.strokeRect(box.xmin, box.ymin, box.xmax - box.xmin, box.ymax - box.ymin);
  });
  for (const item of items) {
    if (!Array.isArray(item.keypoints)) continue;
    const kp = item.keypoints;
    ctx.lineWidth = line;
    for (const [a, b] of SKELETON) {
      if (!kp[a] || !kp[b] || kp[a][2] < KEYPOINT_MIN_CONF || kp[b][2] < KEYPOINT_MIN_CONF) continue;
      ctx.strokeStyle = LIMB_COLOUR(a, b);
      ctx.beginPath();
      ctx.moveTo(kp[a][0], kp[a][1]);
      ctx.lineTo(kp[b][0], kp[b][1]);
      ctx.stroke();
    }
    for (const [x, y, conf] of kp) {
      if (conf < KEYPOINT_MIN_CONF) continue;
      ctx.fillStyle = "#ffffff";
      ctx.beginPath();
      ctx.arc(x, y, line + 1, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  items.forEach((item, i) => {
    if (item.box) drawLabel(ctx, `${item.label} ${fmt(item.score, 2)}`, item.box.xmin, item.box.ymin, colourFor(colourKey(item, i)), font);
  });
}

// A perceptually ordered colour scale (Google's Turbo, polynomial fit), far = dark blue, near = dark red.
function turbo(t) {
  const r = 34.61 + t * (1172.33 - t * (10793.56 - t * (33300.12 - t * (38394.49 - t * 14825.05))));
  const g = 23.31 + t * (557.33 + t * (1225.33 - t * (3574.96 - t * (1073.77 + t * 707.56))));
  const b = 27.2 + t * (3211.1 - t * (15327.97 - t * (27814 - t * (22569.18 - t * 6838.66))));
  const clamp = (v) => Math.max(0, Math.min(255, Math.round(v)));
  return [clamp(r), clamp(g), clamp(b)];
}
const TURBO_LUT = Array.from({ length: 256 }, (_, i) => turbo(i / 255));

function drawDepthScale() {
  const bar = $("#depth-scale-bar").getContext("2d");
  const colours = $("#depth-colours").value;
  for (let i = 0; i < 256; i += 1) {
    const [r, g, b] = colours === "turbo" ? TURBO_LUT[i] : [i, i, i];
    bar.fillStyle = `rgb(${r},${g},${b})`;
    bar.fillRect(i, 0, 1, 12);
  }
  $("#depth-scale").hidden = false;
}

async function drawDepth(result) {
  const bitmap = await createImageBitmap(base64ToBlob(result.depth_image, "image/png"));
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  if ($("#depth-colours").value === "turbo") {
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b] = TURBO_LUT[data[i]];
      data[i] = r;
      data[i + 1] = g;
      data[i + 2] = b;
    }
    ctx.putImageData(pixels, 0, 0);
  }
  drawDepthScale();
  setCanvasCaption(
    `Depth map, ${bitmap.width}×${bitmap.height} (relative: bright or red is near)`,
    `Depth map of ${state.input.file.name}, ${bitmap.width} by ${bitmap.height} pixels; near areas are red, far areas blue`,
  );
}

// ---------------------------------------------------------------- tables

function table(caption, headers, rows, numeric = []) {
  const element = document.createElement("table");
  element.createCaption().textContent = caption;
  const head = element.createTHead().insertRow();
  for (const header of headers) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = header;
    head.append(th);
  }
  const body = element.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((value, i) => {
      const td = tr.insertCell();
      td.textContent = fmt(value);
      if (numeric.includes(i)) td.className = "num";
    });
  }
  $("#tables").append(element);
}

function keyValueTable(caption, object) {
  const shown = ([, v]) => (typeof v !== "object" || v === null) && !(typeof v === "string" && v.length > 160);
  const rows = Object.entries(object ?? {}).filter(shown); // no nested objects, no base64 images
  if (rows.length) table(caption, ["name", "value"], rows, [1]);
}

const MAX_ROWS = 50;

function detectionTable(items, caption) {
  const rows = items.slice(0, MAX_ROWS).map((d, i) => [
    d.instance_id ?? i, d.label, d.score,
    `${fmt(d.box?.xmin, 0)}, ${fmt(d.box?.ymin, 0)} – ${fmt(d.box?.xmax, 0)}, ${fmt(d.box?.ymax, 0)}`,
  ]);
  const more = items.length > MAX_ROWS ? ` (first ${MAX_ROWS} of ${items.length})` : "";
  table(`${caption}${more}`, ["#", "label", "score", "box (x1, y1 – x2, y2)"], rows, [0, 2]);
}

function median(values) {
  const sorted = values.filter((v) => typeof v === "number").sort((a, b) => a - b);
  if (!sorted.length) return null;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function velocityTables(velocity) {
  const tracks = new Map();
  for (const frame of velocity.data ?? []) {
    for (const track of frame.tracks ?? []) {
      const entry = tracks.get(track.track_id) ?? { cls: track.class_name, speeds: [], flows: [] };
      entry.speeds.push(track.speed_mps_est);
      entry.flows.push(track.median_flow_px_per_frame);
      tracks.set(track.track_id, entry);
    }
  }
  const rows = [...tracks.entries()]
    .sort(([a], [b]) => a - b)
    .map(([id, t]) => [id, t.cls, t.speeds.length, median(t.flows), median(t.speeds)]);
  $("#tables").append(speedChart(velocity)); // chart.js: the same speeds over time, a line per track
  table(
    `Per-track speeds (${velocity.mode ?? "per_track"}, ${fmt(velocity.fps, 2)} fps, ${fmt(velocity.meter_per_pixel, 4)} m/px)`,
    ["track", "class", "frames", "median flow px/frame", "median speed m/s"], rows, [0, 2, 3, 4],
  );
  if (velocity.summary && typeof velocity.summary === "object") keyValueTable("Velocity summary", velocity.summary);
}

// ---------------------------------------------------------------- result

function shorten(key, value) {
  return typeof value === "string" && value.length > 160 ? `<${value.length.toLocaleString("en")} characters>` : value;
}

async function render(task, result) {
  state.result = result;
  const name = state.input.file.name;
  if (Array.isArray(result)) {
    if (state.input.bitmap) {
      // masks: one colour per instance (they overlap); boxes and skeletons: one colour per class
      drawInstances(result, (d, i) => (d.mask_polygon ? i : d.class_id ?? 0));
      const top = result.slice(0, 8).map((d) => `${d.label} ${fmt(d.score, 2)}`).join(", ");
      setCanvasCaption(
        `${result.length} result${result.length === 1 ? "" : "s"} on ${name}`,
        `${name} with ${result.length} ${task} results drawn over it${top ? `: ${top}` : ""}`,
      );
    }
    detectionTable(result, task);
  } else if (result && Array.isArray(result.instances)) {
    const concepts = result.concepts ?? [];
    const conceptIndex = (d) => Math.max(0, concepts.indexOf(d.label));
    if (state.input.bitmap) {
      drawInstances(result.instances, conceptIndex);
      setCanvasCaption(
        `${result.instances.length} instance(s) of ${concepts.join(", ") || "the prompt"} on ${name}`,
        `${name} with ${result.instances.length} concept masks drawn over it (${concepts.join(", ")})`,
      );
    }
    if (takes(task, "points") && state.input.bitmap) drawPrompts(canvas.getContext("2d"));
    detectionTable(result.instances, `Instances of ${concepts.join(", ")}`);
  } else if (result && typeof result.depth_image === "string") {
    await drawDepth(result);
    keyValueTable("Depth", result);
  } else if (result && typeof result.annotated_video === "string") {
    $("#image-view").hidden = true;
    const type = result.content_type || "video/mp4";
    setVideoSource(base64ToBlob(result.annotated_video, type), `Annotated video (${type}) for ${name}`);
    video.setAttribute("aria-label", `Annotated ${task} video of ${name}`);
    keyValueTable("Metrics", result.metrics);
    if (result.velocity) velocityTables(result.velocity);
  }
  $("#raw").hidden = false;
}

async function run(event) {
  event.preventDefault();
  if (state.running) return;
  if (!state.input) {
    showError("Choose a file or a sample first.");
    fileInput.focus();
    return;
  }
  const task = currentTask();
  clearResult();
  state.running = true;
  runButton.disabled = true;
  $("#result").setAttribute("aria-busy", "true");
  say(`Running ${task}…`);
  const started = performance.now();
  try {
    const body = {
      task,
      model: $("#model").value.trim() || taskInfo(task).request_name,
      payloadBase64: await readBase64(state.input.file),
      mimeType: state.input.file.type || "application/octet-stream",
      options: requestOptions(task),
    };
    const headers = { "Content-Type": "application/json" };
    const key = $("#api-key").value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const asJob = state.input.kind === "video" && taskInfo(task).accepts?.includes("video"); // jobs.js
    const response = asJob ? await runAsJob(body, headers)
      : await fetch(INFER_URL, { method: "POST", headers, body: JSON.stringify(body) });
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    const text = await response.text();
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
    const requestId = response.headers.get("X-Request-ID");
    const where = `${seconds} s, HTTP ${response.status}${requestId ? `, request ${requestId}` : ""}`;
    if (!response.ok) {
      showError(data?.error ?? `The server answered HTTP ${response.status} without an error message.`);
      say(`Failed (${where}).`);
      if (response.status === 401) $("#api-key").focus();
      state.result = data;
      if (data) $("#raw").hidden = false;
      return;
    }
    if (data === null) throw new Error("the answer is not JSON");
    await render(task, data);
    say(`Done: ${task} (${where}).`);
  } catch (error) {
    showError(`The request did not complete: ${error.message}`);
    say("Failed.");
  } finally {
    state.running = false;
    runButton.disabled = false;
    $("#result").removeAttribute("aria-busy");
  }
}

// ---------------------------------------------------------------- SAM 2 prompts: click for a point, drag for a box

function promptOptions() {
  const { points, labels, bboxes } = state.prompts;
  const options = {};
  if (points.length) Object.assign(options, { points, labels });
  if (bboxes.length) options.bboxes = bboxes;
  const text = $("#sam2-text").value.trim();
  if (!points.length && !bboxes.length && text) options.text_prompt = text;
  return options;
}

function clearPrompts() {
  state.prompts = { points: [], labels: [], bboxes: [] };
  state.drag = null;
  describePrompts();
}

function describePrompts() {
  const { points, labels, bboxes } = state.prompts;
  const background = labels.filter((l) => l === 0).length;
  $("#sam2-prompts").value = points.length || bboxes.length
    ? `${points.length} point(s)${background ? ` (${background} background)` : ""}, ${bboxes.length} box(es).`
    : "No prompts: segment everything.";
}

// A pointer event's position in pixels of the input image (the canvas holds the image at its own size).
function imagePoint(event) {
  const rect = canvas.getBoundingClientRect();
  const clamp = (v, hi) => Math.round(Math.min(Math.max(v, 0), hi) * 10) / 10;
  return {
    x: clamp(((event.clientX - rect.left) * canvas.width) / rect.width, canvas.width),
    y: clamp(((event.clientY - rect.top) * canvas.height) / rect.height, canvas.height),
  };
}

function drawPrompts(ctx, pending = null) {
  const { line } = scaleOf(canvas.width, canvas.height);
  ctx.lineWidth = line;
  ctx.setLineDash([3 * line, 2 * line]);
  ctx.strokeStyle = "#ffffff";
  for (const [x1, y1, x2, y2] of [...state.prompts.bboxes, ...(pending ? [pending] : [])]) {
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
  ctx.setLineDash([]);
  state.prompts.points.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x, y, 3 * line, 0, Math.PI * 2);
    ctx.fillStyle = state.prompts.labels[i] ? "#38e06c" : "#ff3838";
    ctx.fill();
    ctx.strokeStyle = "#000000";
    ctx.stroke();
  });
}

function prompting() {
  return takes(currentTask(), "points") && state.input?.bitmap && !state.running;
}

function boxFrom(a, b) {
  return [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.max(a.x, b.x), Math.max(a.y, b.y)];
}

function onPointerDown(event) {
  if (!prompting()) return;
  state.drag = imagePoint(event);
  canvas.setPointerCapture(event.pointerId);
}

function onPointerMove(event) {
  if (!state.drag || !prompting()) return;
  drawPrompts(drawBase(), boxFrom(state.drag, imagePoint(event)));
}

function onPointerUp(event) {
  if (!state.drag || !prompting()) return;
  const start = state.drag;
  const end = imagePoint(event);
  state.drag = null;
  const rect = canvas.getBoundingClientRect();
  const tolerance = (4 * canvas.width) / rect.width; // 4 screen pixels
  if (Math.abs(end.x - start.x) <= tolerance && Math.abs(end.y - start.y) <= tolerance) {
    state.prompts.points.push([start.x, start.y]);
    state.prompts.labels.push(event.shiftKey ? 0 : 1);
  } else {
    state.prompts.bboxes.push(boxFrom(start, end));
  }
  describePrompts();
  drawPrompts(drawBase());
}

// ---------------------------------------------------------------- health

// The task list, built once from /health (the service's registry): a radio button and a status badge each.
function buildTaskList(tasks) {
  const fieldset = $("#tasks");
  for (const [index, task] of tasks.entries()) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    Object.assign(input, { type: "radio", name: "task", value: task, checked: index === 0 });
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.dataset.statusFor = task;
    label.append(input, ` ${taskInfo(task).title ?? task} `, badge);
    fieldset.append(label);
  }
}

async function loadHealth() {
  try {
    const [health, openapi] = await Promise.all([fetch(HEALTH_URL), fetch(OPENAPI_URL)]);
    state.health = await health.json();
    state.options = optionsByTask(await openapi.json());
  } catch {
    $("#service-summary").textContent = "Could not read /health.";
    return;
  }
  const health = state.health;
  if (!form.elements.task) buildTaskList(health.tasks ?? []);
  const tbody = $("#service-table tbody");
  tbody.replaceChildren();
  for (const task of health.tasks ?? []) {
    const m = taskInfo(task);
    let status;
    let badge;
    if (m.installed === false) [status, badge] = ["not installed", "unavailable"];
    else if (m.weights === "random-init") [status, badge] = ["placeholder weights", "placeholder"];
    else [status, badge] = [m.loaded === false ? "loading" : "ready", "ready"];
    const span = document.querySelector(`[data-status-for="${task}"]`);
    if (span) {
      span.textContent = status;
      span.className = `badge ${badge}`;
    }
    const tr = tbody.insertRow();
    for (const value of [task, m.model, status, m.weights, m.device]) tr.insertCell().textContent = fmt(value);
  }
  $("#service-table").hidden = false;
  const placeholders = health.placeholders ?? [];
  $("#service-summary").textContent =
    `${health.ready ? "Ready" : "Starting"} on ${(health.devices ?? []).join(", ") || "no device yet"}` +
    (placeholders.length ? `. Random-init placeholders (meaningless outputs): ${placeholders.join(", ")}.` : ".");
  onTaskChange();
}

// ---------------------------------------------------------------- wiring

form.addEventListener("submit", run);
form.addEventListener("change", (event) => {
  if (event.target.name === "task") onTaskChange();
});
threshold.addEventListener("input", () => {
  $("#threshold-value").value = Number(threshold.value).toFixed(2);
});
fileInput.addEventListener("change", () => {
  if (fileInput.files[0]) useInput(fileInput.files[0]);
});
for (const button of document.querySelectorAll("[data-sample]")) {
  button.addEventListener("click", () => useSample(button.dataset.sample).catch((e) => showError(e.message)));
}
canvas.addEventListener("pointerdown", onPointerDown);
canvas.addEventListener("pointermove", onPointerMove);
canvas.addEventListener("pointerup", onPointerUp);
$("#sam2-clear").addEventListener("click", () => {
  clearPrompts();
  if (state.input?.bitmap) drawBase();
});
$("#depth-colours").addEventListener("change", () => {
  if (state.result?.depth_image) drawDepth(state.result);
});
$("#raw").addEventListener("toggle", () => {
  if ($("#raw").open) $("#raw-json").textContent = JSON.stringify(state.result, shorten, 2);
});

loadHealth().finally(() => {
  document.documentElement.dataset.ready = "true";
});
