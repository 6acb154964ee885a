// Gale console: sign-in, fleet, device, alerts, commands, registry and edges
// pages over the HTTP API. Every call carries the signed-in token, kept in
// sessionStorage; data is put in the page as text, never as HTML.
"use strict";

const TOKEN_KEY = "gale.token";
const STATES = { 1: "running", 2: "stopped", 3: "fault", 4: "curtailed", 5: "storm", 6: "icing", 7: "offline" };
const STATE_COLORS = { running: "#4caf7a", stopped: "#5c6773", fault: "#e0584f", curtailed: "#e0a93b", storm: "#7a8cff",
  icing: "#6fd3e0", offline: "#3a434d", unknown: "#8a97a5" };
const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };
const SEVERITIES = ["critical", "major", "minor", "warning", "info"];

// state is what the console knows: the caller, the registry, and the live values and firing alerts the stream keeps current.
const state = { me: null, products: {}, devices: [], assets: [], latest: {}, seen: {}, alerts: [], onUpdate: null, stop: null, clock: null };

// h builds an element: attrs set properties (on* are listeners, data-*/aria-* and others attributes); children are nodes or text.
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k in e && !k.includes("-")) e[k] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

const token = () => sessionStorage.getItem(TOKEN_KEY);
const can = role => state.me && ROLE_RANK[state.me.role] >= ROLE_RANK[role];
const sleep = ms => new Promise(r => setTimeout(r, ms));
const fmtTime = ms => ms ? new Date(ms).toLocaleString() : "–";
const fmtNum = (v, d) => v === undefined || v === null || Number.isNaN(v) ? "–" : Number(v).toLocaleString(undefined, { maximumFractionDigits: d ?? 1 });
const deviceId = d => d.productKey + "/" + d.deviceKey;
const stateName = code => STATES[code] || "unknown";

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api calls the API with the token; it answers {status, data}, throws ApiError on a 4xx/5xx with an error message,
// and signs out on 401. raw: true returns non-2xx answers that carry data (a command's reply) instead of throwing.
async function api(method, path, body, raw) {
  const opt = { method, headers: { Authorization: "Bearer " + token() } };
  if (typeof body === "string") { opt.headers["Content-Type"] = "application/yaml"; opt.body = body; }
  else if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
  let res;
  try { res = await fetch(path, opt); } catch (e) { throw new ApiError(0, "The node cannot be reached. Check the connection and retry."); }
  let data = null;
  try { const t = await res.text(); data = t ? JSON.parse(t) : null; } catch (e) { data = null; }
  const msg = (data && data.error) || `${res.status} ${res.statusText}`;
  if (res.status === 401) { signOut("Your session ended (" + msg + "). Sign in again."); throw new ApiError(401, msg); }
  if (!res.ok && !(raw && data && !data.error)) throw new ApiError(res.status, msg);
  return { status: res.status, data };
}

// FIELD_ALIASES maps the words API messages name things by to the form fields that hold them.
const FIELD_ALIASES = { product: "productkey", device: "devicekey", gateway: "gateway", org: "org", site: "site", yaml: "yaml" };

// fieldOf finds the form field an API message is about: its first word, after a prefix such as "invalid:" or
// "invalid run:" (e.g. "invalid: deviceKey "x" must be…" is about deviceKey, "name is required" about name).
function fieldOf(form, msg) {
  const rest = msg.replace(/^(invalid( run| product)?|bad request body):\s*/i, "");
  const word = (rest.match(/^[A-Za-z]+/) || [""])[0].toLowerCase();
  const names = [word, FIELD_ALIASES[word]].filter(Boolean);
  return word && [...form.querySelectorAll("[name]")].find(f => names.includes(f.name.toLowerCase()));
}

// showError puts an API error next to the form field it names, else under the form; never more than the API's message.
function showError(form, err) {
  clearErrors(form);
  const msg = err instanceof ApiError ? err.message : "Something went wrong; try again.";
  const field = fieldOf(form, msg);
  if (field) {
    field.setAttribute("aria-invalid", "true");
    field.closest("label").append(h("span", { class: "field-error", role: "alert" }, msg));
    field.focus();
  } else {
    form.append(h("div", { class: "form-error", role: "alert" }, msg));
  }
}

function clearErrors(form) {
  form.querySelectorAll(".field-error, .form-error, .form-ok").forEach(e => e.remove());
  form.querySelectorAll("[aria-invalid]").forEach(e => e.removeAttribute("aria-invalid"));
}

// ---- session -------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.stop) state.stop();
  Object.assign(state, { me: null, latest: {}, seen: {}, alerts: [], stop: null, onUpdate: null, clock: null });
  document.querySelector(".top").hidden = true;
  signInPage(message);
}

async function start() {
  try {
    state.me = (await api("GET", "/api/v1/me")).data;
    const [products, devices, assets] = await Promise.all(["/api/v1/products", "/api/v1/devices", "/api/v1/assets"].map(p => api("GET", p)));
    state.products = Object.fromEntries(products.data.map(p => [p.productKey, p]));
    state.devices = devices.data;
    state.assets = assets.data;
  } catch (e) {
    if (e.status !== 401) signOut(e.message);
    return;
  }
  document.querySelector(".top").hidden = false;
  document.getElementById("who").textContent = `${state.me.name} · ${state.me.role}${state.me.org ? " · " + state.me.org : ""}`;
  document.body.dataset.role = state.me.role;
  state.stop = openStream();
  if (!location.hash || location.hash === "#/signin") location.hash = "#/fleet";
  else route();
}

function signInPage(message) {
  const main = document.getElementById("main");
  let mode = "user";
  const body = h("div");
  const tabs = h("div", { class: "tabs", role: "tablist" },
    ["user", "token"].map(m => h("button", { type: "button", role: "tab", id: "tab-" + m, "aria-selected": String(m === mode),
      onclick: () => { mode = m; tabs.querySelectorAll("button").forEach(b => b.setAttribute("aria-selected", String(b.id === "tab-" + m))); draw(); } },
    m === "user" ? "User and password" : "API token")));
  const draw = () => {
    const fields = mode === "user"
      ? [h("label", {}, "User", h("input", { name: "user", id: "user", autocomplete: "username", required: true })),
         h("label", {}, "Password", h("input", { name: "password", id: "password", type: "password", autocomplete: "current-password", required: true }))]
      : [h("label", {}, "API token", h("input", { name: "token", id: "token", type: "password", autocomplete: "off", required: true }))];
    const form = h("form", { onsubmit: ev => signIn(ev, mode) }, fields, h("button", { type: "submit", id: "signin" }, "Sign in"));
    body.replaceChildren(form);
    form.querySelector("input").focus();
  };
  main.replaceChildren(h("div", { class: "signin" }, h("div", { class: "panel" },
    h("div", { class: "brand", style: "margin-bottom:18px" }, h("span", { class: "logo", "aria-hidden": "true" }), "Gale"),
    h("h1", {}, "Sign in"), h("p", { class: "muted", style: "margin:-8px 0 18px" }, "Operations console for your fleet, alerts and commands."),
    message ? h("p", { class: "form-error", role: "alert" }, message) : null,
    tabs, body)));
  draw();
}

async function signIn(ev, mode) {
  ev.preventDefault();
  const form = ev.target, btn = form.querySelector("button[type=submit]");
  clearErrors(form);
  btn.disabled = true;
  try {
    let secret;
    if (mode === "user") {
      const res = await fetch("/api/v1/login", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user: form.user.value, password: form.password.value }) });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new ApiError(res.status, res.status === 401 ? "password: wrong user name or password" : data.error || "sign-in failed");
      secret = data.token;
    } else {
      secret = form.token.value.trim();
    }
    const me = await fetch("/api/v1/me", { headers: { Authorization: "Bearer " + secret } });
    if (!me.ok) throw new ApiError(me.status, "token: " + ((await me.json().catch(() => ({}))).error || "not accepted"));
    sessionStorage.setItem(TOKEN_KEY, secret);
    start();
  } catch (e) {
    showError(form, e instanceof ApiError ? e : new ApiError(0, "The node cannot be reached."));
  } finally {
    btn.disabled = false;
  }
}

