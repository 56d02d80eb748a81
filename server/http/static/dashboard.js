// nextbest's dashboard: one page that routes on location.pathname, reads /dashboard/api (a `decide` key) and acts
// through the JSON API under /v1 (an `admin` key). Plain modern JavaScript and SVG: nothing to fetch from elsewhere.

const KEY = "nextbest.apiKey";
const REFRESH_MS = 5000;
const state = { admin: false, live: true, view: null, timer: null, history: {} };

// ---------- helpers ----------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

const num = (v) => (v === null || v === undefined || v === "" ? NaN : Number(v));
function fmt(v, digits = 3) {
  const n = num(v);
  if (!Number.isFinite(n)) return "–";
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return n.toLocaleString("en");
  return n.toFixed(digits);
}
function interval(mean, low, high, digits = 3) {
  if (!Number.isFinite(num(mean))) return "–";
  return `${fmt(mean, digits)} [${fmt(low, digits)}, ${fmt(high, digits)}]`;
}
function age(seconds) {
  const n = num(seconds);
  if (!Number.isFinite(n)) return "–";
  if (n < 1) return "0 s"; // a process whose clock runs a little behind the one that published the model
  if (n < 90) return `${Math.round(n)} s`;
  if (n < 5400) return `${Math.round(n / 60)} min`;
  if (n < 172800) return `${(n / 3600).toFixed(1)} h`;
  return `${(n / 86400).toFixed(1)} d`;
}
function bytes(n) {
  const v = num(n);
  if (!Number.isFinite(v)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0, x = v;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return `${x.toFixed(i ? 1 : 0)} ${units[i]}`;
}
const when = (t) => (num(t) ? new Date(num(t) * 1000).toLocaleString() : "–");
const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const enc = encodeURIComponent;

function setStatus(message) { document.getElementById("status").textContent = message || ""; }

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, { method = "GET", body, signal } = {}) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!response.ok) {
    const error = new ApiError(response.status, data && data.code, (data && data.message) || response.statusText);
    if (response.status === 401) askForKey(error.message);
    throw error;
  }
  return data;
}

async function act(label, path, body) {
  setStatus("");
  try {
    return await api(path, { method: "POST", body });
  } catch (e) {
    setStatus(`${label}: ${e.message}`);
    throw e;
  }
}

// ---------- session ----------

function askForKey(reason) {
  const dialog = document.getElementById("key-dialog");
  if (reason) setStatus(reason);
  if (!dialog.open) dialog.showModal();
  document.getElementById("key-input").focus();
}

async function loadSession() {
  try {
    state.admin = (await api("/dashboard/api/session")).admin;
    document.getElementById("role").textContent = state.admin ? "admin" : "read-only";
    return true;
  } catch (e) {
    document.getElementById("role").textContent = "no access";
    if (e.status !== 401) setStatus(e.message);
    return false;
  }
}

function setupChrome() {
  const dialog = document.getElementById("key-dialog");
  document.getElementById("key-button").addEventListener("click", () => askForKey());
  dialog.addEventListener("close", async () => {
    const input = document.getElementById("key-input");
    if (dialog.returnValue === "save" && input.value.trim()) sessionStorage.setItem(KEY, input.value.trim());
    if (dialog.returnValue === "forget") sessionStorage.removeItem(KEY);
    input.value = "";
    setStatus("");
    if (dialog.returnValue !== "cancel" && (await loadSession())) route();
  });
  const toggle = document.getElementById("live-toggle");
  toggle.addEventListener("click", () => {
    state.live = !state.live;
    toggle.setAttribute("aria-pressed", String(state.live));
    toggle.textContent = state.live ? "Live: on" : "Live: off";
    schedule();
  });
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(link.getAttribute("href"));
  });
  window.addEventListener("popstate", route);
  document.addEventListener("visibilitychange", schedule);
}

function navigate(path) {
  history.pushState(null, "", path);
  route();
  document.getElementById("view").focus(); // keyboard and screen reader users land on the new page's content
}

function schedule() {
  clearTimeout(state.timer);
  if (!state.live || document.hidden || !state.view || !state.view.refresh) return;
  state.timer = setTimeout(async () => {
    try { await state.view.refresh(); } catch (e) { if (e.status !== 401) setStatus(e.message); }
    schedule();
  }, REFRESH_MS);
}

