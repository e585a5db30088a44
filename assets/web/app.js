// The reins web view. It reads only the JSON API documented in docs/web.md and stays live
// through its server-sent event streams; on every reconnect it reads the whole state again.
"use strict";

const main = document.getElementById("main");
const conn = document.getElementById("conn");
let info = { read_only: true };
let stopPage = () => {};

// ---------- helpers ----------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
const svgNs = "http://www.w3.org/2000/svg";
function sv(tag, attrs) {
  const e = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
async function api(path, options) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
}
function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Reins-Request": "1" },
    body: JSON.stringify(body || {}),
  });
}
function toast(text, bad) {
  const t = el("div", { class: "toast" + (bad ? " bad" : ""), role: "status", text });
  document.body.append(t);
  setTimeout(() => t.remove(), bad ? 8000 : 4000);
}
function badge(status) {
  return el("span", { class: `badge s-${status}`, "data-status": status, text: status });
}
function duration(ms) {
  if (ms === null || ms === undefined) return "";
  const s = ms / 1000;
  if (s < 1) return `${Math.round(ms)}ms`;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}
function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  const ago = (Date.now() - d.getTime()) / 1000;
  if (ago < 60) return "just now";
  if (ago < 3600) return `${Math.floor(ago / 60)} min ago`;
  if (ago < 86400) return `${Math.floor(ago / 3600)} h ago`;
  return d.toISOString().slice(0, 16).replace("T", " ");
}
function cost(usd) { return usd ? `$${usd.toFixed(4)}` : "–"; }
function size(n) { return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`; }

// A server-sent event stream that says whether it is connected and reads everything again
// after a reconnect (the browser reconnects by itself and sends Last-Event-ID).
function stream(url, handlers, onReconnect) {
  let closed = false;
  let source = null;
  let dropped = false;
  function open() {
    source = new EventSource(url);
    source.onopen = () => {
      conn.dataset.state = "live"; conn.textContent = "live";
      if (dropped) { dropped = false; onReconnect(); }
    };
    source.onerror = () => {
      dropped = true;
      const gone = source.readyState === EventSource.CLOSED;
      conn.dataset.state = gone ? "offline" : "connecting";
      conn.textContent = conn.dataset.state;
      // The browser gave up (an error answer): open it again in a moment.
      if (gone) setTimeout(() => { if (!closed) open(); }, 1000);
    };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => fn(JSON.parse(e.data), e));
    }
  }
  open();
  return { close() { closed = true; source.close(); } };
}

// Runs `fn` now, or once more after the run in flight ends: never two at once.
function coalesce(fn) {
  let running = false, again = false;
  return async function go() {
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch (e) { console.warn(e); }
    running = false;
    if (again) { again = false; go(); }
  };
}

// ---------- routing ----------
function route() {
  stopPage();
  stopPage = () => {};
  main.replaceChildren();
  const m = location.pathname.match(/^\/runs\/([^/]+)$/);
  if (m) runPage(decodeURIComponent(m[1]));
  else listPage();
}
function go(path) { history.pushState(null, "", path); route(); }
window.addEventListener("popstate", route);
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (a && !e.metaKey && !e.ctrlKey && e.button === 0) { e.preventDefault(); go(a.getAttribute("href")); }
});

// ---------- run list ----------
function listPage() {
  document.title = "reins · runs";
  const params = new URLSearchParams(location.search);
  const filter = { status: params.get("status") || "", workflow: params.get("workflow") || "" };
  const counts = el("div", { class: "chips", "data-testid": "counts" });
  const wfSelect = el("select", { "aria-label": "workflow", "data-testid": "workflow-filter" });
  const body = el("tbody");
  const table = el("table", { class: "runs", "data-testid": "runs" },
    el("thead", {}, el("tr", {}, ["Status", "Run", "Workflow", "Branch", "Started", "Duration", "Cost", "Nodes"].map((h) => el("th", { text: h })))),
    body);
  const total = el("span", { class: "muted" });
  main.append(el("h1", { text: "Runs" }), el("div", { class: "toolbar" }, counts, wfSelect, total), table);
  wfSelect.addEventListener("change", () => { filter.workflow = wfSelect.value; sync(); load(); });

  function sync() {
    const q = new URLSearchParams();
    if (filter.status) q.set("status", filter.status);
    if (filter.workflow) q.set("workflow", filter.workflow);
    history.replaceState(null, "", "/" + (q.toString() ? "?" + q : ""));
  }
  const load = coalesce(async () => {
    const q = new URLSearchParams(filter);
    const data = await api("/api/runs?" + q);
    render(data);
  });
  function render(data) {
    counts.replaceChildren(
      el("button", { class: "chip", "aria-pressed": String(!filter.status), onclick: () => { filter.status = ""; sync(); load(); } }, "all", el("b", { text: data.total })),
      ...["waiting", "running", "failed", "interrupted", "cancelled", "success"].filter((s) => data.counts[s]).map((s) =>
        el("button", { class: "chip", "data-count": s, "aria-pressed": String(filter.status === s), onclick: () => { filter.status = filter.status === s ? "" : s; sync(); load(); } },
          badge(s), el("b", { text: data.counts[s] }))));
    const current = filter.workflow;
    wfSelect.replaceChildren(el("option", { value: "", text: "all workflows" }),
      ...data.workflows.map((w) => el("option", { value: w, text: w, selected: w === current })));
    total.textContent = `${data.runs.length} shown`;
    if (!data.runs.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "empty", text: data.total ? "no run matches the filters" : "no runs yet: start one with `reins run WORKFLOW`" })));
      return;
    }
    body.replaceChildren(...data.runs.map((r) => {
      const nodes = Object.entries(r.nodes || {}).map(([s, n]) => `${n} ${s}`).join(", ");
      return el("tr", { class: r.waiting_gates.length ? "waiting" : "", "data-run": r.id, "data-status": r.status },
        el("td", {}, badge(r.status), r.waiting_gates.length ? el("span", { class: "gate-tag", text: "  ◆ " + r.waiting_gates.join(", ") }) : null),
        el("td", { class: "mono" }, el("a", { href: `/runs/${r.id}`, "data-nav": true, text: r.id })),
        el("td", { text: r.workflow }),
        el("td", { class: "mono muted", text: r.branch || "" }),
        el("td", { title: r.started_at || "", text: when(r.started_at) }),
        el("td", { class: "num", text: duration(r.duration_ms) }),
        el("td", { class: "num", text: cost(r.cost_usd) }),
        el("td", { class: "muted", text: nodes }));
    }));
  }
  const s = stream("/api/events", { run: () => load(), reload: () => load() }, load);
  // Durations of running runs grow without events.
  const tick = setInterval(load, 5000);
  stopPage = () => { s.close(); clearInterval(tick); };
  load();
}

// ---------- run page ----------
function runPage(id) {
  document.title = `reins · ${id}`;
  let data = null;
  let selected = new URLSearchParams(location.search).get("node");
  let nodePanel = null;
  const head = el("div", { class: "run-head" });
  const gatesBox = el("div", { class: "gates", "data-testid": "gates" });
  const dag = el("div", { class: "dag card", "data-testid": "dag" });
  const panel = el("div", { class: "panel card", "data-testid": "node-panel" }, el("p", { class: "muted", text: "Select a node to see its prompt, transcript and logs." }));
  const timeline = el("div", { class: "timeline", "data-testid": "timeline" });
  const artifacts = el("div", { "data-testid": "artifacts" });
  const viewer = el("div", { "data-testid": "artifact-view" });
  main.append(
    el("p", {}, el("a", { href: "/", "data-nav": true, text: "← all runs" })),
    head, gatesBox,
    el("div", { class: "layout" },
      el("div", {}, dag, el("div", { class: "card" }, el("h2", { text: "Artifacts" }), artifacts, viewer), el("div", { class: "card" }, el("h2", { text: "Timeline" }), timeline)),
      panel));

  const load = coalesce(async () => {
    try {
      data = await api(`/api/runs/${encodeURIComponent(id)}`);
    } catch (e) {
      head.replaceChildren(el("h1", { text: `Run ${id}` }), el("span", { class: "error-text", text: e.message }));
      return;
    }
    renderHead(); renderGates(); renderDag();
    if (selected && nodePanel) nodePanel.refresh();
    else if (selected) openNode(selected);
    loadArtifacts();
  });

  let resumeFrom = null;
  function renderHead() {
    const r = data.run;
    const acts = el("div", { class: "actions" });
    if (data.actions.cancel) acts.append(el("button", { class: "danger", "data-action": "cancel", onclick: (e) => act(e.target, "cancel") }, "Cancel run"));
    if (data.actions.resume) acts.append(el("button", { "data-action": "resume", onclick: (e) => act(e.target, "resume") }, "Resume"));
    if (data.actions.resume_from) {
      // Live refreshes rebuild the head: keep the node the user picked.
      const pick = el("select", { "aria-label": "resume from node", onchange: (e) => { resumeFrom = e.target.value; } },
        data.graph.map((n) => el("option", { value: n.id, text: n.id, selected: n.id === resumeFrom })));
      acts.append(pick, el("button", { "data-action": "resume-from", onclick: (e) => act(e.target, "resume", { from: pick.value }) }, "Resume from node"));
    }
    if (info.read_only) acts.append(el("span", { class: "muted", text: "read-only" }));
    head.replaceChildren(
      el("h1", { class: "mono", text: r.id }), badge(data.status),
      el("span", { class: "facts" }, `${r.workflow} · started ${when(r.started_at)} · ${duration(r.duration_ms)} · ${cost(r.cost_usd)}`,
        r.branch ? ` · ${r.branch}` : "", data.owner_pid ? ` · pid ${data.owner_pid}` : "",
        r.parent ? [" · child of ", el("a", { href: `/runs/${r.parent.run_id}`, "data-nav": true, "data-testid": "parent-run", class: "mono", text: `${r.parent.run_id} (${r.parent.node})` })] : ""),
      acts);
    if (data.state.error) head.append(el("div", { class: "error-text", text: data.state.error }));
  }

  async function act(button, what, body) {
    button.disabled = true;
    try {
      const res = await post(`/api/runs/${encodeURIComponent(id)}/${what}`, body);
      toast(res.message || "done");
    } catch (e) { toast(e.message, true); }
    button.disabled = false;
    load();
  }

  function renderGates() {
    const open = data.gates.filter((g) => g.waiting);
    const answered = data.gates.filter((g) => g.answer);
    gatesBox.replaceChildren(...open.map(gateForm), ...answered.map(gateAnswer));
  }
  function gateAnswer(g) {
    const a = g.answer;
    return el("div", { class: "gate", "data-gate": g.node, "data-answered": a.approved ? "approved" : "rejected" },
      el("div", { class: "answered" }, `${a.approved ? "✓ approved" : "✗ rejected"} ${g.node} by ${a.by}`, a.comment ? `: ${a.comment}` : ""));
  }
  function gateForm(g) {
    const question = el("div", { class: "question markdown" });
    question.innerHTML = g.message_html; // rendered by the server with raw HTML escaped
    const comment = el("textarea", { placeholder: "comment (optional to approve, required to reject)", "aria-label": "comment", "data-testid": "gate-comment" });
    const approve = el("button", { class: "primary", "data-action": "approve" }, "Approve");
    const reject = el("button", { class: "danger", "data-action": "reject" }, "Reject");
    const problem = el("div", { class: "error-text" });
    const send = async (ok) => {
      if (!ok && !comment.value.trim()) { problem.textContent = "a rejection needs a reason"; comment.focus(); return; }
      approve.disabled = reject.disabled = true;
      try {
        const body = ok ? { comment: comment.value } : { reason: comment.value };
        const res = await post(`/api/runs/${encodeURIComponent(id)}/gates/${encodeURIComponent(g.node)}/${ok ? "approve" : "reject"}`, body);
        toast(res.message + (res.continued ? "\nthe run continues" : ""));
      } catch (e) { problem.textContent = e.message; approve.disabled = reject.disabled = false; }
      load();
    };
    approve.addEventListener("click", () => send(true));
    reject.addEventListener("click", () => send(false));
    const controls = data.actions.answer
      ? [comment, el("div", { class: "row" }, approve, reject), problem]
      : [el("p", { class: "muted", text: "read-only: answer with `reins approve` in a terminal" })];
    return el("div", { class: "gate", "data-gate": g.node, "data-waiting": "true" },
      el("h3", {}, `◆ ${g.node} waits for you`),
      question,
      g.deadline ? el("div", { class: "muted", text: `times out at ${g.deadline}` }) : null,
      ...controls);
  }

  function renderDag() {
    const states = new Map(data.state.nodes.map((n) => [n.id, n]));
    const base = fanOutOf(selected) || selected;
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "TB", nodesep: 28, ranksep: 46, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(() => ({}));
    const subs = new Map(data.graph.map((n) => [n.id, nodeSub(n, states.get(n.id) || { status: "pending", iterations: [] })]));
    for (const n of data.graph) {
      const label = n.id + (n.instances ? ` ×${n.instances.length}` : "");
      const sub = subs.get(n.id).map((p) => p.text).join("");
      g.setNode(n.id, { label, width: Math.max(120, 46 + 7.6 * label.length, 46 + 6.6 * sub.length), height: 44 });
    }
    for (const n of data.graph) for (const d of n.depends_on) if (g.hasNode(d)) g.setEdge(d, n.id);
    dagre.layout(g);
    const { width, height } = g.graph();
    const svg = sv("svg", { width: Math.ceil(width), height: Math.ceil(height), viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`, role: "img", "aria-label": "workflow graph" });
    const defs = sv("defs");
    const marker = sv("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.append(sv("path", { d: "M0,0 L10,5 L0,10 z" }));
    defs.append(marker); svg.append(defs);
    for (const e of g.edges()) {
      const pts = g.edge(e).points;
      svg.append(sv("path", { class: "edge", d: "M" + pts.map((p) => `${p.x},${p.y}`).join(" L"), "marker-end": "url(#arrow)" }));
    }
    for (const n of data.graph) {
      const pos = g.node(n.id);
      const st = states.get(n.id) || { status: "pending", iterations: [] };
      const grp = sv("g", { class: "node" + (n.id === base ? " selected" : ""), "data-node": n.id, "data-status": st.status, "data-kind": n.kind, transform: `translate(${pos.x - pos.width / 2},${pos.y - pos.height / 2})`, tabindex: 0 });
      if (n.for_each) grp.setAttribute("data-fan-out", n.instances ? n.instances.length : "");
      grp.append(sv("rect", { width: pos.width, height: pos.height }));
      const glyph = { bash: "$", prompt: "✦", command: "✦", approval: "◆", loop: "↻" }[n.kind] || "•";
      const gl = sv("text", { x: 10, y: 27, class: "glyph" }); gl.textContent = n.for_each ? "⋔" : glyph; grp.append(gl);
      const label = sv("text", { x: 28, y: 20 }); label.textContent = pos.label; grp.append(label);
      const subt = sv("text", { x: 28, y: 35, class: "sub", "data-testid": "node-sub" });
      for (const part of subs.get(n.id)) {
        const t = sv("tspan", part.status ? { class: `c-${part.status}`, "data-count": part.status } : {});
        t.textContent = part.text; subt.append(t);
      }
      grp.append(subt);
      const tip = sv("title"); tip.textContent = `${n.id} (${n.kind}${n.body ? " of " + n.body : ""}${n.for_each ? ", for each of " + n.for_each : ""}): ${st.status}`; grp.append(tip);
      grp.addEventListener("click", () => openNode(n.id));
      grp.addEventListener("keydown", (e) => { if (e.key === "Enter") openNode(n.id); });
      svg.append(grp);
    }
    const legend = el("div", { class: "legend" }, "$ bash · ✦ agent · ◆ gate · ↻ loop · ⋔ fan-out");
    dag.replaceChildren(svg, legend);
  }

  function openNode(node) {
    selected = node;
    const q = new URLSearchParams(location.search); q.set("node", node);
    history.replaceState(null, "", `${location.pathname}?${q}`);
    const base = fanOutOf(node) || node;
    dag.querySelectorAll(".node").forEach((g) => g.classList.toggle("selected", g.dataset.node === base));
    if (nodePanel) nodePanel.stop();
    nodePanel = nodeView(id, node, panel, openNode);
  }

  const loadArtifacts = coalesce(async () => {
    const res = await api(`/api/runs/${encodeURIComponent(id)}/artifacts`);
    if (!res.files.length) { artifacts.replaceChildren(el("p", { class: "muted", text: "no artifacts yet" })); return; }
    artifacts.replaceChildren(el("ul", { class: "files" }, res.files.map((f) =>
      el("li", {}, el("a", { href: "#", "data-artifact": f.path, onclick: (e) => { e.preventDefault(); showArtifact(f.path); } }, f.path), el("span", { class: "size", text: size(f.size) })))));
  });
  async function showArtifact(path) {
    const url = `/api/runs/${encodeURIComponent(id)}/artifacts/${path.split("/").map(encodeURIComponent).join("/")}`;
    try {
      const a = await api(url);
      let body;
      if (a.kind === "markdown") { body = el("div", { class: "markdown" }); body.innerHTML = a.html; }
      else if (a.kind === "text") body = el("pre", { class: "box light", text: a.text });
      else body = el("p", { class: "muted", text: "binary file" });
      viewer.replaceChildren(el("h2", { class: "mono" }, a.path, " ", el("a", { href: url + "?download=1", text: "download" })), body,
        a.truncated ? el("p", { class: "muted", text: "(first MiB shown)" }) : null);
    } catch (e) { viewer.replaceChildren(el("p", { class: "error-text", text: e.message })); }
  }

  function addRecord(r) {
    const t = (r.ts || "").slice(11, 23);
    const detail = r.error || r.reason || r.message || (r.by ? `${r.approved ? "approved" : "rejected"} by ${r.by}${r.comment ? ": " + r.comment : ""}` : "") || (r.status || "");
    timeline.prepend(el("div", { "data-seq": r.seq }, el("span", { class: "t", text: t }), el("span", { class: "ty", text: r.type }), r.node ? el("span", { class: "mono", text: r.node + " " }) : null, el("span", { class: "muted", text: String(detail).slice(0, 200) })));
    while (timeline.childElementCount > 300) timeline.lastElementChild.remove();
  }
  let timelineSeq = 0;
  const s = stream(`/api/runs/${encodeURIComponent(id)}/events`, {
    record: (r) => { if (r.seq > timelineSeq) { timelineSeq = r.seq; addRecord(r); } load(); },
    status: () => load(),
  }, load);
  stopPage = () => { s.close(); if (nodePanel) nodePanel.stop(); };
  load();
}

