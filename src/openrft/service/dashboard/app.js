// OpenRFT dashboard: a jobs list and a live job page, drawn from the /v1 API.
// The key comes from ?key= or the form and is kept in localStorage ("openrft.key").
"use strict";

const KEY_NAME = "openrft.key";
const view = document.getElementById("view");
const TERMINAL = ["succeeded", "failed", "cancelled"];
let timer = null;

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children.flat(Infinity)) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function apiKey() {
  const fromUrl = new URLSearchParams(location.search).get("key");
  if (fromUrl) {
    localStorage.setItem(KEY_NAME, fromUrl);
    history.replaceState(null, "", location.pathname + location.hash);  // keep it out of history
  }
  return localStorage.getItem(KEY_NAME) || "";
}

async function api(path) {
  const response = await fetch("/v1" + path, { headers: { Authorization: "Bearer " + apiKey() } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

const when = (seconds) => (seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) : "");
const fmt = (value) => (typeof value === "number" ? value.toFixed(3) : "");
const status = (s) => el("span", { class: "status " + s }, s);

function table(headers, rows) {
  return el("table", {}, el("tr", {}, headers.map((h) => el("th", {}, h))),
    rows.map((cells) => el("tr", {}, cells.map((c) =>
      typeof c === "number" ? el("td", { class: "num" }, fmt(c)) : el("td", {}, c)))));
}

// Training-health findings (rl/monitor.py): a badge per finding, coloured by severity.
const KIND_LABELS = {
  no_signal: "no signal", truncation: "truncation", length_drift: "length drift",
  entropy_collapse: "entropy collapse", kl_blowup: "KL / ratio blow-up", overfitting: "overfitting",
  grader_dominance: "grader dominance", grader_errors: "grader errors", reward_near_max: "reward near max",
};
const findingBadge = (f) => el("span", { class: "badge " + f.severity, title: f.message },
  `${KIND_LABELS[f.kind] || f.kind} · step ${f.step}`);

// Reward curves as inline SVG: train mean (every step) and validation mean (eval steps);
// a dashed marker at the step where each finding began.
function rewardChart(metrics, totalSteps, findings = []) {
  const W = 700, H = 260, L = 44, R = 130, T = 12, B = 36;
  const series = [["train", "train_reward_mean"], ["valid", "valid_reward_mean"]].map(([name, key]) => [
    name, metrics.filter((m) => m.scores && typeof m.scores[key] === "number")
      .map((m) => [m.step, m.scores[key]])]);
  const values = series.flatMap(([, pts]) => pts.map((p) => p[1]));
  const lo = Math.min(0, ...values), hi = Math.max(1, ...values);
  const maxStep = Math.max(1, totalSteps || 0, ...metrics.map((m) => m.step));
  const x = (s) => L + ((W - L - R) * s) / maxStep;
  const y = (v) => T + ((H - T - B) * (hi - v)) / (hi - lo || 1);
  const svg = el("svg:svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "reward curves" });
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e6eb" }),
      el("svg:text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11 }, v.toFixed(2)));
  }
  const every = Math.max(1, Math.ceil(maxStep / 10));
  for (let s = 0; s <= maxStep; s += every) {
    svg.append(el("svg:text", { x: x(s), y: H - B + 14, "text-anchor": "middle", "font-size": 11 }, s));
  }
  svg.append(el("svg:text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11 },
    `step (of ${maxStep})`));
  for (const f of findings) {
    svg.append(el("svg:line", { class: "finding " + f.severity, x1: x(f.step), x2: x(f.step), y1: T,
      y2: H - B, "stroke-dasharray": "4 3", "data-kind": f.kind }),
      el("svg:text", { class: "finding-label", x: x(f.step) + 3, y: T + 10, "font-size": 10 },
        KIND_LABELS[f.kind] || f.kind));
  }
  series.forEach(([name, pts], i) => {
    const d = pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    svg.append(el("svg:polyline", { class: name, points: d, fill: "none", "stroke-width": 2 }));
    pts.forEach((p) => svg.append(el("svg:circle", { class: name, cx: x(p[0]), cy: y(p[1]), r: 3,
      fill: "#fff", "stroke-width": 2 })));
    svg.append(el("svg:line", { class: name, x1: W - R + 12, x2: W - R + 32, y1: T + 10 + i * 18,
      y2: T + 10 + i * 18, "stroke-width": 3 }),
      el("svg:text", { x: W - R + 38, y: T + 14 + i * 18, "font-size": 12 }, name + " reward"));
  });
  return svg;
}

async function showJobs() {
  const page = await api("/fine_tuning/jobs?limit=100");
  view.replaceChildren(el("h1", {}, "Fine-tuning jobs"),
    page.data.length === 0 ? el("p", { class: "muted" }, "No jobs yet.") :
      table(["Job", "Model", "Status", "Created", "Fine-tuned model"], page.data.map((j) => [
        el("a", { href: "#/jobs/" + j.id }, j.id), j.model, status(j.status), when(j.created_at),
        j.fine_tuned_model || ""])));
}

// A multi-turn episode: every model turn, its tool calls and the tools' outputs.
function episodeText(s) {
  const turns = s.episode.map((m) => m.role === "tool" ? `[tool ${m.name}] ${m.content}`
    : `[model] ${m.content}`);
  if (s.discard_reason) turns.push(`[discarded] ${s.discard_reason}`);
  return turns.join("\n");
}

async function showJob(id) {
  const [job, events, checkpoints, metrics] = await Promise.all([
    api(`/fine_tuning/jobs/${id}`), api(`/fine_tuning/jobs/${id}/events?limit=200`),
    api(`/fine_tuning/jobs/${id}/checkpoints?limit=100`), api(`/fine_tuning/jobs/${id}/metrics`)]);
  const samples = metrics.samples;
  const findings = metrics.findings || [];
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← all jobs")),
    el("h1", {}, "Job ", id),
    el("dl", { class: "summary" }, [
      ["Status", status(job.status)], ["Model", job.model], ["Method", job.method ? job.method.type : ""],
      ["Fine-tuned model", job.fine_tuned_model || "—"], ["Created", when(job.created_at)],
      ["Finished", when(job.finished_at) || "—"],
      ...(job.error ? [["Error", el("span", { class: "error" }, job.error.message)]] : []),
      ["Health", findings.length ? el("span", { class: "badges" }, findings.map(findingBadge))
        : el("span", { class: "muted" }, metrics.metrics.length ? "no findings" : "—")],
    ].map(([label, value]) => [el("dt", {}, label), el("dd", {}, value)])),
    el("h2", {}, "Reward"), metrics.metrics.length
      ? rewardChart(metrics.metrics, metrics.total_steps, findings)
      : el("p", { class: "muted" }, "No steps yet."),
    ...(findings.length ? [el("h2", {}, "Training health"),
      table(["Began at step", "Finding", "What happens and what to change"], findings.map((f) =>
        [String(f.step), findingBadge(f), f.message]))] : []),
    el("h2", {}, "Checkpoints"),
    table(["Step", "Checkpoint model", "Created"], checkpoints.data.map((c) =>
      [String(c.step_number), c.fine_tuned_model_checkpoint, when(c.created_at)])),
    el("h2", {}, "Samples", samples ? ` (step ${samples.step})` : ""),
    samples ? table(["Prompt", "Output", "Score"], samples.data.map((s) => [
      el("pre", { class: "sample" }, (s.prompt || []).map((m) => m.content).join("\n")),
      el("pre", { class: "sample" }, s.episode ? episodeText(s) : s.output_text), s.score]))
      : el("p", { class: "muted" }, "None yet."),
    el("h2", {}, "Events"),
    table(["Time", "Level", "Message"], events.data.map((e) => [when(e.created_at), e.level, e.message])));
  if (!TERMINAL.includes(job.status)) timer = setTimeout(route, 2000);  // live while it runs
}

async function route() {
  clearTimeout(timer);
  if (!apiKey()) {
    view.replaceChildren(el("p", {}, "Enter an API key (openrft keys create --project NAME) above."));
    return;
  }
  const match = location.hash.match(/^#\/jobs\/([\w-]+)$/);
  try {
    await (match ? showJob(match[1]) : showJobs());
  } catch (error) {
    view.replaceChildren(el("p", { class: "error" }, "Error: " + error.message));
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY_NAME, document.getElementById("api-key").value.trim());
  route();
});
window.addEventListener("hashchange", route);
route();