// ---------- router ----------

function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const main = document.getElementById("view");
  let view;
  if (parts.length === 0) view = overviewView();
  else if (parts[0] === "loops" && parts.length === 2) view = loopView(parts[1]);
  else if (parts[0] === "loops" && parts[2] === "decisions" && parts.length === 3) view = explorerView(parts[1]);
  else if (parts[0] === "loops" && parts[2] === "decisions" && parts.length === 4) view = decisionView(parts[1], parts[3]);
  else if (parts[0] === "loops" && parts[2] === "evaluate" && parts.length === 3) view = evaluateView(parts[1]);
  else view = { title: "Not found", render: () => h("p", {}, "No such page. ", h("a", { href: "/", "data-nav": true }, "Overview")) };
  state.view = view;
  loopNav(parts[0] === "loops" ? parts[1] : null, parts[2] || "");
  document.title = `${view.title} · nextbest`;
  main.replaceChildren(h("h1", {}, view.title), view.render());
  setStatus("");
  if (view.refresh) {
    view.refresh().catch((e) => { if (e.status !== 401) setStatus(e.message); });
  }
  schedule();
}

function loopNav(loop, page) {
  const nav = document.getElementById("loop-nav");
  nav.replaceChildren();
  if (!loop) return;
  const base = `/loops/${enc(loop)}`;
  for (const [label, path, key] of [[loop, base, ""], ["Decisions", `${base}/decisions`, "decisions"], ["Evaluate", `${base}/evaluate`, "evaluate"]]) {
    nav.append(h("a", { href: path, "data-nav": true, "aria-current": page === key ? "page" : null }, label));
  }
}

// ---------- charts (SVG) ----------

const COLORS = ["--c0", "--c1", "--c2", "--c3", "--c4", "--c5", "--c6", "--c7"].map((v) => `var(${v})`);

function niceRange(low, high) {
  if (!Number.isFinite(low) || !Number.isFinite(high)) return [0, 1];
  if (low === high) return [low - 1, high + 1];
  const pad = (high - low) * 0.08;
  return [low - pad, high + pad];
}

// series: [{name, points: [[x, y, low, high]]}]; x is seconds since the epoch
function lineChart(title, series, { yLabel = "" } = {}) {
  const W = 640, H = 240, L = 48, R = 12, T = 12, B = 28;
  const all = series.flatMap((one) => one.points);
  const xs = all.map((p) => p[0]);
  const ys = all.flatMap((p) => [p[1], p[2] ?? p[1], p[3] ?? p[1]]).filter(Number.isFinite);
  const [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  const [y0, y1] = niceRange(Math.min(...ys), Math.max(...ys));
  const X = (x) => L + (x1 === x0 ? (W - L - R) / 2 : ((x - x0) / (x1 - x0)) * (W - L - R));
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${all.length} points` });
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: Y(y), y2: Y(y) }));
    svg.append(s("text", { x: L - 6, y: Y(y) + 4, "text-anchor": "end" }, fmt(y, 2)));
  }
  if (xs.length) {
    const ticks = x1 > x0 ? [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]] : [[x0, "middle"]];
    for (const [x, anchor] of ticks) svg.append(s("text", { x: X(x), y: H - 8, "text-anchor": anchor }, clock(x)));
  }
  if (yLabel) svg.append(s("text", { x: 4, y: 10 }, yLabel));
  series.forEach((one, i) => {
    const color = one.color || COLORS[i % COLORS.length];
    const banded = one.points.filter((p) => Number.isFinite(p[2]) && Number.isFinite(p[3]));
    if (banded.length > 1) {
      const upper = banded.map((p) => `${X(p[0])},${Y(p[3])}`);
      const lower = banded.slice().reverse().map((p) => `${X(p[0])},${Y(p[2])}`);
      svg.append(s("polygon", { points: [...upper, ...lower].join(" "), fill: color, "fill-opacity": 0.15 }));
    }
    if (one.points.length > 1) {
      svg.append(s("polyline", { points: one.points.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none",
        stroke: color, "stroke-width": 2 }));
    }
    for (const p of one.points) {
      if (Number.isFinite(p[2]) && banded.length <= 1) {
        svg.append(s("line", { x1: X(p[0]), x2: X(p[0]), y1: Y(p[2]), y2: Y(p[3]), stroke: color, "stroke-width": 2 }));
      }
      const dot = s("circle", { class: "point", cx: X(p[0]), cy: Y(p[1]), r: 3, fill: color });
      dot.append(s("title", {}, `${one.name} ${clock(p[0])}: ${interval(p[1], p[2], p[3])}`));
      svg.append(dot);
    }
  });
  return chartBox(title, svg, series.map((one, i) => [one.name, one.color || COLORS[i % COLORS.length]]));
}

// stacks: {name: [count per x]}
function stackedBars(title, xs, stacks) {
  const W = 640, H = 220, L = 48, R = 12, T = 12, B = 28;
  const names = Object.keys(stacks);
  const totals = xs.map((_, i) => names.reduce((sum, n) => sum + (stacks[n][i] || 0), 0));
  const top = Math.max(1, ...totals);
  const step = (W - L - R) / Math.max(1, xs.length);
  const Y = (v) => T + (1 - v / top) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${xs.length} minutes` });
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: Y(v), y2: Y(v) }));
    svg.append(s("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, fmt(Math.round(v))));
  }
  xs.forEach((x, i) => {
    let base = 0;
    names.forEach((name, j) => {
      const v = stacks[name][i] || 0;
      if (!v) return;
      const rect = s("rect", { class: "bar", x: L + i * step + 1, width: Math.max(1, step - 2), y: Y(base + v),
        height: Y(base) - Y(base + v), fill: COLORS[j % COLORS.length] });
      rect.append(s("title", {}, `${clock(x)} ${name}: ${v}`));
      svg.append(rect);
      base += v;
    });
  });
  if (xs.length) {
    const ticks = [[0, "start", L], [Math.floor(xs.length / 2), "middle", null], [xs.length - 1, "end", W - R]];
    for (const [i, anchor, at] of ticks) {
      svg.append(s("text", { x: at ?? L + i * step + step / 2, y: H - 8, "text-anchor": anchor }, clock(xs[i])));
    }
  }
  return chartBox(title, svg, names.map((n, j) => [n, COLORS[j % COLORS.length]]));
}

