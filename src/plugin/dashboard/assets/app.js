// The Sluice dashboard: renders the JSON views of this process, re-reading the current one when
// the server's event stream says something changed (no polling). Every text from the cluster is
// put in the page as text, never as markup.
"use strict";

const TOKEN = document.querySelector('meta[name="sluice-token"]').content;
const SCOPE = document.querySelector('meta[name="sluice-scope"]').content;
const main = document.getElementById("main");
let renderSeq = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "onclick") node.addEventListener("click", value);
    // Through the CSSOM: the page's CSP refuses style attributes.
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const badge = (text, testid) => el("span", { class: `badge ${text || "Unknown"}`, "data-testid": testid }, text || "Unknown");
const short = (sha) => (sha && /^[0-9a-f]{40}$/.test(sha) ? sha.slice(0, 8) : sha || "");
const seg = (s) => encodeURIComponent(s);
const kv = (pairs) => el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
  .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "apps" && parts.length === 3) return { page: "application", ns: parts[1], name: parts[2] };
  if (parts[0] === "rollouts" && parts.length === 3) return { page: "rollout", ns: parts[1], name: parts[2] };
  if (parts[0] === "events") return { page: "events" };
  return { page: "overview" };
}

// What the page shows now, so a change elsewhere in the namespace does not redraw it (a redraw
// would replace the button under the user's pointer).
let shown = "";

async function render() {
  const seq = ++renderSeq;
  const r = route();
  const pages = {
    application: [`/api/applications/${seg(r.ns)}/${seg(r.name)}`, applicationPage],
    rollout: [`/api/rollouts/${seg(r.ns)}/${seg(r.name)}`, rolloutPage],
    events: ["/api/events", eventsPage],
    overview: ["/api/overview", overviewPage],
  };
  const [path, page] = pages[r.page];
  let key, build;
  try {
    const data = await getJson(path);
    key = path + JSON.stringify(data);
    build = () => page(data);
  } catch (e) {
    key = path + e.message;
    build = () => el("div", { class: "error-banner", "data-testid": "error" }, e.message);
  }
  if (seq !== renderSeq || key === shown) return;
  shown = key;
  const view = build();
  // Keep what the user is reading (an action's result) across a redraw.
  const result = document.getElementById("action-result");
  main.replaceChildren(view);
  const fresh = document.getElementById("action-result");
  if (result && fresh) { fresh.textContent = result.textContent; fresh.className = result.className; }
  document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
}

function overviewPage(data) {
  const banners = [
    ...Object.entries(data.errors || {}).map(([kind, message]) => el("div", { class: "error-banner" }, `${kind}: ${message}`)),
    ...(data.loading || []).map((kind) => el("div", { class: "muted" }, `loading ${kind}s…`)),
  ];
  const apps = el("table", { "data-testid": "applications" },
    el("tr", {}, ["Application", "Project", "Sync", "Health", "Revision", "Operation"].map((h) => el("th", {}, h))),
    data.applications.map((a) => el("tr", { "data-app": `${a.namespace}/${a.name}` },
      el("td", {}, el("a", { href: `#/apps/${seg(a.namespace)}/${seg(a.name)}` }, SCOPE ? a.name : `${a.namespace}/${a.name}`)),
      el("td", {}, a.project), el("td", {}, badge(a.sync)), el("td", {}, badge(a.health)),
      el("td", { class: "mono" }, short(a.revision)), el("td", {}, a.operation || ""))));
  const rollouts = el("table", { "data-testid": "rollouts" },
    el("tr", {}, ["Rollout", "Status", "Strategy", "Step", "Weight (set / actual)", "Images"].map((h) => el("th", {}, h))),
    data.rollouts.map((r) => el("tr", { "data-rollout": `${r.namespace}/${r.name}` },
      el("td", {}, el("a", { href: `#/rollouts/${seg(r.namespace)}/${seg(r.name)}` }, SCOPE ? r.name : `${r.namespace}/${r.name}`)),
      el("td", {}, badge(r.status)), el("td", {}, r.strategy), el("td", {}, r.step || ""),
      el("td", {}, r.strategy === "canary" ? `${r.setWeight} / ${r.actualWeight}` : ""),
      el("td", { class: "mono" }, (r.images || []).join(", ")))));
  return el("div", {}, banners, el("h1", {}, "Applications"), apps, el("h1", { style: "margin-top:24px" }, "Rollouts"), rollouts);
}

