// mapscope dashboard: renders the agent's SSE streams (/api/v1/stream/stats once a second,
// /api/v1/stream/exec per event) and edits XDP rules through the token-guarded rule API.
// Plain browser JavaScript, no build step; every field is optional (families may be off and
// snapshots grow fields over time), so each panel renders what the snapshot has.
"use strict";

const HISTORY = 300; // points kept per chart: five minutes at one snapshot a second
const TAIL = 500; // exec rows kept
const ACTIONS = ["XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"];
const COLORS = ["#c0262d", "#e07b00", "#1c8a3c", "#2a62c9", "#7b3fb5"];

const $ = (id) => document.getElementById(id);
const fmt = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 }));
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells, numFrom = 1) {
  const tr = document.createElement("tr");
  cells.forEach((c, i) => tr.appendChild(c instanceof Node ? wrapTd(c) : el("td", c, i >= numFrom ? "num" : "")));
  return tr;
}
function wrapTd(node) {
  const td = document.createElement("td");
  td.appendChild(node);
  return td;
}
function fill(id, rows) {
  $(id).replaceChildren(...rows);
}

// ---- charts ----------------------------------------------------------------------------------
function chart(id, title, labels, width) {
  const series = [{}].concat(labels.map((l, i) => ({ label: l, stroke: COLORS[i % COLORS.length], width: 1.5 })));
  const data = [[]].concat(labels.map(() => []));
  const u = new uPlot({ title, width: width || 520, height: 200, series, axes: [{}, { size: 60 }] }, data, $(id));
  return { u, data };
}
function push(c, t, values) {
  c.data[0].push(t);
  values.forEach((v, i) => c.data[i + 1].push(v));
  if (c.data[0].length > HISTORY) c.data.forEach((s) => s.shift());
  c.u.setData(c.data);
}
const charts = {
  pps: chart("xdp-pps", "XDP packets/s per action", ACTIONS),
  mbit: chart("xdp-mbit", "XDP Mbit/s per action", ACTIONS),
  exec: chart("exec-chart", "execs/s", ["execs/s"]),
};

// ---- stats stream ----------------------------------------------------------------------------
let prev = null; // the previous stats snapshot, for rates

function rate(cur, old, dt) {
  if (old == null || cur == null || !(dt > 0)) return 0;
  return Math.max(0, (cur - old) / dt);
}

function renderStats(s) {
  const dt = prev ? s.time - prev.time : 0;
  $("uptime").textContent = formatUptime(s.uptime_s);
  renderHealth(s);
  renderXdp(s, dt);
  renderExecStats(s, dt);
  renderSyscalls(s, dt);
  renderMalloc(s, dt);
  prev = s;
}