function chartBox(title, svg, legend) {
  return h("figure", { class: "chart" },
    h("figcaption", {}, h("strong", {}, title)),
    svg,
    h("ul", { class: "legend" }, legend.map(([name, color]) =>
      h("li", {}, h("span", { class: "swatch", style: `background:${color}` }), name || "(none)"))));
}

function table(headers, rows, attrs = {}) {
  return h("div", { class: "table-wrap" }, h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map(([label, cls]) => h("th", { scope: "col", class: cls || null }, label)))),
    h("tbody", {}, rows)));
}

function card(label, value, field) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", "data-field": field }, value));
}

// ---------- overview ----------

function problemsOf(item, store) {
  const stats = item.stats, recent = item.recent;
  const out = [];
  if (num(stats.learnerLagSeconds) > 300 || num(stats.learnerLagEvents) > 10000) out.push("learner lagging");
  if (store.capacity_bytes && store.used_bytes / store.capacity_bytes > 0.85) out.push("store near full");
  if (recent.decisions_last_minute > 0 && recent.rewards_last_minute === 0) out.push("no rewards arriving");
  if (num(stats.refusedModels) > 0) out.push("models refused");
  return out;
}

// a window's mean reward, estimated from a sample of its joined events: the title says from how many
function sampled(mean) {
  if (!mean) return "–";
  return h("span", { title: `${interval(mean.mean, mean.low, mean.high)} from ${mean.n} of ${mean.events} joined events` },
    fmt(mean.mean));
}