function treeNode(node) {
  const label = [el("span", { class: "muted" }, `${node.kind} `), node.name, " "];
  if (node.health) label.push(badge(node.health));
  if (node.status) label.push(" ", el("span", { class: "muted" }, node.status));
  if (node.message) label.push(" ", el("span", { class: "muted" }, `— ${node.message}`));
  const children = node.children && node.children.length ? el("ul", { class: "tree" }, node.children.map(treeNode)) : null;
  return el("li", { "data-kind": node.kind }, label, children);
}

function applicationPage(a) {
  const op = a.lastOperation;
  const revert = a.revert;
  return el("div", {},
    el("h1", {}, `Application ${a.namespace}/${a.name}`),
    el("div", { class: "card" }, kv([
      ["Sync", badge(a.sync, "app-sync")], ["Health", badge(a.health, "app-health")],
      ["Revision", el("span", { class: "mono", "data-testid": "app-revision" }, a.revision || "")],
      ["Source", `${a.repoURL} ${a.path || ""} @ ${a.targetRevision || "HEAD"}`], ["Project", a.project],
      ["Health message", a.healthMessage],
    ])),
    (a.conditions || []).map((c) => el("div", { class: "error-banner" }, `${c.type}: ${c.message}`)),
    el("h2", {}, "Resources"),
    el("div", { class: "card" }, el("ul", { class: "tree", "data-testid": "resource-tree" }, a.resources.map(treeNode))),
    el("h2", {}, "Last operation"),
    el("div", { class: "card", "data-testid": "last-operation" }, op ? kv([
      ["Phase", badge(op.phase)], ["Message", op.message], ["Revision", op.syncResult && op.syncResult.revision],
      ["Started", op.startedAt], ["Finished", op.finishedAt],
    ]) : el("span", { class: "muted" }, "none")),
    revert ? [el("h2", {}, "Revert in Git"), el("div", { class: "card", "data-testid": "revert" },
      kv([["Phase", badge(revert.phase)], ["Reverted commit", el("span", { class: "mono" }, revert.sha)],
        ["Revert commit", el("span", { class: "mono" }, revert.revertCommit || "not pushed yet")],
        ["Rollout", revert.rollout], ["AnalysisRun", revert.analysisRun], ["Message", revert.message]]),
      revert.commitMessage ? el("pre", { "data-testid": "revert-message" }, revert.commitMessage) : null)] : null,
    el("h2", {}, "Quarantined revisions"),
    el("div", { class: "card mono", "data-testid": "quarantined" },
      a.quarantined.length ? a.quarantined.map((q) => el("div", {}, q)) : el("span", { class: "muted" }, "none")),
    el("h2", {}, "History"),
    el("table", { "data-testid": "history" }, el("tr", {}, ["ID", "Revision", "Deployed"].map((h) => el("th", {}, h))),
      a.history.map((h) => el("tr", {}, el("td", {}, h.id), el("td", { class: "mono" }, h.revision), el("td", {}, h.deployedAt)))));
}

const ACTIONS = [
  ["promote", "Promote", "primary"], ["promote-full", "Promote full", ""], ["abort", "Abort", "danger"],
  ["abort-revert", "Abort and revert", "danger"], ["retry", "Retry", ""], ["pause", "Pause", ""],
  ["resume", "Resume", ""], ["restart", "Restart", ""],
];

function confirmThen(text, run) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  const close = () => { ok.onclick = null; cancel.onclick = null; dialog.close(); };
  ok.onclick = () => { close(); run(); };
  cancel.onclick = close;
  dialog.showModal();
}