// ---- live stream -----------------------------------------------------------

// openStream reads GET /api/v1/stream with fetch (so the token goes in a header, never a URL), reconnecting with
// back-off; it keeps state.latest and state.alerts current and calls state.onUpdate. It returns its stop function.
function openStream() {
  const ctl = new AbortController();
  let stopped = false;
  const dispatch = chunk => {
    let event = "message", data = "";
    for (const line of chunk.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    let v;
    try { v = JSON.parse(data); } catch (e) { return; }
    if (event === "latest") {
      const now = Date.now();
      let newestSample = 0;
      for (const [id, pts] of Object.entries(v.devices)) {
        const cur = state.latest[id] || (state.latest[id] = {});
        for (const p of pts) { cur[p.point] = p; newestSample = Math.max(newestSample, p.time || 0); }
        state.seen[id] = now;
      }
      if (newestSample) observeClock(now, newestSample);
    } else if (event === "alerts") {
      state.alerts = v;
      const n = v.filter(a => !a.ackedBy).length;
      document.getElementById("alert-count").textContent = n ? String(n) : "";
    }
    if (state.onUpdate) state.onUpdate(event);
  };
  (async () => {
    let backoff = 1000;
    while (!stopped) {
      try {
        const res = await fetch("/api/v1/stream", { headers: { Authorization: "Bearer " + token() }, signal: ctl.signal });
        if (res.status === 401) { signOut("Your session ended. Sign in again."); return; }
        if (!res.ok) throw new Error(String(res.status));
        setLive(true);
        backoff = 1000;
        const reader = res.body.getReader(), dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          for (let i; (i = buf.indexOf("\n\n")) >= 0;) { dispatch(buf.slice(0, i)); buf = buf.slice(i + 2); }
        }
      } catch (e) {
        if (stopped) return;
      }
      setLive(false);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  })();
  return () => { stopped = true; ctl.abort(); };
}

function setLive(on) {
  document.querySelectorAll(".live").forEach(e => { e.classList.toggle("on", on); e.textContent = on ? "live" : "reconnecting"; });
  state.isLive = on;
}

// ---- clocks -------------------------------------------------------------------
// Alerts and samples carry event time (the devices' clock: a twin fleet's may run ahead of the wall clock, and
// faster); acknowledgements and the page the node's wall clock. observeClock follows the devices' clock against the
// wall clock from the live samples, so that the page can put both on one time line.

function observeClock(wall, event) {
  const c = state.clock;
  if (!c) { state.clock = { w0: wall, e0: event, w1: wall, e1: event }; return; }
  if (event >= c.e1) Object.assign(c, { w1: wall, e1: event });
}

// eventTime is the devices' clock at wall time ms (ms itself before any live sample).
function eventTime(ms) {
  const c = state.clock;
  if (!c) return ms;
  const rate = c.w1 - c.w0 > 5000 ? (c.e1 - c.e0) / (c.w1 - c.w0) : 1;
  return Math.round(c.e1 + (ms - c.w1) * rate);
}

const liveBadge = () => h("span", { class: "live" + (state.isLive ? " on" : "") }, state.isLive ? "live" : "connecting");
const val = (id, point) => { const p = (state.latest[id] || {})[point]; return p ? p.value : undefined; };

// ---- router ----------------------------------------------------------------

const routes = [
  [/^#\/fleet$/, fleetPage, "fleet"],
  [/^#\/device\/([^/]+)\/([^/]+)$/, devicePage, "fleet"],
  [/^#\/alerts$/, alertsPage, "alerts"],
  [/^#\/commands(?:\/([^/]+)\/([^/]+))?$/, commandsPage, "commands"],
  [/^#\/registry$/, registryPage, "registry"],
  [/^#\/edges$/, edgesPage, "edges"],
  [/^#\/runs(?:\/([^/]+))?$/, runsPage, "runs"],
];

function route() {
  if (!token() || !state.me) return;
  state.onUpdate = null;
  const main = document.getElementById("main");
  const hash = location.hash || "#/fleet";
  for (const [re, page, nav] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.nav === nav));
    main.replaceChildren();
    page(main, ...m.slice(1).filter(x => x !== undefined).map(decodeURIComponent));
    main.focus({ preventScroll: true });
    return;
  }
  main.replaceChildren(h("div", { class: "panel" }, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/fleet" }, "Go to the fleet."))));
}

// ---- fleet -------------------------------------------------------------------

function sites() {
  const out = [];
  const walk = (nodes, org) => { for (const a of nodes || []) { if (a.kind === "site") out.push({ ...a, org }); walk(a.children, a.kind === "org" ? a.id : org); } };
  walk(state.assets);
  return out;
}

const byProduct = { "wind-turbine": "Turbines", "modbus-gateway": "Gateways", "met-mast": "Met mast" };

// available is the power the model curve gives at the turbine's wind (kW), or undefined.
function available(d) {
  const curve = (d.attributes || {}).powerCurve, v = val(deviceId(d), "WNAC.WdSpd");
  if (!Array.isArray(curve) || v === undefined) return undefined;
  if (v < curve[0][0] || v > curve[curve.length - 1][0]) return 0;
  for (let i = 1; i < curve.length; i++) {
    const [x0, y0] = curve[i - 1], [x1, y1] = curve[i];
    if (v <= x1) return y0 + (y1 - y0) * (v - x0) / ((x1 - x0) || 1);
  }
  return 0;
}

function assetTree() {
  const li = a => {
    const devs = (a.devices || []).map(id => state.devices.find(d => deviceId(d) === id)).filter(Boolean);
    const groups = Object.entries(byProduct).map(([pk, label]) => {
      const ds = devs.filter(d => d.productKey === pk);
      return ds.length ? h("li", {}, h("details", { open: pk !== "wind-turbine" || ds.length <= 30 }, h("summary", {}, `${label} (${ds.length})`),
        h("ul", {}, ds.map(d => h("li", {}, h("a", { href: `#/device/${d.productKey}/${d.deviceKey}` }, d.deviceKey, d.name ? h("span", { class: "muted" }, " " + d.name) : null)))))) : null;
    });
    return h("li", {}, h("span", { class: "kind" }, a.kind), a.name || a.id, h("ul", {}, (a.children || []).map(li), groups));
  };
  return h("nav", { class: "tree", "aria-label": "Asset tree" }, h("ul", {}, state.assets.map(li)));
}

function fleetPage(main) {
  const turbines = state.devices.filter(d => d.productKey === "wind-turbine");
  const kpis = h("div", { class: "grid kpis" });
  const mapBox = h("div", { class: "map" });
  const rows = {};
  const tbody = h("tbody", {}, turbines.map(d => {
    const cells = { state: h("td"), power: h("td", { class: "num power" }), wind: h("td", { class: "num" }), sp: h("td", { class: "num" }) };
    rows[deviceId(d)] = cells;
    return h("tr", { "data-device": d.deviceKey }, h("td", {}, h("a", { href: `#/device/${d.productKey}/${d.deviceKey}` }, d.deviceKey)),
      h("td", {}, d.site || "–"), cells.state, cells.power, cells.wind, cells.sp, h("td", {}, d.gatewayDeviceKey || "direct"));
  }));
  main.append(h("div", { class: "head" }, h("h1", {}, "Fleet"), liveBadge()),
    h("div", { class: "grid cols-fleet" },
      h("aside", { class: "panel" }, h("h2", {}, "Assets"), assetTree()),
      h("div", { class: "grid", style: "align-content:start" }, kpis,
        h("div", { class: "grid cols-map" },
          h("section", { class: "panel", "aria-label": "Farm map" }, h("h2", {}, "Farm map"), mapBox,
            h("div", { class: "legend", style: "margin-top:10px" }, Object.entries(STATE_COLORS).map(([st, c]) => h("span", {}, h("span", { class: "dot", style: "background:" + c }), st)), h("span", {}, "· size: power"))),
          h("section", { class: "panel scroll" }, h("h2", {}, "Turbines"), h("table", { id: "turbines" },
            h("thead", {}, h("tr", {}, ["Turbine", "Site", "State", "Power kW", "Wind m/s", "Setpoint kW", "Gateway"].map((t, i) => h("th", { class: i >= 3 && i <= 5 ? "num" : "" }, t)))), tbody))))));
  const map = farmMap(turbines, state.devices.filter(d => d.productKey === "met-mast"));
  mapBox.append(map.svg);
  const update = () => {
    kpis.replaceChildren(...sites().flatMap(s => siteKpis(s, turbines.filter(d => d.site === s.id))));
    for (const d of turbines) {
      const id = deviceId(d), c = rows[id], st = stateName(val(id, "WTUR.TurSt")), p = val(id, "WTUR.W");
      c.state.replaceChildren(h("span", { class: "badge s-" + st }, st));
      c.power.textContent = fmtNum(p, 0);
      c.power.dataset.value = p === undefined ? "" : String(p);
      c.wind.textContent = fmtNum(val(id, "WNAC.WdSpd"));
      c.sp.textContent = fmtNum(val(id, "WTUR.DmdW"), 0);
    }
    map.update();
  };
  state.onUpdate = update;
  update();
}

function siteKpis(site, turbines) {
  let power = 0, avail = 0;
  const counts = {};
  for (const d of turbines) {
    const id = deviceId(d);
    power += Math.max(0, val(id, "WTUR.W") || 0);
    avail += available(d) || 0;
    const st = stateName(val(id, "WTUR.TurSt"));
    counts[st] = (counts[st] || 0) + 1;
  }
  const alerts = state.alerts.filter(a => a.site === site.id);
  const bySev = SEVERITIES.map(s => [s, alerts.filter(a => a.severity === s).length]).filter(x => x[1]);
  const pct = avail > 0 ? Math.min(100, power / avail * 100) : 0;
  return [
    h("div", { class: "panel kpi", "data-site": site.id }, h("h2", {}, site.name || site.id, " · power"),
      h("div", { class: "v" }, fmtNum(power / 1000, 1), " MW"),
      h("div", { class: "s" }, "of ", fmtNum(avail / 1000, 1), " MW available from the wind"),
      h("div", { class: "bar", role: "meter", "aria-valuenow": pct.toFixed(0), "aria-valuemin": "0", "aria-valuemax": "100", "aria-label": "Power against available" }, h("span", { style: `width:${pct.toFixed(1)}%` }))),
    h("div", { class: "panel kpi" }, h("h2", {}, "Turbines by state"),
      h("div", { class: "v" }, String(turbines.length)),
      h("div", { class: "stack-bar" }, Object.entries(counts).map(([st, n]) => h("span", { style: `width:${n / turbines.length * 100}%;background:${STATE_COLORS[st]}`, title: `${st}: ${n}` }))),
      h("div", { class: "legend" }, Object.entries(counts).map(([st, n]) => h("span", {}, h("span", { class: "dot", style: `background:${STATE_COLORS[st]}` }), `${st} ${n}`)))),
    h("div", { class: "panel kpi" }, h("h2", {}, "Firing alerts"),
      h("div", { class: "v" }, h("a", { href: "#/alerts", id: "fleet-alerts" }, String(alerts.length))),
      h("div", { class: "legend" }, bySev.length ? bySev.map(([s, n]) => h("span", { class: "sev-" + s }, `${s} ${n}`)) : h("span", {}, "none"))),
  ];
}

// farmMap draws the turbines at their layout coordinates (attributes x, y in metres), coloured by state and sized by power.
function farmMap(turbines, masts) {
  const placed = turbines.concat(masts).filter(d => d.attributes && typeof d.attributes.x === "number");
  if (!placed.length) return { svg: h("p", { class: "empty" }, "No layout coordinates (attributes x and y) on these devices."), update() {} };
  const xs = placed.map(d => d.attributes.x), ys = placed.map(d => d.attributes.y);
  // One scale for both axes (metres stay square), the farm centred in the frame.
  const pad = 300, x0 = Math.min(...xs) - pad, x1 = Math.max(...xs) + pad, y0 = Math.min(...ys) - pad, y1 = Math.max(...ys) + pad;
  const W = 600, Hh = 640, k = Math.min(W / (x1 - x0), Hh / (y1 - y0));
  const ox = (W - (x1 - x0) * k) / 2, oy = (Hh - (y1 - y0) * k) / 2;
  const sx = x => ox + (x - x0) * k, sy = y => Hh - oy - (y - y0) * k;
  const svg = Chart.el("svg", { viewBox: `0 0 ${W} ${Hh.toFixed(0)}`, role: "group", "aria-label": "Farm map: turbines coloured by state, sized by power" });
  const marks = {};
  for (const d of placed) {
    const cx = sx(d.attributes.x), cy = sy(d.attributes.y);
    const g = Chart.el("g", { class: "t", tabindex: "0", role: "link", "data-device": d.deviceKey, "aria-label": d.deviceKey });
    const go = () => { location.hash = `#/device/${d.productKey}/${d.deviceKey}`; };
    g.addEventListener("click", go);
    g.addEventListener("keydown", e => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
    const shape = d.productKey === "met-mast"
      ? Chart.el("rect", { x: cx - 6, y: cy - 6, width: 12, height: 12, fill: "#8a97a5" })
      : Chart.el("circle", { cx, cy, r: 8, fill: STATE_COLORS.unknown });
    const title = Chart.el("title", {}, d.deviceKey);
    g.append(shape, title, Chart.el("text", { x: cx + 22, y: cy + 4 }, d.deviceKey));
    svg.append(g);
    marks[deviceId(d)] = { d, shape, title };
  }
  const update = () => {
    for (const [id, m] of Object.entries(marks)) {
      if (m.d.productKey === "met-mast") { m.title.textContent = `${m.d.deviceKey}: wind ${fmtNum(val(id, "WNAC.WdSpd"))} m/s`; continue; }
      const st = stateName(val(id, "WTUR.TurSt")), p = Math.max(0, val(id, "WTUR.W") || 0), rated = m.d.attributes.ratedPower || 5000;
      m.shape.setAttribute("r", (5 + 13 * Math.sqrt(Math.min(1, p / rated))).toFixed(1));
      m.shape.setAttribute("fill", STATE_COLORS[st]);
      m.title.textContent = `${m.d.deviceKey}: ${st}, ${fmtNum(p, 0)} kW`;
    }
  };
  return { svg, update };
}

// ---- device ----------------------------------------------------------------------

async function devicePage(main, pk, dk) {
  const id = pk + "/" + dk;
  let d;
  try { d = (await api("GET", `/api/v1/devices/${encodeURIComponent(pk)}/${encodeURIComponent(dk)}`)).data; } catch (e) {
    main.append(h("div", { class: "panel" }, h("h1", {}, "Device " + id), h("p", { class: "form-error" }, e.message)));
    return;
  }
  const model = (state.products[pk] || {}).model || {};
  const points = model.measurepoints || [];
  const stBadge = h("span"), conn = h("span", { class: "muted" });
  const liveBody = h("tbody");
  main.append(h("div", { class: "head" }, h("h1", {}, d.name || dk), h("span", { class: "muted" }, id), stBadge, conn, liveBadge()));
  const liveRows = points.map(mp => {
    const v = h("td", { class: "num" }), q = h("td"), t = h("td", { class: "muted" });
    liveBody.append(h("tr", { "data-point": mp.id }, h("td", {}, mp.name || mp.id, h("div", { class: "muted" }, mp.id)), v, h("td", {}, mp.unit || ""), q, t));
    return { mp, v, q, t };
  });
  const attrs = Object.entries(d.attributes || {}).filter(([k]) => k !== "powerCurve");
  const left = h("div", { class: "grid" },
    h("section", { class: "panel scroll" }, h("h2", {}, "Live values"), h("table", { id: "live" },
      h("thead", {}, h("tr", {}, h("th", {}, "Point"), h("th", { class: "num" }, "Value"), h("th", {}, "Unit"), h("th", {}, "Quality"), h("th", {}, "Time"))), liveBody)));
  const gwId = d.gatewayDeviceKey ? d.gatewayProductKey + "/" + d.gatewayDeviceKey : "";
  const connState = h("dd", { id: "conn-state" }), lastSeen = h("dd", { id: "conn-seen" }), lastSample = h("dd"), gwState = h("span", { class: "muted" });
  const right = h("div", { class: "grid" },
    h("section", { class: "panel" }, h("h2", {}, "Connection and attributes"), h("dl", { class: "kv" },
      h("dt", {}, "Connection"), connState,
      h("dt", {}, "Last seen"), lastSeen,
      h("dt", {}, "Last sample"), lastSample,
      h("dt", {}, "Connected through"), h("dd", { id: "conn-through" }, gwId ? [h("a", { href: `#/device/${gwId}` }, d.gatewayDeviceKey), " ", gwState] : "directly (MQTT)"),
      h("dt", {}, "Product"), h("dd", {}, (state.products[pk] || {}).name || pk),
      h("dt", {}, "Site"), h("dd", {}, d.site || "–"),
      h("dt", {}, "Enabled"), h("dd", {}, d.enabled ? "yes" : "no"),
      attrs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]))));
  main.append(h("div", { class: "grid cols-2" }, left, right));
  right.append(historyPanel(pk, dk, points));
  if (pk === "wind-turbine") right.append(powerCurvePanel(pk, dk, d));
  right.append(deviceAlertsPanel(id, model.events || []));
  if (can("operator") && (model.services || []).length) left.append(h("section", { class: "panel" }, h("h2", {}, "Commands"), commandForm(pk, dk, model.services)));
  const update = () => {
    const cur = state.latest[id] || {};
    for (const r of liveRows) {
      const p = cur[r.mp.id];
      r.v.textContent = p ? (r.mp.id === "WTUR.TurSt" ? `${fmtNum(p.value, 0)} (${stateName(p.value)})` : fmtNum(p.value, 2)) : "–";
      r.q.replaceChildren(p ? (p.quality ? h("span", { class: "badge q-bad" }, "bad") : h("span", { class: "badge s-running" }, "good")) : "");
      r.t.textContent = p ? fmtTime(p.time) : "";
    }
    const st = cur["WTUR.TurSt"];
    stBadge.replaceChildren(st ? h("span", { class: "badge s-" + stateName(st.value) }, stateName(st.value)) : "");
    const seen = state.seen[id], times = Object.values(cur).map(p => p.time);
    const online = seen && Date.now() - seen < 30000;
    conn.textContent = online ? "online" : "offline";
    connState.replaceChildren(h("span", { class: "badge " + (online ? "s-running" : "s-offline") }, online ? "online" : "offline"),
      d.enabled ? "" : h("span", { class: "muted" }, " · disabled"));
    lastSeen.textContent = seen ? `${new Date(seen).toLocaleTimeString()} (live values received)` : "not since this page opened";
    lastSample.textContent = times.length ? fmtTime(Math.max(...times)) + " on the device's clock" : "no data yet";
    if (gwId) {
      const gwSeen = state.seen[gwId], gwOnline = gwSeen && Date.now() - gwSeen < 30000;
      gwState.textContent = gwOnline ? "(gateway online)" : gwSeen ? "(gateway last seen " + new Date(gwSeen).toLocaleTimeString() + ")" : "(gateway not heard from)";
    }
  };
  state.onUpdate = update;
  update();
}

// newest is the time of device id's newest sample (the twin clock may run ahead of the wall clock), or now.
function newest(id) {
  const times = Object.values(state.latest[id] || {}).map(p => p.time);
  return times.length ? Math.max(...times) : Date.now();
}

const RANGES = [["15m", 15 * 60e3], ["1h", 3600e3], ["6h", 6 * 3600e3], ["24h", 86400e3]];

function historyPanel(pk, dk, points) {
  const box = h("div", { class: "chart" });
  const form = h("form", { class: "inline", onsubmit: ev => { ev.preventDefault(); load(); } },
    h("label", {}, "Point", h("select", { name: "point" }, points.filter(p => p.type === "float" || p.type === "int").map(p => h("option", { value: p.id }, p.name || p.id)))),
    h("label", {}, "Range", h("select", { name: "range" }, RANGES.map(([l]) => h("option", { value: l, selected: l === "1h" }, l)))),
    h("label", {}, "Step", h("select", { name: "step" }, ["", "10s", "1m", "5m", "15m"].map(s => h("option", { value: s, selected: s === "1m" }, s || "raw")))),
    h("button", { type: "submit" }, "Show"));
  const load = async () => {
    clearErrors(form);
    const span = RANGES.find(r => r[0] === form.range.value)[1], end = newest(pk + "/" + dk);
    const q = new URLSearchParams({ start: String((end - span) / 1000), end: String(end / 1000) });
    if (form.step.value) q.set("step", form.step.value);
    try {
      const r = await api("GET", `/api/v1/devices/${encodeURIComponent(pk)}/${encodeURIComponent(dk)}/points/${encodeURIComponent(form.point.value)}/history?${q}`);
      const unit = (points.find(p => p.id === form.point.value) || {}).unit || "";
      box.replaceChildren(Chart.line(r.data.values, unit) || h("p", { class: "empty" }, "No samples in this range."));
    } catch (e) { showError(form, e); }
  };
  setTimeout(load, 0);
  return h("section", { class: "panel" }, h("h2", {}, "History"), form, box);
}

function powerCurvePanel(pk, dk, d) {
  const box = h("div", { class: "chart" });
  const form = h("form", { class: "inline", onsubmit: ev => { ev.preventDefault(); load(); } },
    h("label", {}, "Range", h("select", { name: "range" }, RANGES.map(([l]) => h("option", { value: l, selected: l === "6h" }, l)))),
    h("button", { type: "submit" }, "Show"));
  const load = async () => {
    clearErrors(form);
    const span = RANGES.find(r => r[0] === form.range.value)[1], end = newest(pk + "/" + dk);
    const q = new URLSearchParams({ start: String((end - span) / 1000), end: String(end / 1000), step: span <= 3600e3 ? "10s" : "1m" });
    const base = `/api/v1/devices/${encodeURIComponent(pk)}/${encodeURIComponent(dk)}/points/`;
    try {
      const [p, w] = await Promise.all(["WTUR.W", "WNAC.WdSpd"].map(pt => api("GET", base + pt + "/history?" + q)));
      const wind = new Map(w.data.values.map(v => [v.time, v.value]));
      const pts = p.data.values.filter(v => wind.has(v.time)).map(v => [wind.get(v.time), v.value]);
      const model = Array.isArray((d.attributes || {}).powerCurve) ? d.attributes.powerCurve : [];
      box.replaceChildren(Chart.scatter(pts, model, "wind m/s", "kW") || h("p", { class: "empty" }, "No samples in this range."),
        h("div", { class: "legend" }, h("span", {}, h("span", { class: "dot", style: "background:#3fa7d6" }), "measured"), h("span", {}, h("span", { class: "dot", style: "background:#e0a93b" }), "model curve")));
    } catch (e) { showError(form, e); }
  };
  setTimeout(load, 0);
  return h("section", { class: "panel" }, h("h2", {}, "Power curve"), form, box);
}

// deviceAlertsPanel lists the device's alerts (newest first) and the events its thing model declares.
function deviceAlertsPanel(id, events) {
  const list = h("ul", { class: "timeline" }, h("li", { class: "muted" }, "Loading…"));
  api("GET", "/api/v1/alerts?limit=500").then(r => {
    const mine = r.data.filter(a => a.device === id).slice(0, 20);
    list.replaceChildren(...(mine.length ? mine.map(a => h("li", {}, h("span", { class: "badge st-" + a.state }, a.state), " ",
      h("a", { href: "#/alerts" }, a.rule), " ", h("span", { class: "sev-" + a.severity }, a.severity), h("div", { class: "muted" }, fmtTime(a.firedAt || a.startedAt), a.message ? " · " + a.message : "")))
      : [h("li", { class: "muted" }, "No alerts for this device.")]));
  }).catch(e => list.replaceChildren(h("li", { class: "form-error" }, e.message)));
  return h("section", { class: "panel" }, h("h2", {}, "Events and alerts"), list,
    events.length ? h("p", { class: "muted", style: "margin-bottom:0" }, "Events this device reports (rules turn them into alerts): ",
      events.map(e => `${e.name || e.id}${e.severity ? " (" + e.severity + ")" : ""}`).join(", ")) : null);
}

// ---- commands ----------------------------------------------------------------

// commandForm is a form for a device's services, built from the thing model's input parameters.
function commandForm(pk, dk, services) {
  const params = h("div", { class: "inline" });
  const result = h("div", { class: "cmd-result", "aria-live": "polite" });
  const svcSel = h("select", { name: "service", id: "service", onchange: () => drawParams() }, services.map(s => h("option", { value: s.id }, s.name || s.id)));
  const form = h("form", { class: "grid", onsubmit: ev => send(ev) },
    h("div", { class: "inline" }, h("label", {}, "Service", svcSel)), params,
    h("div", {}, h("button", { type: "submit", class: "run-command" }, "Send command")), result);
  const drawParams = () => {
    const svc = services.find(s => s.id === svcSel.value);
    params.replaceChildren(...(svc.input || []).map(p => h("label", {}, `${p.id}${p.unit ? " (" + p.unit + ")" : ""}`,
      p.type === "bool" ? h("select", { name: p.id }, h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"))
        : h("input", { name: p.id, type: p.type === "float" || p.type === "int" ? "number" : "text", step: p.type === "int" ? "1" : "any", required: true }))));
  };
  const send = async ev => {
    ev.preventDefault();
    clearErrors(form);
    const svc = services.find(s => s.id === svcSel.value), body = {};
    for (const p of svc.input || []) {
      const raw = form.elements[p.id].value;
      body[p.id] = p.type === "float" || p.type === "int" ? Number(raw) : p.type === "bool" ? raw === "true" : raw;
    }
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true;
    result.replaceChildren(h("span", { class: "muted" }, "Sending…"));
    try {
      const r = await api("POST", `/api/v1/devices/${encodeURIComponent(pk)}/${encodeURIComponent(dk)}/services/${encodeURIComponent(svc.id)}?timeout=10s`, body, true);
      const c = r.data;
      result.replaceChildren(h("div", { class: c.status === "succeeded" ? "form-ok" : c.status === "failed" ? "form-error" : "muted", "data-status": c.status },
        `Command ${c.id}: ${c.status}`, c.status === "queued" || c.status === "sent" ? " (the device has not replied yet; it is delivered when the device is online)" : "",
        c.message ? " · " + c.message : "", c.output ? " · output " + JSON.stringify(c.output) : ""));
    } catch (e) {
      result.replaceChildren();
      showError(form, e);
    } finally { btn.disabled = false; }
  };
  drawParams();
  return form;
}

function commandsPage(main, pk, dk) {
  main.append(h("div", { class: "head" }, h("h1", {}, "Commands")));
  if (!can("operator")) {
    main.append(h("div", { class: "panel" }, h("p", {}, `Your role (${state.me.role}) may view devices but not run commands. Ask an admin for the operator role.`)));
    return;
  }
  const withServices = state.devices.filter(d => ((state.products[d.productKey] || {}).model || {}).services);
  const box = h("div");
  const sel = h("select", { name: "device", id: "cmd-device", onchange: () => draw() }, withServices.map(d => h("option", { value: deviceId(d), selected: d.productKey === pk && d.deviceKey === dk }, `${d.deviceKey} · ${d.name || d.productKey}`)));
  const draw = () => {
    const [p, k] = sel.value.split("/");
    box.replaceChildren(commandForm(p, k, state.products[p].model.services));
  };
  main.append(h("section", { class: "panel narrow grid" }, h("div", { class: "inline" }, h("label", {}, "Device", sel)), box));
  if (withServices.length) draw(); else box.append(h("p", { class: "empty" }, "No device offers services."));
}

// ---- alerts ----------------------------------------------------------------------

function alertsPage(main) {
  const tbody = h("tbody"), detail = h("section", { class: "panel", id: "episode" }, h("h2", {}, "Episode"), h("p", { class: "muted" }, "Select an alert to see its history."));
  const form = h("form", { class: "inline", onsubmit: ev => { ev.preventDefault(); load(); } },
    h("label", {}, "State", h("select", { name: "state" }, ["firing", "pending", "resolved", ""].map(s => h("option", { value: s }, s || "all")))),
    h("label", {}, "Severity", h("select", { name: "severity" }, ["", ...SEVERITIES].map(s => h("option", { value: s }, s || "all")))),
    h("label", {}, "Site", h("select", { name: "site" }, h("option", { value: "" }, "all"), sites().map(s => h("option", { value: s.id }, s.name || s.id)))),
    h("label", {}, "Since", h("select", { name: "since" }, [["", "any time"], ["3600", "last hour"], ["86400", "last day"], ["604800", "last week"]].map(([v, l]) => h("option", { value: v }, l)))),
    h("button", { type: "submit" }, "Filter"));
  main.append(h("div", { class: "head" }, h("h1", {}, "Alerts"), liveBadge()),
    h("section", { class: "panel" }, form),
    h("div", { class: "grid cols-2", style: "margin-top:16px" },
      h("section", { class: "panel scroll" }, h("table", { id: "alerts" }, h("thead", {}, h("tr", {}, ["ID", "Rule", "Severity", "Device", "State", "Fired", "Value", "Acknowledged"].map(t => h("th", {}, t)))), tbody)),
      detail));
  let selected = null;
  const load = async () => {
    clearErrors(form);
    const q = new URLSearchParams({ limit: "200" });
    for (const k of ["state", "severity", "site"]) if (form[k].value) q.set(k, form[k].value);
    if (form.since.value) q.set("since", String(Math.floor(eventTime(Date.now()) / 1000) - Number(form.since.value))); // alert times are event time
    let list;
    try { list = (await api("GET", "/api/v1/alerts?" + q)).data; } catch (e) { showError(form, e); return; }
    tbody.replaceChildren(...(list.length ? list.map(a => h("tr", { "data-alert": String(a.id), class: selected === a.id ? "sel" : "" },
      h("td", {}, h("a", { href: "#/alerts", onclick: ev => { ev.preventDefault(); selected = a.id; episode(a); } }, "#" + a.id)),
      h("td", {}, a.rule), h("td", {}, h("span", { class: "sev-" + a.severity }, a.severity)),
      h("td", {}, a.device ? h("a", { href: `#/device/${a.device}` }, a.device) : a.key),
      h("td", {}, h("span", { class: "badge st-" + a.state }, a.state)), h("td", {}, fmtTime(a.firedAt || a.startedAt)), h("td", { class: "num" }, fmtNum(a.value, 2)),
      h("td", { class: "ack" }, a.ackedBy ? `${a.ackedBy}` : can("operator") && a.id ? h("button", { type: "button", class: "ghost ack-open", onclick: () => { selected = a.id; episode(a, true); } }, "Acknowledge") : "–")))
      : [h("tr", {}, h("td", { colspan: "8", class: "empty" }, "No alerts match."))]));
  };
  const episode = async (a, ack) => {
    tbody.querySelectorAll("tr").forEach(tr => tr.classList.toggle("sel", tr.dataset.alert === String(a.id)));
    // One time line on the devices' clock: the episode's times are event time; the acknowledgement, made at the
    // node's wall-clock time, is put on the devices' clock (its wall-clock time shown beside it when they differ).
    const acked = a.ackedAt ? eventTime(a.ackedAt) : 0;
    const events = [["condition began", a.startedAt], ["fired", a.firedAt], ["resolved", a.resolvedAt],
      [a.ackedBy ? `acknowledged by ${a.ackedBy}${a.ackComment ? ": “" + a.ackComment + "”" : ""}` : "", acked,
        Math.abs(acked - a.ackedAt) > 2000 ? ` (${fmtTime(a.ackedAt)} on the node's clock)` : ""]]
      .filter(e => e[0] && e[1]).sort((x, y) => x[1] - y[1]);
    const others = h("ul", { class: "timeline" });
    detail.replaceChildren(...[h("h2", {}, `Episode #${a.id} · ${a.rule}`),
      h("dl", { class: "kv" }, h("dt", {}, "About"), h("dd", {}, a.device || a.key), h("dt", {}, "Severity"), h("dd", {}, a.severity),
        h("dt", {}, "State"), h("dd", {}, a.state), h("dt", {}, "Value"), h("dd", {}, fmtNum(a.value, 3)), a.message ? [h("dt", {}, "Message"), h("dd", {}, a.message)] : null),
      h("h2", { style: "margin-top:16px" }, "History"), h("ul", { class: "timeline", id: "episode-history" }, events.map(([what, t, note]) => h("li", { "data-time": String(t) }, what, h("div", { class: "muted" }, fmtTime(t), note || "")))),
      h("p", { class: "muted" }, "Times on the devices' clock."),
      can("operator") && !a.ackedBy && a.id ? ackForm(a, () => load().then(() => api("GET", "/api/v1/alerts?limit=500")).then(r => { const n = r.data.find(x => x.id === a.id); if (n) episode(n); }), ack) : null,
      h("h2", { style: "margin-top:16px" }, "Earlier episodes of this rule here"), others].filter(Boolean));
    try {
      const r = await api("GET", "/api/v1/alerts?" + new URLSearchParams({ rule: a.rule, limit: "100" }));
      const prev = r.data.filter(x => x.key === a.key && x.id !== a.id).slice(0, 10);
      others.replaceChildren(...(prev.length ? prev.map(x => h("li", {}, `#${x.id} ${x.state}`, h("div", { class: "muted" }, `${fmtTime(x.firedAt || x.startedAt)} → ${x.resolvedAt ? fmtTime(x.resolvedAt) : "open"}`))) : [h("li", { class: "muted" }, "None.")]));
    } catch (e) { others.replaceChildren(h("li", { class: "form-error" }, e.message)); }
  };
  state.onUpdate = ev => { if (ev === "alerts" && form.state.value === "firing") load(); };
  load();
}

function ackForm(a, done, focus) {
  const form = h("form", { class: "grid", id: "ack-form", style: "margin-top:12px", onsubmit: async ev => {
    ev.preventDefault();
    clearErrors(form);
    try {
      await api("POST", `/api/v1/alerts/${a.id}/ack`, { comment: form.comment.value });
      done();
    } catch (e) { showError(form, e); }
  } },
  h("label", {}, "Comment", h("textarea", { name: "comment", id: "ack-comment", rows: 2, maxLength: 1000, placeholder: "What was done, who follows up" })),
  h("div", {}, h("button", { type: "submit", id: "ack-submit" }, "Acknowledge")));
  if (focus) setTimeout(() => form.comment.focus(), 0);
  return form;
}

// ---- registry and edges ------------------------------------------------------

function registryPage(main) {
  const admin = can("admin");
  // Products and their thing models; admins import a product from YAML (checked by the node, stored by the products API).
  const prodBody = h("tbody"), modelBox = h("div", { id: "model-view" }), prodSel = h("select", { name: "productKey", required: true });
  const drawProducts = () => {
    const keep = prodSel.value;
    prodSel.replaceChildren(...Object.keys(state.products).sort().map(k => h("option", { value: k, selected: k === keep }, k)));
    prodBody.replaceChildren(...Object.values(state.products).sort((a, b) => a.productKey.localeCompare(b.productKey)).map(p =>
    h("tr", { "data-product": p.productKey }, h("td", {}, h("a", { href: "#/registry", class: "view-model", onclick: ev => { ev.preventDefault(); showModel(p); } }, p.productKey)),
      h("td", {}, p.name || ""), h("td", { class: "num" }, String((p.model.measurepoints || []).length)),
      h("td", {}, (p.model.events || []).map(e => e.id).join(", ")), h("td", {}, (p.model.services || []).map(s => s.id).join(", ")))));
  };
  const showModel = p => {
    const m = p.model || {};
    modelBox.replaceChildren(...[h("h2", { style: "margin-top:16px" }, `Thing model · ${p.productKey}`), p.description ? h("p", { class: "muted" }, p.description) : null,
      h("table", {}, h("thead", {}, h("tr", {}, ["Measurepoint", "Name", "Type", "Unit", "Range"].map(t => h("th", {}, t)))),
        h("tbody", {}, (m.measurepoints || []).map(mp => h("tr", {}, h("td", {}, mp.id), h("td", {}, mp.name || ""), h("td", {}, mp.type), h("td", {}, mp.unit || ""),
          h("td", { class: "muted" }, mp.min !== undefined || mp.max !== undefined ? `${mp.min ?? "…"} to ${mp.max ?? "…"}` : ""))))),
      (m.events || []).length ? h("p", {}, h("strong", {}, "Events: "), m.events.map(e => `${e.id}${e.severity ? " (" + e.severity + ")" : ""}`).join(", ")) : null,
      (m.services || []).length ? h("p", {}, h("strong", {}, "Services: "), m.services.map(s => `${s.id}(${(s.input || []).map(i => i.id).join(", ")})`).join(", ")) : null].filter(Boolean));
    modelBox.scrollIntoView({ block: "nearest" });
  };
  const importMsg = h("div", { "aria-live": "polite" });
  const importForm = h("form", { class: "grid", id: "import-form", onsubmit: async ev => {
    ev.preventDefault();
    clearErrors(importForm);
    importMsg.replaceChildren();
    const btn = importForm.querySelector("button[type=submit]");
    btn.disabled = true;
    try {
      const p = (await api("POST", "/api/v1/product-yaml", importForm.yaml.value)).data;
      const exists = !!state.products[p.productKey];
      const r = await api(exists ? "PUT" : "POST", exists ? "/api/v1/products/" + encodeURIComponent(p.productKey) : "/api/v1/products", p);
      state.products[r.data.productKey] = r.data;
      drawProducts();
      showModel(r.data);
      importMsg.replaceChildren(h("div", { class: "form-ok" }, `${exists ? "Updated" : "Imported"} product ${r.data.productKey}.`));
    } catch (e) { showError(importForm, e); } finally { btn.disabled = false; }
  } },
  h("label", {}, "Product YAML", h("textarea", { name: "yaml", id: "import-yaml", class: "code", rows: 8, required: true, spellcheck: false,
    placeholder: "productKey: pump\nname: Pump\nmodel:\n  measurepoints:\n    - {id: P.Flow, type: float, unit: m3/h}" })),
  h("div", { class: "inline" }, h("label", {}, "Or read a file", h("input", { type: "file", accept: ".yaml,.yml", onchange: async ev => {
    const f = ev.target.files[0];
    if (f) importForm.yaml.value = await f.text();
  } })), h("button", { type: "submit", id: "import-submit" }, "Import")), importMsg);

  // Devices: admins create them, enable and disable them and rotate their secrets (each new secret shown once).
  const devRows = h("tbody"), secretBox = h("div", { "aria-live": "polite" });
  const drawDevices = () => devRows.replaceChildren(...state.devices.map(d => h("tr", { "data-device": deviceId(d) },
    h("td", {}, h("a", { href: `#/device/${d.productKey}/${d.deviceKey}` }, d.deviceKey)), h("td", {}, d.productKey),
    h("td", {}, d.org), h("td", {}, d.site || "–"), h("td", {}, d.gatewayDeviceKey || "–"),
    h("td", {}, admin ? h("button", { type: "button", class: "ghost toggle-device", "aria-pressed": String(d.enabled), onclick: ev => toggle(ev, d) }, d.enabled ? "enabled · disable" : "disabled · enable") : d.enabled ? "yes" : "no"),
    admin ? h("td", {}, h("button", { type: "button", class: "ghost rotate-secret", onclick: ev => rotate(ev, d) }, "Rotate secret")) : null)));
  // toggle enables or disables a device: a disabled device loses its session at once.
  const toggle = async (ev, d) => {
    ev.target.disabled = true;
    try {
      const r = await api("PATCH", `/api/v1/devices/${encodeURIComponent(d.productKey)}/${encodeURIComponent(d.deviceKey)}`, { enabled: !d.enabled });
      Object.assign(d, r.data);
      drawDevices();
    } catch (e) { ev.target.disabled = false; ev.target.after(h("div", { class: "form-error", role: "alert" }, e.message)); }
  };
  // rotate asks once more, then gives the device a new secret: the old one stops working and its session is closed.
  const rotate = async (ev, d) => {
    const b = ev.target;
    if (!b.dataset.confirm) {
      b.dataset.confirm = "1";
      b.textContent = "Confirm: the old secret stops working";
      b.classList.remove("ghost");
      return;
    }
    b.disabled = true;
    try {
      const r = await api("POST", `/api/v1/devices/${encodeURIComponent(d.productKey)}/${encodeURIComponent(d.deviceKey)}/secret`);
      showSecret(`New secret of ${d.productKey}/${d.deviceKey}`, r.data.secret, "The old secret no longer works and the device's session was closed: configure the device with this one.");
      drawDevices();
    } catch (e) { b.disabled = false; b.after(h("div", { class: "form-error", role: "alert" }, e.message)); }
  };
  // showSecret shows a secret once: it is kept nowhere in the page, and gone with Done or another page.
  const showSecret = (title, secret, hint) => {
    secretBox.replaceChildren(h("div", { class: "secret-once", id: "secret-once", role: "status" }, h("strong", {}, title),
      h("code", { id: "secret-value" }, secret), h("div", { class: "muted" }, "Shown once. ", hint),
      h("div", { class: "btn-row", style: "margin-top:8px" },
        h("button", { type: "button", class: "ghost", onclick: () => navigator.clipboard && navigator.clipboard.writeText(secret) }, "Copy"),
        h("button", { type: "button", class: "ghost", id: "secret-done", onclick: () => secretBox.replaceChildren() }, "Done"))));
    secretBox.querySelector("#secret-done").focus();
  };
  const gateways = () => state.devices.filter(d => d.productKey === "modbus-gateway");
  const createForm = h("form", { class: "inline", id: "create-device", onsubmit: async ev => {
    ev.preventDefault();
    clearErrors(createForm);
    const f = createForm.elements, [gpk, gdk] = f.gateway.value ? f.gateway.value.split("/") : ["", ""];
    const body = { productKey: f.productKey.value, deviceKey: f.deviceKey.value.trim(), name: f.name.value.trim(), site: f.site.value, gatewayProductKey: gpk, gatewayDeviceKey: gdk };
    const btn = createForm.querySelector("button[type=submit]");
    btn.disabled = true;
    try {
      const d = (await api("POST", "/api/v1/devices", body)).data;
      showSecret(`Device ${d.productKey}/${d.deviceKey} created`, d.secret, "Configure the device with this secret; rotate it to get a new one.");
      delete d.secret;
      state.devices.push(d);
      drawDevices();
      createForm.reset();
    } catch (e) { showError(createForm, e); } finally { btn.disabled = false; }
  } },
  h("label", {}, "Product", prodSel),
  h("label", {}, "Device key", h("input", { name: "deviceKey", id: "new-device-key", required: true, maxLength: 128, autocomplete: "off" })),
  h("label", {}, "Name", h("input", { name: "name", maxLength: 200 })),
  h("label", {}, "Site", h("select", { name: "site", required: true }, sites().map(s => h("option", { value: s.id }, s.name || s.id)))),
  h("label", {}, "Gateway", h("select", { name: "gateway" }, h("option", { value: "" }, "none (direct MQTT)"), gateways().map(g => h("option", { value: deviceId(g) }, g.deviceKey)))),
  h("button", { type: "submit", id: "create-submit" }, "Create device"));

  // Rules: operators of the cluster reload them.
  const ruleRows = h("tbody");
  const ruleMsg = h("div", { "aria-live": "polite" });
  const drawRules = list => ruleRows.replaceChildren(...list.map(r => h("tr", {}, h("td", {}, r.name), h("td", {}, r.type), h("td", {}, h("span", { class: "sev-" + r.severity }, r.severity)),
    h("td", { class: "muted" }, r.point || r.expr || ""), h("td", {}, r.for || ""), h("td", { class: "muted" }, r.location))));
  api("GET", "/api/v1/rules").then(r => drawRules(r.data)).catch(e => ruleMsg.replaceChildren(h("div", { class: "form-error" }, e.message)));
  const reload = async ev => {
    ev.target.disabled = true;
    try {
      drawRules((await api("POST", "/api/v1/rules/reload")).data);
      ruleMsg.replaceChildren(h("div", { class: "form-ok" }, "Rules reloaded."));
    } catch (e) { ruleMsg.replaceChildren(h("div", { class: "form-error", role: "alert" }, e.message)); } finally { ev.target.disabled = false; }
  };
  // The routes of the caller's org (all of them for a cluster account).
  const routeRows = h("tbody");
  {
    api("GET", "/api/v1/routes").then(r => routeRows.replaceChildren(...(r.data.length ? r.data.map(rt => h("tr", {}, h("td", {}, rt.name), h("td", {}, rt.from.join(", ")),
      h("td", { class: "muted" }, rt.match), h("td", {}, rt.actions.join(" · ")), h("td", { class: "muted" }, rt.location)))
      : [h("tr", {}, h("td", { colspan: "5", class: "empty" }, "No routes: route files go in the node's rules.routesDir."))])))
      .catch(e => routeRows.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "form-error" }, e.message))));
  }
  main.append(h("div", { class: "head" }, h("h1", {}, "Registry")),
    h("div", { class: "grid" },
      h("section", { class: "panel scroll" }, h("h2", {}, "Products and thing models"), h("table", { id: "products" },
        h("thead", {}, h("tr", {}, h("th", {}, "Product"), h("th", {}, "Name"), h("th", { class: "num" }, "Measurepoints"), h("th", {}, "Events"), h("th", {}, "Services"))), prodBody), modelBox),
      admin ? h("section", { class: "panel" }, h("h2", {}, "Import a product (YAML)"), importForm) : null,
      h("section", { class: "panel scroll" }, h("h2", {}, "Devices"), admin ? createForm : null, secretBox, h("table", { id: "devices", style: "margin-top:12px" },
        h("thead", {}, h("tr", {}, ["Device", "Product", "Org", "Site", "Gateway", "Enabled", admin ? "Secret" : null].filter(Boolean).map(t => h("th", {}, t)))), devRows)),
      h("section", { class: "panel scroll" }, h("div", { class: "head" }, h("h2", {}, "Rules"), can("operator") && !state.me.org ? h("button", { type: "button", id: "rules-reload", onclick: reload }, "Reload rules") : null),
        ruleMsg, h("table", {}, h("thead", {}, h("tr", {}, ["Rule", "Type", "Severity", "Point or expression", "For", "File"].map(t => h("th", {}, t)))), ruleRows)),
      h("section", { class: "panel scroll" }, h("h2", {}, "Routes"), h("table", { id: "routes" },
        h("thead", {}, h("tr", {}, ["Route", "From", "Match", "Actions", "File"].map(t => h("th", {}, t)))), routeRows))));
  drawProducts();
  drawDevices();
}

function edgesPage(main) {
  const gws = state.devices.filter(d => d.productKey === "modbus-gateway");
  const tbody = h("tbody");
  main.append(h("div", { class: "head" }, h("h1", {}, "Edges"), liveBadge()),
    h("section", { class: "panel scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["Gateway", "Site", "State", "Sub-devices reporting", "Queue depth", "Poll latency ms", "Last seen"].map((t, i) => h("th", { class: i === 4 || i === 5 ? "num" : "" }, t)))), tbody)));
  const update = () => tbody.replaceChildren(...gws.map(g => {
    const subs = state.devices.filter(d => d.gatewayDeviceKey === g.deviceKey && d.gatewayProductKey === g.productKey);
    const live = subs.filter(d => Date.now() - (state.seen[deviceId(d)] || 0) < 30000).length;
    const seen = Math.max(0, ...[g, ...subs].map(d => state.seen[deviceId(d)] || 0));
    const online = Date.now() - seen < 30000;
    return h("tr", {}, h("td", {}, h("a", { href: `#/device/${g.productKey}/${g.deviceKey}` }, g.deviceKey)), h("td", {}, g.site || "–"),
      h("td", {}, h("span", { class: "badge " + (online ? "s-running" : "s-offline") }, online ? "online" : "offline")),
      h("td", {}, `${live} of ${subs.length}`), h("td", { class: "num" }, fmtNum(val(deviceId(g), "GW.QueueDepth"), 0)),
      h("td", { class: "num" }, fmtNum(val(deviceId(g), "GW.PollLatency"), 1)), h("td", {}, seen ? new Date(seen).toLocaleTimeString() : "never"));
  }));
  state.onUpdate = update;
  update();
}

// ---- runs ----------------------------------------------------------------------------

// fmtDuration is a duration in ms as "1h 02m", "3m 05s" or "42 s".
function fmtDuration(ms) {
  const s = Math.round(ms / 1000), p = n => String(n).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}h ${p(Math.floor(s % 3600 / 60))}m` : s >= 60 ? `${Math.floor(s / 60)}m ${p(s % 60)}s` : `${s} s`;
}

// runsPage lists the last loadgen and scenario runs the node was sent (gale loadgen and gale scenario run
// --report-to) and shows one: its figures, notes and plots.
async function runsPage(main, id) {
  const tbody = h("tbody"), detail = h("section", { class: "panel", id: "run" });
  main.append(h("div", { class: "head" }, h("h1", {}, "Runs"), h("span", { class: "muted" }, "load tests and scenarios reported to this node")),
    h("div", { class: "grid" }, h("section", { class: "panel scroll" }, h("table", { id: "runs" },
      h("thead", {}, h("tr", {}, ["When", "Kind", "Run", "Verdict", "Took", "Headline", "Posted by"].map(t => h("th", {}, t)))), tbody)), detail));
  let list;
  try { list = (await api("GET", "/api/v1/runs")).data; } catch (e) { detail.replaceChildren(h("p", { class: "form-error" }, e.message)); return; }
  const headline = r => (r.stats || []).filter(s => /achieved rate|p99|lost|assertions passed/.test(s.name)).slice(0, 3)
    .map(s => `${s.name} ${fmtNum(s.value, 1)}${s.unit ? " " + s.unit : ""}`).join(" · ");
  tbody.replaceChildren(...(list.length ? list.map(r => h("tr", { "data-run": r.id, class: r.id === id ? "sel" : "" },
    h("td", {}, h("a", { href: "#/runs/" + encodeURIComponent(r.id) }, fmtTime(Date.parse(r.started) || Date.parse(r.postedAt)))),
    h("td", {}, r.kind), h("td", {}, r.name),
    h("td", {}, h("span", { class: "badge " + (r.pass ? "pass" : "fail") }, r.pass ? "pass" : "fail")),
    h("td", {}, fmtDuration(Date.parse(r.finished) - Date.parse(r.started))), h("td", { class: "muted" }, headline(r)), h("td", {}, r.postedBy || "–")))
    : [h("tr", {}, h("td", { colspan: "7", class: "empty" }, "No runs yet. Run gale loadgen (it reports to the node it loads) or gale scenario run --report-to URL."))]));
  const pick = id || (list[0] || {}).id;
  if (!pick) { detail.hidden = true; return; }
  try { drawRun(detail, (await api("GET", "/api/v1/runs/" + encodeURIComponent(pick))).data); } catch (e) { detail.replaceChildren(h("p", { class: "form-error" }, e.message)); }
}

function drawRun(box, r) {
  box.replaceChildren(...[
    h("div", { class: "head" }, h("h2", { style: "margin:0" }, `${r.kind} · ${r.name}`), h("span", { class: "badge " + (r.pass ? "pass" : "fail") }, r.pass ? "pass" : "fail"),
      h("span", { class: "muted" }, `${fmtTime(Date.parse(r.started))} → ${fmtTime(Date.parse(r.finished))}`)),
    h("div", { class: "stats" }, (r.stats || []).map(s => h("div", { class: "stat" }, h("div", { class: "v" }, fmtNum(s.value, 1), s.unit ? h("span", { class: "muted" }, " " + s.unit) : ""), h("div", { class: "n" }, s.name)))),
    (r.notes || []).length ? h("ul", { class: "notes", style: "margin-bottom:16px" }, r.notes.map(n => h("li", { class: /^(FAILED|ERROR|SLO failed)/.test(n) ? "fail" : "" }, n))) : null,
    h("div", { class: "plots" }, (r.plots || []).map(p => h("section", { class: "chart", "data-plot": p.title }, h("h2", {}, p.title, p.unit ? ` (${p.unit})` : ""),
      (p.kind === "bar" ? Chart.bars(p.series, p.unit) : Chart.lines(p.series, p.unit)) || h("p", { class: "empty" }, "No data."))))].filter(Boolean));
}

// ---- boot ----------------------------------------------------------------------------

window.addEventListener("hashchange", route);
document.getElementById("signout").addEventListener("click", () => signOut());
if (token()) start(); else signOut();