function overviewView() {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading loops…"));
  return {
    title: "Loops",
    render: () => body,
    refresh: async () => {
      const data = await api("/dashboard/api/loops");
      const store = data.store;
      const rows = data.loops.map((item) => {
        const c = item.config, st = item.stats, r = item.recent;
        const problems = problemsOf(item, store);
        const link = `/loops/${enc(c.name)}`;
        return h("tr", { "data-loop": c.name, class: problems.length ? "problem" : null },
          h("th", { scope: "row" }, h("a", { href: link, "data-nav": true }, c.name),
            problems.length ? h("div", { class: "problems" }, problems.join(", ")) : null),
          h("td", { class: "hide-narrow spec", title: c.policy }, h("code", {}, c.policy || "(default)")),
          h("td", { class: "hide-narrow" }, (c.learningMode || "").replace("LEARNING_MODE_", "").toLowerCase()),
          h("td", { class: "num", "data-field": "decisions" }, fmt(st.decisions)),
          h("td", { class: "num", "data-field": "rewards" }, fmt(st.rewards)),
          h("td", { class: "num", "data-field": "joined" }, fmt(st.joined)),
          h("td", { class: "num" }, fmt(r.decisions_last_minute)),
          h("td", { class: "num" }, fmt(r.rewards_last_minute)),
          h("td", { class: "num" }, sampled(r.reward_last_hour)),
          h("td", { class: "num hide-narrow" }, sampled(r.reward_last_day)),
          h("td", { class: "num" }, `${fmt(st.learnerLagEvents)} / ${age(st.learnerLagSeconds)}`),
          h("td", { class: "num", "data-field": "model" }, st.modelVersion || "–"),
          h("td", { class: "num hide-narrow" }, age(item.model_age_seconds)));
      });
      const capacity = store.capacity_bytes ? ` of ${bytes(store.capacity_bytes)}` : "";
      body.replaceChildren(
        h("p", {}, `${data.loops.length} loops · store ${bytes(store.used_bytes)}${capacity} · updated ${new Date().toLocaleTimeString()}`),
        table([["Loop"], ["Policy", "hide-narrow"], ["Learning", "hide-narrow"], ["Decisions", "num"], ["Rewards", "num"],
          ["Joined", "num"], ["Decisions/min", "num"], ["Rewards/min", "num"], ["Reward 1 h", "num"],
          ["Reward 1 d", "num hide-narrow"], ["Learner lag", "num"], ["Model", "num"], ["Model age", "num hide-narrow"]],
          rows, { id: "loops" }));
    },
  };
}

// ---------- a loop ----------