// The fan-out `ID` of an instance id `ID[KEY]`, else null.
function fanOutOf(id) {
  const m = id && id.match(/^([^[\]]+)\[(.+)\]$/);
  return m ? m[1] : null;
}

// The text under a node in the DAG, in parts (a part with a status is coloured): its status,
// or for an expanded fan-out its instances counted by status, like `9 ✓ 2 running 1 ✗`.
const countOrder = ["success", "running", "waiting", "pending", "skipped", "cancelled", "failed"];
const countMark = { success: "✓", failed: "✗" };
function nodeSub(n, st) {
  if (n.instances) {
    if (!n.instances.length) return [{ text: `no items · ${st.status}` }];
    const counts = {};
    for (const i of n.instances) counts[i.status] = (counts[i.status] || 0) + 1;
    const parts = [];
    for (const s of countOrder.filter((s) => counts[s])) {
      if (parts.length) parts.push({ text: " " });
      parts.push({ status: s, text: `${counts[s]} ${countMark[s] || s}` });
    }
    return parts;
  }
  let sub = st.status;
  if (n.for_each) sub += " · for each";
  if (n.kind === "loop") sub += ` · ${(st.iterations || []).length}/${n.max_iterations}`;
  if (st.attempt > 1) sub += ` · try ${st.attempt}`;
  return [{ text: sub }];
}

