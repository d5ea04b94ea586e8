// The live page: polls /api/status and /api/events, and shows each camera's MJPEG stream.
// Plain DOM, no framework; text goes in with textContent only.
"use strict";

const STATUS_EVERY_MS = 1000;
const EVENTS_EVERY_MS = 2000;
const EVENTS_SHOWN = 20;
const cards = new Map(); // camera name -> its elements

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function ms(value) {
  return value === undefined || value === null ? "-" : `${value.toFixed(1)} ms`;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function stream(img, name) {
  // A new connection each time: after the daemon restarted, or dropped this viewer as stalled.
  img.src = `/api/cameras/${encodeURIComponent(name)}/live.mjpg?t=${Date.now()}`;
}

function cameraCard(name) {
  const card = make("article", "camera");
  card.dataset.camera = name;
  const view = make("div", "view");
  const img = make("img");
  img.alt = `live view of ${name}`;
  img.addEventListener("error", () => setTimeout(() => stream(img, name), 2000));
  view.append(img);
  const title = make("div", "title");
  const state = make("span", "state", "starting");
  title.append(make("span", "name", name), state);
  const numbers = make("dl", "numbers");
  const field = (label, cls) => {
    const div = make("div");
    const dd = make("dd", cls, "-");
    div.append(make("dt", "", label), dd);
    numbers.append(div);
    return dd;
  };
  const parts = {
    card, img, state,
    fps: field("fps", "fps"), frames: field("frames", "frames"),
    drops: field("dropped", "drops"), e2e: field("e2e p50/p99", "e2e"),
    detail: make("p", "detail"),
  };
  card.append(view, title, numbers, parts.detail);
  document.getElementById("cameras").append(card);
  stream(img, name);
  return parts;
}

function showStatus(s) {
  document.getElementById("device").textContent = s.device;
  const d = s.detector;
  document.getElementById("detector").textContent =
    `${d.model} (${d.backend}), ${d.instances} instance${d.instances === 1 ? "" : "s"}` +
    (d.threads ? ` x ${d.threads} thread${d.threads === 1 ? "" : "s"}` : "");
  document.getElementById("batch").textContent = `${s.batch_size_mean.toFixed(2)} of ${d.max_batch_size}`;
  const e2e = s.latency_ms || {};
  document.getElementById("latency").textContent =
    e2e.p50 === undefined ? "waiting for the first frame" : `p50 ${ms(e2e.p50)}, p99 ${ms(e2e.p99)}`;
  document.getElementById("events-total").textContent = String(s.events);
  document.getElementById("uptime").textContent = duration(s.uptime_s);
  const sinks = document.getElementById("sinks");
  sinks.replaceChildren(...s.sinks.map((sink) => {
    const state = { true: "connected", false: "disconnected", null: "not tried yet" }[sink.connected];
    const item = make("li", "sink", `${sink.sink}: ${state}, backlog ${sink.backlog ?? "?"}`);
    item.dataset.sink = sink.sink;
    item.dataset.connected = String(sink.connected);
    return item;
  }));
  for (const cam of s.cameras) {
    const parts = cards.get(cam.name) || cards.set(cam.name, cameraCard(cam.name)).get(cam.name);
    parts.state.textContent = cam.state;
    parts.state.dataset.state = cam.state;
    parts.card.dataset.state = cam.state;
    parts.fps.textContent = cam.state === "up" ? cam.fps.toFixed(1) : "-";
    parts.frames.textContent = String(cam.frames);
    parts.drops.textContent = String(cam.drops);
    parts.e2e.textContent = cam.e2e_ms ? `${ms(cam.e2e_ms.p50)} / ${ms(cam.e2e_ms.p99)}` : "-";
    parts.detail.textContent = cam.state === "up" ? "" : cam.detail;
  }
}

function showEvents(events) {
  const list = document.getElementById("events");
  list.replaceChildren(...events.slice().reverse().map((e) => {
    const item = make("li");
    item.dataset.camera = e.camera;
    item.dataset.seq = String(e.seq);
    const what = (e.detections || []).map((d) => `${d.label} ${d.score.toFixed(2)}`).join(", ");
    item.append(
      make("span", "when", new Date(e.ts).toLocaleTimeString()),
      make("span", "cam", `${e.camera} #${e.seq}`),
      make("span", "what", what),
    );
    return item;
  }));
}

async function poll(url, show, every) {
  try {
    const response = await fetch(url, { cache: "no-store" });
    if (response.ok) {
      show(await response.json());
      document.getElementById("connection").hidden = true;
    }
  } catch (_) {
    document.getElementById("connection").hidden = false;
  }
  setTimeout(() => poll(url, show, every), every);
}

poll("/api/status", showStatus, STATUS_EVERY_MS);
poll(`/api/events?limit=${EVENTS_SHOWN}`, showEvents, EVENTS_EVERY_MS);