function loopView(loop) {
  const base = `/v1/loops/${enc(loop)}`;
  const cards = h("div", { class: "cards" });
  const charts = h("div", { class: "grid2" });
  const policies = h("div", {});
  const models = h("div", {});
  const config = h("div", {});
  let editing = false;
  const history = (state.history[loop] ||= {});

  async function refresh() {
    const [data, series] = await Promise.all([
      api(`/dashboard/api/loops/${enc(loop)}`), api(`/dashboard/api/loops/${enc(loop)}/series?minutes=60`)]);
    const st = data.stats;
    cards.replaceChildren(card("Decisions", fmt(st.decisions), "decisions"), card("Rewards", fmt(st.rewards), "rewards"),
      card("Joined", fmt(st.joined), "joined"), card("Average reward", fmt(st.averageReward), "average"),
      card("Pending", fmt(st.pendingDecisions)), card("Learner lag", `${fmt(st.learnerLagEvents)} · ${age(st.learnerLagSeconds)}`),
      card("Model", st.modelVersion || "–", "model"), card("Refused models", fmt(st.refusedModels)));
    const lift = st.lift;
    if (lift && num(lift.holdoutSubjects) > 0) {
      cards.append(card("Holdout lift", interval(lift.difference, lift.ciLow, lift.ciHigh), "lift"));
    }
    for (const p of st.policies || []) {
      (history[p.spec] ||= []).push([data.now, num(p.value), num(p.ciLow), num(p.ciHigh)]);
      if (history[p.spec].length > 720) history[p.spec].shift();
    }
    renderCharts(series);
    renderPolicies(st);
    renderModels(data.models);
    if (!editing) renderConfig(data.config);
  }

  function renderCharts(series) {
    const reward = Object.entries(series.reward).filter(([, byMinute]) => Object.keys(byMinute).length)
      .map(([group, byMinute]) => ({ name: group === "treatment" ? "live policy (per minute)" : "holdout (per minute)",
        points: Object.entries(byMinute).map(([m, v]) => [Number(m), v.mean, v.low, v.high]).sort((a, b) => a[0] - b[0]) }));
    const estimates = Object.entries(history).map(([spec, points]) => ({ name: `${spec} (estimate since start)`, points }));
    const mix = (field) => {
      const counts = series[field];
      const totals = {};
      for (const byName of Object.values(counts)) for (const [n, c] of Object.entries(byName)) totals[n] = (totals[n] || 0) + c;
      const top = Object.entries(totals).sort((a, b) => b[1] - a[1]).slice(0, 7).map(([n]) => n);
      const stacks = {};
      for (const n of top) stacks[n] = series.minutes.map((m) => (counts[String(m)] || {})[n] || 0);
      if (Object.keys(totals).length > top.length) {
        stacks.other = series.minutes.map((m) => Object.entries(counts[String(m)] || {})
          .filter(([n]) => !top.includes(n)).reduce((a, [, c]) => a + c, 0));
      }
      return stacks;
    };
    charts.replaceChildren(
      h("div", { id: "reward-chart" }, lineChart("Reward per minute, last hour (95% interval)", reward)),
      h("div", { id: "estimate-chart" }, lineChart("Live and shadow policies: estimated value (95% interval)", estimates)),
      h("div", { id: "channel-chart" }, stackedBars("Decisions per minute by channel", series.minutes, mix("channels"))),
      h("div", { id: "action-chart" }, stackedBars("Decisions per minute by action", series.minutes, mix("actions"))));
    if (series.truncated) charts.append(h("p", { class: "muted" }, "Charts cover the newest 5,000 records only."));
  }

  function renderPolicies(st) {
    const rows = (st.policies || []).map((p) => h("tr", {},
      h("td", {}, h("code", {}, p.spec), p.live ? " (live)" : ""),
      h("td", { class: "num" }, fmt(p.events)),
      h("td", { class: "num" }, interval(p.value, p.ciLow, p.ciHigh)),
      h("td", { class: "num" }, fmt(p.effectiveSampleSize, 1)),
      h("td", {}, !p.live && state.admin ? h("button", { type: "button", class: "admin", onclick: async () => {
        if (!confirm(`Promote the shadow ${p.spec} to live?`)) return;
        await act("Promote", `${base}:promotePolicy`, { shadow: p.spec }); await refresh();
      } }, "Promote") : null)));
    policies.replaceChildren(table([["Policy"], ["Events", "num"], ["Value [95%]", "num"], ["ESS", "num"], [""]], rows));
  }

  function renderModels(list) {
    const rows = list.slice().reverse().map((m) => h("tr", { "data-version": m.version, class: m.live ? "chosen" : null },
      h("td", { class: "num" }, m.version, m.live ? " (live)" : ""),
      h("td", {}, h("code", {}, m.spec)),
      h("td", { class: "num" }, fmt(m.learnedSeq)),
      h("td", {}, when(m.createdAt)),
      h("td", { class: "num" }, bytes(m.sizeBytes)),
      h("td", {}, !m.live && state.admin ? h("button", { type: "button", class: "admin", "data-rollback": m.version,
        onclick: async () => {
          if (!confirm(`Roll loop ${loop} back to model version ${m.version}?`)) return;
          await act("Rollback", `${base}/models/${m.version}:rollback`); await refresh();
        } }, `Roll back to ${m.version}`) : null)));
    models.replaceChildren(table([["Version", "num"], ["Spec"], ["Learned seq", "num"], ["Created"], ["Size", "num"], [""]],
      rows, { id: "models" }));
  }

  function renderConfig(cfg, note = "") {
    const text = JSON.stringify(cfg, null, 2);
    if (!state.admin) { config.replaceChildren(h("pre", {}, text)); return; }
    const area = h("textarea", { id: "config-text", rows: 18, spellcheck: "false", onfocus: () => { editing = true; } }, text);
    const message = h("p", { role: "status" }, note);
    const form = h("form", { onsubmit: async (event) => {
      event.preventDefault();
      let body;
      try { body = JSON.parse(area.value); } catch (e) { message.textContent = `Not JSON: ${e.message}`; return; }
      try {
        const saved = await api(base, { method: "PUT", body });
        editing = false;
        renderConfig(saved, `Saved: version ${saved.version}`);
      } catch (e) { message.className = "error"; message.textContent = e.message; }
    } }, h("label", { for: "config-text" }, "Loop config (JSON; the server validates it)"), area,
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary admin" }, "Save config"),
        h("button", { type: "button", onclick: () => { editing = false; refresh(); } }, "Discard edits")), message);
    config.replaceChildren(form);
  }

  return {
    title: `Loop ${loop}`,
    render: () => h("div", {}, cards,
      h("p", {}, h("a", { href: `/loops/${enc(loop)}/decisions`, "data-nav": true }, "Browse decisions"), " · ",
        h("a", { href: `/loops/${enc(loop)}/evaluate`, "data-nav": true }, "Evaluate policies")),
      h("h2", {}, "Over time"), charts, h("h2", {}, "Policies"), policies, h("h2", {}, "Model versions"), models,
      h("h2", {}, "Config"), config),
    refresh,
  };
}

