// The Camera source: getUserMedia → JPEG frames → the live route (GET /stream, a WebSocket) → each answer drawn
// over the live picture (boxes, masks, keypoints, track ids, speeds), with the answered fps, the latency and the
// frames the server dropped. Which tasks can go live comes from /health (each task's "live"), never from here.
// At most two frames are in flight (one being answered, one waiting: the server's own slot), so the picture stays
// current and the server drops only what a slow task cannot keep up with.

const $ = (selector) => document.querySelector(selector);
const STREAM_URL = new URL("../stream", location.href);
const HEALTH_URL = new URL("../health", location.href);
const IN_FLIGHT = 2;
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"];

const live = { socket: null, stream: null, inFlight: 0, answers: [], drawn: 0, last: null, dropped: 0, sent: 0,
  health: null, running: false, depth: null };
window.liveCamera = live; // what the browser test reads

function selectedTask() {
  return document.querySelector("input[name=task]:checked")?.value;
}

function isLive(task) {
  return Boolean(live.health?.models?.[task]?.live);
}

function refreshButton() {
  const task = selectedTask();
  const ok = isLive(task);
  $("#camera-start").disabled = !ok || live.running;
  $("#camera-help").textContent = ok ? "Streams your camera to the live route." :
    "The selected task has no live mode (/health: live).";
}

function colourOf(id) {
  return PALETTE[Math.abs(Number(id ?? 0)) % PALETTE.length];
}

function socketUrl() {
  const url = new URL(STREAM_URL);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("task", selectedTask());
  const model = $("#model").value.trim();
  if (model) url.searchParams.set("model", model);
  url.searchParams.set("options", JSON.stringify({ threshold: Number($("#threshold").value) }));
  const key = $("#api-key").value.trim();
  if (key) url.searchParams.set("key", key); // browsers cannot set headers on a WebSocket
  return url;
}

function captureAndSend() {
  const video = $("#camera-video");
  if (!live.running || live.inFlight >= IN_FLIGHT || !video.videoWidth) return;
  const grab = document.createElement("canvas");
  grab.width = video.videoWidth;
  grab.height = video.videoHeight;
  grab.getContext("2d").drawImage(video, 0, 0);
  live.inFlight += 1;
  grab.toBlob((blob) => {
    if (!blob || live.socket?.readyState !== WebSocket.OPEN) {
      live.inFlight -= 1;
      return;
    }
    live.socket.send(blob);
    live.sent += 1;
  }, "image/jpeg", 0.8);
}

function drawItems(ctx, items) {
  for (const item of items) {
    const colour = colourOf(item.track_id);
    const [x1, y1, x2, y2] = item.bbox ?? [0, 0, 0, 0];
    if (Array.isArray(item.mask_polygon) && item.mask_polygon.length > 2) {
      ctx.beginPath();
      item.mask_polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
      ctx.globalAlpha = 0.35;
      ctx.fillStyle = colour;
      ctx.fill();
      ctx.globalAlpha = 1;
    }
    ctx.strokeStyle = colour;
    ctx.lineWidth = 3;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    for (const [x, y, conf] of item.keypoints ?? []) {
      if (conf < 0.5) continue;
      ctx.fillStyle = colour;
      ctx.fillRect(x - 3, y - 3, 6, 6);
    }
    let label = `${item.class_name ?? item.label ?? ""} #${item.track_id ?? "?"}`;
    if (typeof item.speed_mps_est === "number") label += ` ${item.speed_mps_est.toFixed(2)} m/s`;
    ctx.font = "bold 14px sans-serif";
    const width = ctx.measureText(label).width + 8;
    ctx.fillStyle = colour;
    ctx.fillRect(x1, Math.max(0, y1 - 18), width, 18);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x1 + 4, Math.max(14, y1 - 4));
    live.drawn += 1;
  }
}

function render() {
  if (!live.running) return;
  const video = $("#camera-video");
  const canvas = $("#camera-canvas");
  if (video.videoWidth) {
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(video, 0, 0);
    const result = live.last?.result;
    if (live.depth) {
      ctx.globalAlpha = 0.6;
      ctx.drawImage(live.depth, 0, 0, canvas.width, canvas.height);
      ctx.globalAlpha = 1;
    }
    if (Array.isArray(result)) drawItems(ctx, result);
    else if (Array.isArray(result?.tracks)) drawItems(ctx, result.tracks);
  }
  captureAndSend();
  requestAnimationFrame(render);
}

function showStats() {
  const now = performance.now();
  const recent = live.answers.filter((a) => now - a.at < 3000);
  const fps = recent.length > 1 ? (recent.length - 1) / ((recent.at(-1).at - recent[0].at) / 1000) : 0;
  const latency = recent.length ? recent.map((a) => a.latency_ms).sort((a, b) => a - b)[recent.length >> 1] : 0;
  $("#camera-stats").textContent =
    `${fps.toFixed(1)} fps · latency ${latency.toFixed(0)} ms (server) · dropped ${live.dropped} · sent ${live.sent}`;
  $("#camera-stats").dataset.fps = fps.toFixed(2);
}

function onMessage(event) {
  const message = JSON.parse(event.data);
  live.inFlight = Math.max(0, live.inFlight - 1);
  if (message.error !== undefined) {
    $("#camera-error").textContent = `frame ${message.frame}: ${message.error}`;
    return;
  }
  live.last = message;
  live.dropped = message.dropped;
  live.answers.push({ at: performance.now(), frame: message.frame, latency_ms: message.latency_ms,
    ids: (Array.isArray(message.result) ? message.result : message.result?.tracks ?? []).map((i) => i.track_id) });
  if (live.answers.length > 300) live.answers.shift();
  const png = message.result?.depth_image ?? message.result?.depth_colormap;
  if (typeof png === "string") {
    const image = new Image();
    image.onload = () => { live.depth = image; };
    image.src = png.startsWith("data:") ? png : `data:image/png;base64,${png}`;
  } else {
    live.depth = null;
  }
  showStats();
}

async function start() {
  $("#camera-error").textContent = "";
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    $("#camera-error").textContent = `No camera: ${error.message}`;
    return;
  }
  const video = $("#camera-video");
  video.srcObject = live.stream;
  await video.play();
  Object.assign(live, { inFlight: 0, answers: [], drawn: 0, last: null, dropped: 0, sent: 0, depth: null });
  live.socket = new WebSocket(socketUrl());
  live.socket.addEventListener("message", onMessage);
  live.socket.addEventListener("close", (event) => {
    if (live.running && event.code !== 1000) {
      $("#camera-error").textContent = `The stream closed (${event.code}) ${event.reason || "— see the server's answer"}`;
    }
    stop();
  });
  live.socket.addEventListener("open", () => {
    live.running = true;
    $("#camera-view").hidden = false;
    $("#camera-stop").hidden = false;
    refreshButton();
    requestAnimationFrame(render);
  });
}

function stop() {
  live.running = false;
  live.socket?.close(1000);
  live.socket = null;
  for (const track of live.stream?.getTracks() ?? []) track.stop();
  live.stream = null;
  $("#camera-stop").hidden = true;
  refreshButton();
}

async function init() {
  try {
    live.health = await (await fetch(HEALTH_URL)).json();
  } catch {
    return;
  }
  refreshButton();
}

$("#camera-start").addEventListener("click", start);
$("#camera-stop").addEventListener("click", stop);
document.addEventListener("change", (event) => {
  if (event.target.name === "task") refreshButton();
});
new MutationObserver(refreshButton).observe($("#tasks"), { childList: true }); // the task list, once built
init();