// ---------- node panel ----------
// The most instances a fan-out's panel lists (a fan-out may have 10,000).
const maxRows = 1000;
function nodeView(runId, nodeId, panel, open) {
  let stopped = false;
  const offsets = new Map();
  const logs = new Map();
  let timer = null;
  const base = `/api/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(nodeId)}`;
  const refresh = coalesce(async () => {
    if (stopped) return;
    let n;
    try { n = await api(base); } catch (e) { panel.replaceChildren(el("p", { class: "error-text", text: e.message })); return; }
    if (stopped) return;
    render(n);
    await pollLogs(n);
    clearTimeout(timer);
    if (n.state.status === "running") timer = setTimeout(refresh, n.node.instances ? 1500 : 700);
  });
  async function pollLogs(n) {
    for (const f of n.files.filter((f) => f.path.endsWith(".log"))) {
      const off = offsets.get(f.path) || 0;
      if (off >= f.size && logs.has(f.path)) continue;
      try {
        const res = await api(`${base}/logs?file=${encodeURIComponent(f.path)}&offset=${off}`);
        offsets.set(f.path, res.chunk.next_offset);
        logs.set(f.path, (logs.get(f.path) || "") + res.chunk.text);
      } catch (_) { /* gone */ }
    }
    for (const [path, text] of logs) {
      const box = panel.querySelector(`pre[data-log="${CSS.escape(path)}"]`);
      if (box) { const end = box.scrollTop + box.clientHeight >= box.scrollHeight - 4; box.textContent = text; if (end) box.scrollTop = box.scrollHeight; }
    }
  }
  function render(n) {
    const st = n.state;
    const u = st.usage || {};
    const facts = el("dl", {},
      el("dt", { text: "kind" }), el("dd", { text: n.node.kind + (n.node.body ? ` of ${n.node.body}` : "") }),
      el("dt", { text: "status" }), el("dd", {}, badge(st.status)),
      el("dt", { text: "attempts" }), el("dd", { text: String(st.attempt || 0) }),
      el("dt", { text: "duration" }), el("dd", { text: duration(n.elapsed_ms) || "–" }),
      u.turns ? [el("dt", { text: "usage" }), el("dd", { text: `${cost(u.cost_usd)} · ${u.turns} turns · ${u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens} in / ${u.output_tokens} out tokens` })] : null,
      st.child_run ? [el("dt", { text: "child run" }), el("dd", {}, el("a", { href: `/runs/${st.child_run}`, "data-nav": true, "data-testid": "child-run", class: "mono", text: st.child_run }))] : null,
      st.skip_reason ? [el("dt", { text: "skipped" }), el("dd", { text: st.skip_reason })] : null,
      st.error ? [el("dt", { text: "failure" }), el("dd", { class: "error-text", "data-testid": "failure", text: st.error })] : null,
      st.iterations && st.iterations.length ? [el("dt", { text: "iterations" }), el("dd", { text: st.iterations.map((i) => `${i.iteration}: ${i.status}`).join(", ") })] : null);
    const parts = [el("h2", { class: "mono", text: nodeId }), facts];
    if (n.node.instance_of) {
      facts.append(el("dt", { text: "instance of" }), el("dd", {},
        el("a", { href: "#", class: "mono", "data-testid": "fan-out-link", onclick: (e) => { e.preventDefault(); open(n.node.instance_of); } }, n.node.instance_of),
        n.item ? ` · item ${n.item.index}, key ${n.item.key}` : ""));
      if (n.item) parts.push(el("h2", { text: "Item" }), el("pre", { class: "box light", "data-testid": "item", text: typeof n.item.value === "string" ? n.item.value : JSON.stringify(n.item.value, null, 2) }));
    }
    if (n.node.for_each) {
      facts.append(el("dt", { text: "for each" }), el("dd", { class: "mono", text: n.node.for_each }));
      parts.push(el("h2", { text: n.node.instances ? `Instances (${n.node.instances.length})` : "Instances" }));
      if (!n.node.instances) parts.push(el("p", { class: "muted", text: "not expanded yet: the items are listed once the fan-out's dependencies settle" }));
      else if (!n.node.instances.length) parts.push(el("p", { class: "muted", text: "no items" }));
      else parts.push(el("table", { class: "instances", "data-testid": "instances" },
        el("thead", {}, el("tr", {}, ["Key", "Item", "Status", "Duration"].map((h) => el("th", { text: h })))),
        el("tbody", {}, n.node.instances.slice(0, maxRows).map((i) => el("tr", { "data-instance": i.id, "data-status": i.status, tabindex: 0,
          onclick: () => open(i.id), onkeydown: (e) => { if (e.key === "Enter") open(i.id); } },
          el("td", { class: "mono" }, el("a", { href: "#", onclick: (e) => e.preventDefault(), text: i.key })),
          el("td", { class: "item", title: i.item, text: i.item }),
          el("td", {}, badge(i.status)),
          el("td", { class: "num", text: duration(i.duration_ms) }))))));
      if (n.node.instances.length > maxRows) parts.push(el("p", { class: "muted", text: `the first ${maxRows} of ${n.node.instances.length} shown; open any instance by its id with ?node=ID[KEY]` }));
    }
    if (n.gate) {
      parts.push(el("h2", { text: "Question" }));
      const q = el("div", { class: "markdown" }); q.innerHTML = n.gate.message_html; parts.push(q);
    }
    const what = n.prompt ?? n.command ?? n.node.source;
    parts.push(el("h2", { text: n.prompt !== null && n.prompt !== undefined ? "Prompt (rendered)" : n.command ? "Command (rendered)" : "Source" }), el("pre", { class: "box light", "data-testid": "node-source", text: what }));
    if (n.transcript.length) {
      parts.push(el("h2", { text: "Transcript" }), el("div", { class: "transcript", "data-testid": "transcript" }, n.transcript.map((t) => {
        if (t.kind === "text") return el("div", { class: "text", text: t.text });
        if (t.kind === "tool") return el("details", { class: t.is_error ? "err" : "", "data-tool": t.name },
          el("summary", {}, t.summary, t.duration_ms != null ? el("span", { class: "dur", "data-duration-ms": t.duration_ms, text: ` · ${duration(t.duration_ms)}` }) : null,
            t.result === null ? " …" : t.is_error ? " ✗" : " ✓"),
          el("pre", { class: "box light", text: JSON.stringify(t.input, null, 2) }), t.result !== null ? el("pre", { class: "box light", text: t.result }) : null);
        return el("div", { class: "note", text: t.text });
      })));
    }
    for (const f of n.files.filter((f) => f.path.endsWith(".log"))) {
      parts.push(el("h2", { class: "mono", text: f.path }), el("pre", { class: "box", "data-log": f.path, text: logs.get(f.path) || "" }));
    }
    panel.replaceChildren(...parts);
  }
  refresh();
  return { refresh, stop() { stopped = true; clearTimeout(timer); } };
}

// ---------- start ----------
(async () => {
  try {
    info = await api("/api/info");
    document.getElementById("root").textContent = info.root;
    if (info.read_only) document.getElementById("mode").textContent = "read-only";
  } catch (e) { toast(e.message, true); }
  route();
})();