// ---------- decision explorer ----------

function explorerView(loop) {
  const results = h("div", {});
  const params = new URLSearchParams(location.search);
  const field = (name, label, input) => h("div", {}, h("label", { for: `f-${name}` }, label), input);
  const text = (name) => h("input", { id: `f-${name}`, name, value: params.get(name) || "", autocomplete: "off" });
  const select = h("select", { id: "f-reward", name: "reward" },
    [["", "any"], ["joined", "joined"], ["rewarded", "rewarded"], ["defaulted", "default reward"], ["pending", "pending"]]
      .map(([v, l]) => h("option", { value: v, selected: params.get("reward") === v }, l)));
  const filters = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const query = new URLSearchParams([...new FormData(filters)].filter(([, v]) => v));
    history.replaceState(null, "", `${location.pathname}${query.size ? `?${query}` : ""}`);
    load(0, false);
  } }, field("subject", "Subject id", text("subject")), field("action", "Action", text("action")),
    field("channel", "Channel", text("channel")), field("reward", "Reward", select),
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Filter")));
  const lookup = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const id = new FormData(lookup).get("event");
    if (id) navigate(`/loops/${enc(loop)}/decisions/${enc(id.trim())}`);
  } }, h("div", {}, h("label", { for: "f-event" }, "Event id"), h("input", { id: "f-event", name: "event", autocomplete: "off" })),
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Look up")));
  let rows = [];
  let older = 0;

  async function load(before, append) {
    const query = new URLSearchParams([...new FormData(filters)].filter(([, v]) => v));
    if (before) query.set("before", before);
    const data = await api(`/dashboard/api/loops/${enc(loop)}/decisions?${query}`);
    const fresh = data.decisions.map((d) => h("tr", { "data-event": d.event_id },
      h("td", {}, h("a", { href: `/loops/${enc(loop)}/decisions/${enc(d.event_id)}`, "data-nav": true }, d.event_id)),
      h("td", {}, when(d.timestamp)), h("td", {}, d.subject_id || "–"), h("td", {}, d.action),
      h("td", {}, d.channel || "–"), h("td", { class: "num" }, fmt(d.probability, 4)),
      h("td", {}, d.state, d.holdout ? " (holdout)" : ""), h("td", { class: "num" }, fmt(d.reward))));
    rows = append ? rows.concat(fresh) : fresh;
    older = data.next_before;
    results.replaceChildren(
      table([["Event id"], ["Time"], ["Subject"], ["Action"], ["Channel"], ["Probability", "num"], ["Outcome"], ["Reward", "num"]],
        rows.length ? rows : [h("tr", {}, h("td", { colspan: 8 }, "No decisions match among the newest scanned."))], { id: "decisions" }),
      older ? h("div", { class: "buttons" }, h("button", { type: "button", onclick: () => load(older, true) }, "Older")) : null);
  }

  return {
    title: `Decisions of ${loop}`,
    render: () => h("div", {}, lookup, h("h2", {}, "Browse"), filters, h("p", { class: "muted" },
      "Newest first; each page scans at most 5,000 decisions."), results),
    refresh: () => (rows.length > 50 ? Promise.resolve() : load(0, false)),
  };
}