async function runAction(r, action, label) {
  const result = document.getElementById("action-result");
  result.className = "";
  result.textContent = `${label}…`;
  try {
    const response = await fetch(`/api/rollouts/${seg(r.namespace)}/${seg(r.name)}/${action}`,
      { method: "POST", headers: { "X-Sluice-Dashboard-Token": TOKEN } });
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    const now = document.getElementById("action-result");
    if (response.ok) { now.textContent = body.message; now.className = "ok"; }
    else { now.textContent = body.error; now.className = "error"; }
  } catch (e) {
    const now = document.getElementById("action-result");
    now.textContent = e.message; now.className = "error";
  }
}

function rolloutPage(r) {
  const current = r.currentStepIndex;
  const steps = el("ol", { class: "steps", start: 0, "data-testid": "steps" }, (r.steps || []).map((text, i) =>
    el("li", { class: i === current && !r.aborted ? "current" : (current !== null && i < current ? "done" : ""),
      "data-testid": i === current && !r.aborted ? "step-current" : null, "data-index": i }, text)));
  const weights = r.strategy === "canary" ? el("div", { class: "card weights" },
    el("div", {}, el("div", { class: "muted" }, "Step"), el("div", { class: "big", "data-testid": "step" }, r.step)),
    el("div", {}, el("div", { class: "muted" }, "SetWeight"), el("div", { class: "big", "data-testid": "set-weight" }, r.setWeight)),
    el("div", {}, el("div", { class: "muted" }, "ActualWeight"), el("div", { class: "big", "data-testid": "actual-weight" }, r.actualWeight)),
    // The bar is the canary's share; with no canary revision (done, or aborted) there is none.
    el("div", { class: "bar", title: `canary ${r.actualWeight}%` }, el("span", { style:
      `width:${r.revisions.some((rev) => rev.roles.includes("canary")) ? Number(r.actualWeight) || 0 : 0}%` }))) : null;
  const actions = el("div", { class: "card actions" },
    ACTIONS.map(([action, label, cls]) => el("button", { type: "button", class: cls, "data-action": action,
      onclick: () => confirmThen(`${label} rollout ${r.namespace}/${r.name}?`, () => runAction(r, action, label)) }, label)),
    el("div", { id: "action-result", "data-testid": "action-result" }));
  return el("div", {},
    el("h1", {}, `Rollout ${r.namespace}/${r.name} `, badge(r.status, "rollout-status")),
    r.message ? el("p", { class: "muted", "data-testid": "rollout-message" }, r.message) : null,
    actions, weights,
    r.steps && r.steps.length ? [el("h2", {}, "Steps"), el("div", { class: "card" }, steps)] : null,
    r.revert ? el("div", { class: "card", "data-testid": "revert" }, kv([["Revert", badge(r.revert.phase)],
      ["Reverted commit", r.revert.sha], ["Revert commit", r.revert.revertCommit], ["Message", r.revert.message]])) : null,
    el("h2", {}, "Revisions"),
    r.revisions.map((rev) => el("div", { class: "card", "data-testid": "revision" },
      el("strong", {}, `revision ${rev.revision} `), rev.roles.map((role) => [badge(role), " "]),
      kv([["Images", rev.images.join(", ")], ["Commit", rev.gitRevision ? el("span", { class: "mono" }, rev.gitRevision) : null],
        ["Application", rev.application]]),
      el("ul", { class: "tree" }, rev.replicaSets.map((rs) => el("li", {}, el("span", { class: "muted" }, "ReplicaSet "), rs.name, " ",
        badge(rs.status), ` ${rs.ready}/${rs.desired}`,
        el("ul", { class: "tree" }, rs.pods.map((p) => el("li", {}, el("span", { class: "muted" }, "Pod "), p.name, " ", badge(p.status), ` ${p.ready}`)))))))),
    el("h2", {}, "Analysis"),
    r.analysisRuns.length ? r.analysisRuns.map(analysisRun) : el("div", { class: "muted" }, "no analysis runs"));
}