function formatUptime(sec) {
  sec = Math.floor(sec || 0);
  const d = Math.floor(sec / 86400), h = Math.floor((sec % 86400) / 3600), m = Math.floor((sec % 3600) / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (sec % 60) + "s";
}

function renderHealth(s) {
  const rows = [];
  const lostCell = (n) => el("td", fmt(n), n > 0 ? "num bad" : "num good");
  for (const fam of ["xdp", "exec", "syscalls", "malloc"]) {
    const f = s[fam];
    const state = f == null ? "off" : f.error ? "error: " + f.error : "on";
    const tr = row([fam, state], 9);
    if (f && f.error) tr.children[1].className = "bad";
    const lost = f && typeof f.lost === "number" ? f.lost : f && f.lost_events;
    tr.appendChild(f && lost != null ? lostCell(lost) : el("td", f ? "0" : "–", "num muted"));
    tr.children[2].title = "events lost";
    rows.push(tr);
  }
  const lagged = (s.dashboard || {}).lagged_events || 0;
  const lt = row(["dashboard clients", "events missed (lagged)"], 9);
  lt.appendChild(lostCell(lagged));
  rows.push(lt);
  if (s.syscalls && s.syscalls.dispatch_populated != null) {
    rows.push(row(["syscalls", "jump-table slots populated", fmt(s.syscalls.dispatch_populated)], 2));
    const tf = row(["syscalls", "tail-call failures"], 9);
    tf.appendChild(lostCell(s.syscalls.tail_call_failed || 0));
    rows.push(tf);
  }
  if (s.exec_events_read != null) rows.push(row(["exec", "events read", fmt(s.exec_events_read)], 2));
  for (const [name, sink] of Object.entries(s.sinks || {})) {
    rows.push(row(["sink " + name, "delivered / dropped / rejected",
      `${fmt(sink.delivered)} / ${fmt(sink.dropped)} / ${fmt(sink.rejected)}`], 2));
  }
  fill("health-rows", rows);
}

function renderXdp(s, dt) {
  const x = s.xdp;
  $("xdp-off").hidden = x != null;
  if (!x || x.error) return;
  const view = $("xdp-view").value;
  const pps = ACTIONS.map(() => 0), mbit = ACTIONS.map(() => 0);
  const rows = [];
  (x.interfaces || []).forEach((iface, ii) => {
    const old = prev && prev.xdp && prev.xdp.interfaces ? prev.xdp.interfaces[ii] : null;
    ACTIONS.forEach((a, ai) => {
      const r = (iface[view] || {})[a] || {};
      const o = old && (old[view] || {})[a];
      const p = rate(r.packets, o && o.packets, dt), b = rate(r.bytes, o && o.bytes, dt) * 8 / 1e6;
      pps[ai] += p;
      mbit[ai] += b;
      const tr = row([iface.iface, a, fmt(r.packets), fmt(r.bytes), fmt(p), b.toFixed(3)], 2);
      tr.dataset.iface = iface.iface;
      tr.dataset.action = a;
      rows.push(tr);
    });
  });
  fill("xdp-rows", rows);
  push(charts.pps, s.time, pps);
  push(charts.mbit, s.time, mbit);
  // The firewall's rules and top talkers are per interface (`xdp stats --json` per interface).
  const ifaces = x.interfaces || [];
  renderRules(x.rules || ifaces.flatMap((i) => i.rules || []));
  const talkers = x.top_talkers || x.talkers || ifaces.flatMap((i) => i.talkers || []);
  $("talkers-box").hidden = !Array.isArray(talkers) || talkers.length === 0;
  if (Array.isArray(talkers)) {
    fill("talker-rows", talkers.map((t) => row([t.source || t.addr || t.ip || JSON.stringify(t), fmt(t.packets), fmt(t.bytes)])));
  }
}

function ruleCidr(r) {
  return typeof r === "string" ? r : r.cidr || JSON.stringify(r);
}

/// The rule API answers with the rules of every interface ({iface: [rule, …]}); they are the same
/// set on each, so the first interface's list is shown.
function flatRules(rules) {
  return Array.isArray(rules) ? rules : Object.values(rules || {})[0] || [];
}

function renderRules(rules) {
  rules = flatRules(rules);
  fill("rule-rows", rules.map((r) => {
    const cidr = ruleCidr(r);
    const verdict = (typeof r === "object" && (r.verdict || r.action)) || "block";
    const dst = typeof r === "object" && r.dir === "dst";
    const btn = el("button", "remove");
    btn.onclick = () => changeRule("DELETE", cidr, verdict, dst);
    const label = `${verdict} ${cidr}${dst ? " dst" : ""}`;
    const hits = typeof r === "object" ? (r.packets != null ? r.packets : r.drops) : null;
    const tr = row([label, hits != null ? fmt(hits) : "–", btn]);
    tr.dataset.cidr = cidr;
    return tr;
  }));
}

function renderExecStats(s, dt) {
  const e = s.exec;
  $("exec-off").hidden = e != null;
  if (!e || e.error) return;
  const total = Object.values(e.uids || {}).reduce((a, b) => a + b, 0);
  const prevTotal = prev && prev.exec ? Object.values(prev.exec.uids || {}).reduce((a, b) => a + b, 0) : null;
  const r = rate(total, prevTotal, dt);
  $("exec-rate").textContent = fmt(r);
  $("exec-total").textContent = fmt(total);
  push(charts.exec, s.time, [r]);
  fill("uid-rows", Object.entries(e.uids || {}).sort((a, b) => b[1] - a[1])
    .map(([uid, n]) => { const tr = row([uid, fmt(n)]); tr.dataset.uid = uid; return tr; }));
}

function renderSyscalls(s, dt) {
  const c = s.syscalls;
  $("syscalls-off").hidden = c != null;
  if (!c || c.error) return;
  const old = new Map(((prev && prev.syscalls && prev.syscalls.syscalls) || []).map((r) => [r.name, r.count]));
  const rows = (c.syscalls || []).map((r) => ({ name: r.name, count: r.count, rate: rate(r.count, old.get(r.name) ?? (prev ? 0 : null), dt) }));
  rows.sort((a, b) => b.rate - a.rate || b.count - a.count);
  $("sys-rate").textContent = fmt(rate(c.total, prev && prev.syscalls ? prev.syscalls.total : null, dt));
  fill("sys-rows", rows.slice(0, 15).map((r) => { const tr = row([r.name, fmt(r.rate), fmt(r.count)]); tr.dataset.name = r.name; return tr; }));
  fill("handler-rows", (c.handlers || []).map((h) => row([h.name, h.program, fmt(h.calls)], 2)));
}

function renderMalloc(s, dt) {
  const m = s.malloc;
  $("malloc-off").hidden = m != null;
  if (!m || m.error) return;
  const t = m.total || {};
  $("malloc-rate").textContent = fmt(rate(t.calls, prev && prev.malloc && prev.malloc.total ? prev.malloc.total.calls : null, dt));
  fill("malloc-cpus", (m.per_cpu || []).map((c) => row([c.cpu, fmt(c.calls), fmt(c.bytes)])));
  fill("malloc-top", (m.top || []).map((p) => row([p.pid, p.comm, fmt(p.calls), fmt(p.bytes)], 2)));
}

// ---- exec tail -------------------------------------------------------------------------------
const tail = [];

function matches(ev, q) {
  if (!q) return true;
  const hay = [ev.comm, ev.pid, ev.ppid, ev.uid, ev.ret, (ev.args || []).join(" "), ev.filename].join(" ").toLowerCase();
  return q.split(/\s+/).every((w) => hay.includes(w));
}

function execRow(ev) {
  const time = ev.time ? ev.time.replace(/^.*T/, "").replace(/Z$/, "") : "";
  const args = (ev.args && ev.args.length ? ev.args.join(" ") : ev.filename) + (ev.args_truncated ? "…" : "");
  const tr = row([time, ev.pid, ev.ppid ?? "?", ev.uid, ev.comm, args, ev.ret], 99);
  if (ev.ret !== 0) tr.children[6].className = "bad";
  return tr;
}

function renderTail() {
  const q = $("exec-filter").value.trim().toLowerCase();
  const shown = tail.filter((ev) => matches(ev, q));
  fill("exec-tail", shown.slice(-200).reverse().map(execRow));
  $("exec-shown").textContent = String(shown.length);
}

let tailQueued = false;
function onExec(ev) {
  tail.push(ev);
  if (tail.length > TAIL) tail.shift();
  if (!tailQueued) {
    tailQueued = true;
    requestAnimationFrame(() => { tailQueued = false; renderTail(); });
  }
}
$("exec-filter").addEventListener("input", renderTail);

// ---- firewall --------------------------------------------------------------------------------
const TOKEN_KEY = "mapscope-token";
$("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
$("token").addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, $("token").value.trim()));