function decisionView(loop, eventId) {
  const body = h("div", {}, h("p", {}, "Loading…"));
  async function refresh() {
    let data;
    try {
      data = await api(`/dashboard/api/loops/${enc(loop)}/decisions/${enc(eventId)}`);
    } catch (e) {
      if (e.status === 404) { body.replaceChildren(h("p", { class: "error" }, e.message)); return; }
      throw e;
    }
    const d = data.decision;
    const chosen = d.actions[d.chosenIndex] || {};
    const suppressed = d.suppressed || [];
    const candidates = d.actions.map((a, i) => h("tr", { class: i === d.chosenIndex ? "chosen" : null },
      h("td", {}, a.id, i === d.chosenIndex ? " (chosen)" : ""), h("td", {}, a.channel || "–"),
      h("td", { class: "num" }, fmt(d.pmf[i], 4)), h("td", {}, i === d.policyTopIndex ? "policy's top" : ""),
      h("td", {}, h("code", {}, JSON.stringify(a.features || {})))));
    const j = data.joined;
    body.replaceChildren(
      h("dl", { class: "facts", id: "decision-facts" },
        h("dt", {}, "Event id"), h("dd", {}, d.eventId),
        h("dt", {}, "Time"), h("dd", {}, when(d.timestamp)),
        h("dt", {}, "Chosen action"), h("dd", { "data-field": "chosen" }, chosen.id || "–"),
        h("dt", {}, "Probability"), h("dd", { "data-field": "probability" }, String(d.pmf[d.chosenIndex])),
        h("dt", {}, "Subject"), h("dd", {}, d.subjectId || "–"),
        h("dt", {}, "Policy"), h("dd", {}, h("code", {}, d.policy)),
        h("dt", {}, "Model version"), h("dd", {}, d.modelVersion || "–"),
        h("dt", {}, "Group"), h("dd", {}, d.holdout ? "holdout" : "treatment"),
        h("dt", {}, "Deferred"), h("dd", {}, d.deferred ? "yes" : "no"),
        h("dt", {}, "Outcome"), h("dd", { "data-field": "state" }, data.state,
          j ? ` · reward ${fmt(j.reward)} from ${j.rewardCount} reward(s)${j.defaulted ? " (default)" : ""}` +
            `${d.deferred ? (j.activated ? " · activated" : " · not activated") : ""} · joined ${when(j.joinedAt)}` : "")),
      h("h2", {}, "Candidates"),
      table([["Action"], ["Channel"], ["Probability", "num"], [""], ["Features"]], candidates),
      h("h2", {}, "Suppressed and excluded"),
      h("p", {}, suppressed.length ? suppressed.map((x) => `${x.actionId} (rule ${x.rule})`).join(", ") : "No action suppressed.",
        (d.excludedActionIds || []).length ? ` Excluded by the caller: ${d.excludedActionIds.join(", ")}.` : "",
        (d.skippedRules || []).length ? ` Rules skipped: ${d.skippedRules.join(", ")}.` : ""),
      h("h2", {}, "Rewards"),
      data.rewards.length ? table([["Time"], ["Value", "num"], ["Reward id"]], data.rewards.map((r) =>
        h("tr", {}, h("td", {}, when(r.timestamp)), h("td", { class: "num" }, fmt(r.value)), h("td", {}, r.rewardId || "–"))))
        : h("p", {}, "No reward for it among the newest rewards."),
      h("h2", {}, "Context"), h("pre", {}, JSON.stringify(d.context, null, 2)));
  }
  return { title: `Decision ${eventId}`, render: () => body, refresh };
}

// ---------- evaluate ----------