function analysisRun(run) {
  return el("div", { class: "card", "data-testid": "analysis-run", "data-name": run.name },
    el("strong", {}, run.name, " "), badge(run.phase), el("span", { class: "muted" }, ` ${run.type || ""} revision ${run.revision || ""}`),
    run.message ? el("p", { class: "muted" }, run.message) : null,
    el("div", { class: "charts" }, run.metrics.map(chart)));
}

// One point per measurement, left to right, against the thresholds of the metric's conditions.
function chart(metric) {
  const W = 420, H = 170, L = 44, R = 12, T = 22, B = 22;
  const values = metric.points.map((p) => p.value).filter((v) => typeof v === "number");
  const marks = metric.thresholds.map((t) => t.value);
  let lo = Math.min(...values, ...marks), hi = Math.max(...values, ...marks);
  if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 1; }
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.1; lo -= pad; hi += pad;
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const n = metric.points.length;
  const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : (W - L - R) * i / (n - 1));
  const fmt = (v) => Number(v.toPrecision(3)).toString();
  const lines = metric.thresholds.map((t) => [
    svg("line", { class: `threshold-${t.kind}`, x1: L, x2: W - R, y1: y(t.value), y2: y(t.value), "data-threshold": t.kind }),
    svg("text", { x: W - R, y: y(t.value) - 3, "text-anchor": "end" }, `${t.kind} ${t.op} ${fmt(t.value)}`)]);
  const withValues = metric.points.map((p, i) => [p, i]).filter(([p]) => typeof p.value === "number");
  const path = withValues.map(([p, i], k) => `${k ? "L" : "M"}${x(i)},${y(p.value)}`).join(" ");
  const points = metric.points.map((p, i) => svg("circle", {
    class: `point ${p.phase}${typeof p.value === "number" ? "" : " no-value"}`, r: 4, cx: x(i),
    cy: typeof p.value === "number" ? y(p.value) : H - B, "data-value": p.raw ?? "" },
    svg("title", {}, `${p.at || ""} ${p.phase}: ${p.raw ?? p.message ?? "no value"}`)));
  return el("div", { "data-testid": "metric", "data-metric": metric.name },
    el("div", {}, el("strong", {}, metric.name), " ", badge(metric.phase)),
    el("div", { class: "muted mono" }, [metric.successCondition && `success: ${metric.successCondition}`,
      metric.failureCondition && `failure: ${metric.failureCondition}`].filter(Boolean).join("  ")),
    svg("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, "data-testid": "chart" },
      svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }),
      svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }),
      svg("text", { x: L - 4, y: y(hi - pad) + 3, "text-anchor": "end" }, fmt(hi - pad)),
      svg("text", { x: L - 4, y: y(lo + pad) + 3, "text-anchor": "end" }, fmt(lo + pad)),
      lines, path ? svg("path", { class: "line", d: path }) : null, points),
    metric.message ? el("div", { class: "muted" }, metric.message) : null);
}

function eventsPage(data) {
  return el("div", {}, el("h1", {}, "Timeline"),
    el("table", { "data-testid": "timeline" },
      el("tr", {}, ["When", "Type", "Object", "Reason", "Message"].map((h) => el("th", {}, h))),
      data.events.map((e) => el("tr", {}, el("td", { class: "mono" }, e.at || ""), el("td", {}, e.type || ""),
        el("td", {}, linkTo(e)), el("td", {}, e.reason || ""), el("td", {}, e.message || "")))));
}

function linkTo(e) {
  const text = `${e.kind} ${e.namespace}/${e.name}`;
  if (e.kind === "Rollout") return el("a", { href: `#/rollouts/${seg(e.namespace)}/${seg(e.name)}` }, text);
  if (e.kind === "Application") return el("a", { href: `#/apps/${seg(e.namespace)}/${seg(e.name)}` }, text);
  return text;
}

function follow() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/stream");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  source.addEventListener("change", render);
}

document.getElementById("scope").textContent = SCOPE ? `namespace ${SCOPE}` : "all namespaces";
window.addEventListener("hashchange", render);
follow();
render();