async function changeRule(method, cidr, action, dst) {
  const token = $("token").value.trim();
  $("rule-error").textContent = "";
  if (!token) {
    $("rule-error").textContent = "enter the API token (the agent's http.token_file) first";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  const body = { cidr };
  if (action && action !== "block") body.verdict = action;
  if (dst) body.dst = true;
  try {
    const r = await fetch("/api/v1/xdp/rules", {
      method,
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
      body: JSON.stringify(body),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) {
      $("rule-error").textContent = `${method === "POST" ? "adding" : "removing"} ${cidr}: ${r.status} ${j.error || r.statusText}`;
      return;
    }
    if (j.rules) renderRules(j.rules);
  } catch (e) {
    $("rule-error").textContent = "request failed: " + e;
  }
}
$("rule-form").addEventListener("submit", (e) => {
  e.preventDefault();
  changeRule("POST", $("rule-cidr").value.trim(), $("rule-action").value);
});

// ---- streams ---------------------------------------------------------------------------------
function connect() {
  const stats = new EventSource("/api/v1/stream/stats");
  stats.addEventListener("stats", (m) => {
    $("conn").textContent = "live";
    $("conn").className = "good";
    renderStats(JSON.parse(m.data));
  });
  stats.onerror = () => { $("conn").textContent = "disconnected, retrying…"; $("conn").className = "bad"; };
  const exec = new EventSource("/api/v1/stream/exec");
  exec.addEventListener("exec", (m) => onExec(JSON.parse(m.data)));
  exec.addEventListener("lagged", (m) => {
    const n = JSON.parse(m.data).missed;
    onExec({ comm: "(lagged)", pid: "", ppid: "", uid: "", ret: "", args: [`this page fell behind and missed ${n} exec events`] });
  });
  exec.onerror = () => { if (exec.readyState === EventSource.CLOSED) exec.close(); };
}
connect();