function evaluateView(loop) {
  const out = h("div", {});
  const progress = h("progress", { max: 1, value: 0, "aria-label": "Evaluation progress", hidden: true });
  const local = (t) => new Date(t - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const now = Date.now();
  let controller = null;
  const form = h("form", { onsubmit: (event) => { event.preventDefault(); run(); } },
    h("label", { for: "ev-specs" }, "Candidate policy specs, one a line"),
    h("textarea", { id: "ev-specs", rows: 4, spellcheck: "false", required: true }, "vw:--cb_explore_adf --epsilon 0.1"),
    h("div", { class: "filters" },
      h("div", {}, h("label", { for: "ev-since" }, "Decisions since"), h("input", { id: "ev-since", type: "datetime-local", value: local(now - 86400000) })),
      h("div", {}, h("label", { for: "ev-until" }, "until"), h("input", { id: "ev-until", type: "datetime-local", value: local(now + 60000) })),
      h("div", {}, h("label", { for: "ev-slices" }, "Slices for the chart"), h("input", { id: "ev-slices", type: "number", min: 1, max: 24, value: 6 })),
      h("div", {}, h("button", { type: "submit", class: "primary", id: "ev-run", disabled: !state.admin }, "Evaluate"),
        " ", h("button", { type: "button", onclick: () => controller && controller.abort() }, "Cancel"))),
    progress);

  async function run() {
    const specs = document.getElementById("ev-specs").value.split("\n").map((x) => x.trim()).filter(Boolean);
    const since = Date.parse(document.getElementById("ev-since").value) / 1000 || 0;
    const until = Date.parse(document.getElementById("ev-until").value) / 1000 || 0;
    const slices = Math.max(1, Math.min(24, Number(document.getElementById("ev-slices").value) || 1));
    controller = new AbortController();
    progress.hidden = false; progress.max = slices + 1; progress.value = 0;
    out.replaceChildren(h("p", { role: "status" }, "Evaluating the whole range…"));
    const path = `/v1/loops/${enc(loop)}:evaluate`;
    try {
      const report = await api(path, { method: "POST", body: { specs, since, until }, signal: controller.signal });
      progress.value = 1;
      renderReport(report);
      const chart = h("div", { id: "ev-chart" }, h("p", { role: "status" }, "Evaluating each slice…"));
      out.append(chart);
      const bySpec = {};
      const step = (until - since) / slices;
      for (let i = 0; i < slices; i++) {
        const range = { specs, since: since + i * step, until: since + (i + 1) * step };
        try {
          const part = await api(path, { method: "POST", body: range, signal: controller.signal });
          for (const p of part.policies) {
            const e = (p.estimates || {}).dr || (p.estimates || {}).snips;
            if (e) (bySpec[p.spec] ||= []).push([range.since + step / 2, num(e.value), num(e.ciLow), num(e.ciHigh)]);
          }
        } catch (e) {
          if (e.name === "AbortError") throw e;
          if (e.code !== "FAILED_PRECONDITION") throw e; // a slice with too few events: no point there
        }
        progress.value = i + 2;
        chart.replaceChildren(lineChart("Estimated value over time (DR, 95% interval)",
          Object.entries(bySpec).map(([name, points]) => ({ name, points }))));
      }
    } catch (e) {
      out.append(h("p", { class: "error", role: "alert" }, e.name === "AbortError" ? "Cancelled." : e.message));
    } finally {
      controller = null;
    }
  }

  function renderReport(report) {
    const estimators = [...new Set(report.policies.flatMap((p) => Object.keys(p.estimates || {})))];
    const rows = report.policies.map((p) => h("tr", { class: p.spec === report.best ? "chosen" : null },
      h("td", {}, h("code", {}, p.spec), p.spec === report.best ? " (best)" : ""),
      estimators.map((name) => { const e = (p.estimates || {})[name]; return h("td", { class: "num" }, e ? interval(e.value, e.ciLow, e.ciHigh) : "–"); }),
      h("td", { class: "num" }, fmt(p.effectiveSampleSize, 1)), h("td", { class: "num" }, fmt(p.maxWeight, 2)),
      h("td", {}, (p.warnings || []).join("; ")),
      h("td", {}, p.spec !== "logged" && state.admin ? [
        h("button", { type: "button", class: "admin", onclick: () => setPolicy(p.spec, "POLICY_MODE_SHADOW") }, "Shadow this"), " ",
        h("button", { type: "button", class: "admin danger", onclick: () => setPolicy(p.spec, "POLICY_MODE_REPLACE") }, "Set policy")] : null)));
    out.replaceChildren(h("p", {}, `${fmt(report.events)} events.`),
      table([["Policy"], ...estimators.map((n) => [`${n.toUpperCase()} [95%]`, "num"]), ["ESS", "num"], ["Max weight", "num"], ["Warnings"], [""]],
        rows, { id: "estimates" }));
  }

  async function setPolicy(spec, mode) {
    const what = mode === "POLICY_MODE_SHADOW" ? "add it as a shadow of" : "make it the live policy of";
    if (!confirm(`${spec}: ${what} loop ${loop}?`)) return;
    await act("Set policy", `/v1/loops/${enc(loop)}:setPolicy`, { spec, mode });
    setStatus("");
    out.prepend(h("p", { role: "status" }, `Done: ${spec} ${mode === "POLICY_MODE_SHADOW" ? "shadows" : "serves"} loop ${loop}.`));
  }

  return {
    title: `Evaluate policies on ${loop}`,
    render: () => h("div", {},
      state.admin ? null : h("p", { class: "muted" }, "Evaluating needs an admin key (the Evaluate RPC)."),
      form, out),
  };
}

// ---------- start ----------

setupChrome();
loadSession().then(route);
