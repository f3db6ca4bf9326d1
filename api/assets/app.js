// tickcast dashboard: one symbol's closes, the selected model's forecasts with 80/95% bands,
// the scoreboard against the naive forecast and recent alerts; live over /api/v1/stream.
// Plain browser JavaScript, no build step; uPlot is vendored by scripts/vendor-dashboard.sh.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  symbol: null, interval: null, model: "ensemble", horizon: 1,
  candles: new Map(), // open_ms -> close
  fc: new Map(),      // target_ms -> forecast
  plot: null, ws: null, dirty: false, updates: 0, ticks: 0, gen: 0,
  decimals: null,     // the symbol's price precision, from its closes as quoted
};
const KEEP_BARS = 240;

async function getJSON(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function fmt(x) {
  if (x == null || !isFinite(x)) return "—";
  if (S.decimals != null) {
    return x.toLocaleString(undefined, { minimumFractionDigits: S.decimals, maximumFractionDigits: S.decimals });
  }
  const a = Math.abs(x);
  return x.toLocaleString(undefined, { maximumFractionDigits: a >= 100 ? 2 : a >= 1 ? 4 : 6 });
}

// The decimals of a price as the exchange quotes it (a close's text), 2 to 10.
function decimalsOf(text) {
  const t = String(text);
  const frac = t.includes(".") ? t.split(".")[1].replace(/0+$/, "").length : 0;
  return Math.min(10, Math.max(2, frac));
}

function option(sel, values, chosen) {
  sel.innerHTML = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = o.textContent = String(v);
    sel.appendChild(o);
  }
  if (values.map(String).includes(String(chosen))) sel.value = String(chosen);
}

async function init() {
  const series = (await getJSON("/api/v1/symbols")).data;
  if (series.length === 0) {
    $("chart").textContent = "No candles stored yet — is the pipeline running? This page retries every 5 s.";
    setTimeout(init, 5000);
    return;
  }
  const symbols = [...new Set(series.map((s) => s.symbol))].sort();
  const want = new URLSearchParams(location.search);
  S.symbol = want.get("symbol") || (symbols.includes("BTC-USDT") ? "BTC-USDT" : symbols[0]);
  S.series = series;
  option($("symbol"), symbols, S.symbol);
  if (want.get("model")) S.model = want.get("model");
  if (want.get("horizon")) S.horizon = Number(want.get("horizon"));
  for (const id of ["symbol", "model", "horizon"]) {
    $(id).addEventListener("change", () => {
      S[id] = id === "horizon" ? Number($(id).value) : $(id).value;
      load();
    });
  }
  $("level").addEventListener("input", odds);
  await load();
  setInterval(scores, 15000);
}

// The odds of the price the user typed, by the newest forecast of the selected model and
// horizon: closing at or above it at the target bar, and touching it before then.
async function odds() {
  const text = $("level").value;
  const level = Number(text);
  if (!text || !(level > 0)) { $("prob").textContent = "type a price"; return; }
  const s = S.series.find((x) => x.symbol === S.symbol && x.interval === S.interval);
  if (!s) return;
  const q = new URLSearchParams({ exchange: s.exchange, symbol: S.symbol, interval: S.interval,
    model: S.model, horizon: String(S.horizon), level: String(level) });
  let d;
  try { d = await getJSON(`/api/v1/probability?${q}`); }
  catch { $("prob").textContent = "no forecast to read it from yet"; return; }
  if (Number($("level").value) !== level) return; // typed on meanwhile
  const pct = (p) => `${(100 * p).toFixed(1)}%`;
  $("prob").textContent = `closes at or above it in ${S.horizon} bar(s): ${pct(d.above)} · touches it before: ${pct(d.touch)}`;
  document.body.dataset.above = String(d.above);
  document.body.dataset.touch = String(d.touch);
}

async function load() {
  const gen = ++S.gen;
  const ivs = S.series.filter((s) => s.symbol === S.symbol).map((s) => s.interval);
  S.interval = ivs.includes("1m") ? "1m" : ivs[0];
  const q = `symbol=${S.symbol}&interval=${S.interval}`;
  const latest = (await getJSON(`/api/v1/forecasts/latest?${q}`)).data;
  const models = [...new Set(latest.map((f) => f.model))].sort();
  const horizons = [...new Set(latest.map((f) => f.horizon))].sort((a, b) => a - b);
  if (models.length && !models.includes(S.model)) S.model = models.includes("ensemble") ? "ensemble" : models[0];
  if (horizons.length && !horizons.includes(S.horizon)) S.horizon = horizons[0];
  option($("model"), models, S.model);
  option($("horizon"), horizons, S.horizon);
  const [candles, fcs] = await Promise.all([
    getJSON(`/api/v1/candles?${q}&limit=${KEEP_BARS}`),
    getJSON(`/api/v1/forecasts?${q}&model=${S.model}&horizon=${S.horizon}&limit=${KEEP_BARS}`),
  ]);
  if (gen !== S.gen) return; // a newer selection won
  S.candles = new Map(candles.data.map((c) => [c.open_ms, Number(c.close)]));
  S.fc = new Map(fcs.data.map((f) => [f.target_ms, f]));
  const last = candles.data[candles.data.length - 1];
  S.decimals = candles.data.length ? Math.max(...candles.data.map((c) => decimalsOf(c.close))) : null;
  if (last) $("price").textContent = fmt(Number(last.close));
  draw();
  scores();
  alerts();
  odds();
  connect();
}

function trim() {
  const keys = [...S.candles.keys()].sort((a, b) => a - b);
  for (const k of keys.slice(0, Math.max(0, keys.length - KEEP_BARS))) S.candles.delete(k);
  const first = keys[Math.max(0, keys.length - KEEP_BARS)] ?? 0;
  for (const k of S.fc.keys()) if (k < first) S.fc.delete(k);
}

function draw() {
  trim();
  const xs = [...new Set([...S.candles.keys(), ...S.fc.keys()])].sort((a, b) => a - b);
  const col = (f) => xs.map((x) => { const v = S.fc.get(x); return v ? v[f] : null; });
  const data = [xs.map((x) => x / 1000), xs.map((x) => S.candles.get(x) ?? null),
    col("point"), col("hi95"), col("lo95"), col("hi80"), col("lo80")];
  const newest = [...S.fc.values()].sort((a, b) => b.base_ms - a.base_ms)[0];
  if (newest) {
    $("fc").textContent = `${fmt(newest.point)} (${S.model}, +${S.horizon})`;
    $("b80").textContent = `${fmt(newest.lo80)} – ${fmt(newest.hi80)}`;
    $("b95").textContent = `${fmt(newest.lo95)} – ${fmt(newest.hi95)}`;
    $("mv").textContent = newest.model_version ?? "— (a version 1 forecast)";
    $("degraded").hidden = newest.degraded !== true;
    document.body.dataset.modelVersion = newest.model_version ?? "";
  }
  document.body.dataset.candles = String(S.candles.size);
  document.body.dataset.forecasts = String(S.fc.size);
  document.body.dataset.bands = String(data[3].filter((v, i) => v != null && data[4][i] != null).length);
  const el = $("chart");
  const width = Math.max(320, el.clientWidth || 900);
  if (!S.plot) {
    el.textContent = "";
    const band = (a) => `rgba(235, 203, 139, ${a})`;
    S.plot = new uPlot({
      width, height: 420,
      scales: { x: { time: true } },
      axes: [{ stroke: "#7b8594", grid: { stroke: "#262e39" } },
             { stroke: "#7b8594", grid: { stroke: "#262e39" }, size: 80 }],
      series: [
        {},
        { label: "close", stroke: "#88c0d0", width: 1.5 },
        { label: "forecast", stroke: "#ebcb8b", width: 1, dash: [4, 4], spanGaps: true,
          points: { show: true, size: 3, fill: "#ebcb8b" } },
        { label: "hi95", stroke: "transparent", spanGaps: true, points: { show: false } },
        { label: "lo95", stroke: "transparent", spanGaps: true, points: { show: false } },
        { label: "hi80", stroke: "transparent", spanGaps: true, points: { show: false } },
        { label: "lo80", stroke: "transparent", spanGaps: true, points: { show: false } },
      ],
      bands: [{ series: [3, 4], fill: band(0.12) }, { series: [5, 6], fill: band(0.28) }],
    }, data, el);
  } else {
    S.plot.setData(data);
  }
}

function schedule() {
  if (S.dirty) return;
  S.dirty = true;
  setTimeout(() => { S.dirty = false; draw(); }, 250);
}

function connect() {
  if (S.ws) { S.ws.onclose = null; S.ws.close(); }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/api/v1/stream?symbols=${S.symbol}`);
  S.ws = ws;
  ws.onopen = () => { $("conn").className = "conn on"; $("conn").textContent = "● live"; };
  ws.onclose = () => {
    $("conn").className = "conn off"; $("conn").textContent = "● reconnecting";
    setTimeout(() => { if (S.ws === ws) connect(); }, 2000);
  };
  ws.onmessage = (m) => {
    let msg;
    try { msg = JSON.parse(m.data); } catch { return; }
    const d = msg.data;
    if (msg.kind === "tick") {
      $("price").textContent = fmt(Number(d.price));
      document.body.dataset.ticks = String(++S.ticks);
      return;
    }
    if (msg.kind === "candle" && d.interval === S.interval) {
      S.candles.set(d.open_ms, Number(d.close));
      S.decimals = Math.max(S.decimals ?? 2, decimalsOf(d.close));
    } else if (msg.kind === "forecast" && d.interval === S.interval && d.model === S.model
               && d.horizon === S.horizon) {
      S.fc.set(d.target_ms, d);
      if ($("level").value) odds();
    } else if (msg.kind === "alert") {
      addAlert(d, true);
      return;
    } else {
      return;
    }
    document.body.dataset.updates = String(++S.updates);
    schedule();
  };
}

// An interval label's length in ms ("1m", "2s", "1h", "1d"); 0 when unknown.
function barMs(label) {
  const m = /^(\d+)([smhd])$/.exec(label || "");
  return m ? Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[m[2]] : 0;
}

async function scores() {
  let rows;
  try { rows = (await getJSON(`/api/v1/accuracy?symbol=${S.symbol}&interval=${S.interval}`)).data; }
  catch { return; }
  const body = $("scores").querySelector("tbody");
  body.innerHTML = "";
  if (!rows.length) {
    // Say when the first scores will come: each forecast is scored when its target bar closes.
    const targets = [...S.fc.values()].map((f) => f.target_ms);
    const first = targets.length ? new Date(Math.min(...targets) + barMs(S.interval)) : null;
    const td = document.createElement("td");
    td.colSpan = 10;
    td.className = "muted";
    td.textContent = first
      ? `No scores yet. A forecast is scored when its target bar closes: the first at about ${first.toLocaleTimeString()}, shown here at the next checkpoint.`
      : "No scores yet. Forecasts start once the models have warmed up; each is scored when its target bar closes, horizon bars later.";
    const tr = document.createElement("tr");
    tr.appendChild(td);
    body.appendChild(tr);
    document.body.dataset.scores = "0";
    return;
  }
  rows.sort((a, b) => a.horizon - b.horizon || a.model.localeCompare(b.model));
  for (const r of rows) {
    const tr = document.createElement("tr");
    const rel = r.rel_mae;
    const cells = [r.model, r.horizon, rel == null ? "—" : rel.toFixed(3),
      r.mase == null ? "—" : r.mase.toFixed(3), r.coverage80.toFixed(3), r.coverage95.toFixed(3),
      fmt(r.winkler95), r.crps_rel == null ? "—" : r.crps_rel.toFixed(3),
      r.touch_ece == null ? "—" : r.touch_ece.toFixed(3), Math.round(r.n)];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = String(c);
      if (i === 2 && rel != null && r.model !== "naive") td.className = rel < 1 ? "good" : rel > 1 ? "bad" : "";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  document.body.dataset.scores = String(rows.length);
}

function addAlert(a, live) {
  const ul = $("alerts");
  if (ul.firstElementChild && ul.firstElementChild.classList.contains("muted")) ul.innerHTML = "";
  const li = document.createElement("li");
  li.className = a.state;
  const when = new Date(a.ts_ms).toISOString().replace("T", " ").slice(0, 19);
  li.textContent = `${when} ${a.state.toUpperCase()}: ${a.message}`;
  if (live) ul.prepend(li); else ul.appendChild(li);
  while (ul.children.length > 20) ul.lastChild.remove();
}

async function alerts() {
  try {
    const rows = (await getJSON(`/api/v1/alerts/events?symbol=${S.symbol}&limit=20`)).data;
    $("alerts").innerHTML = rows.length ? "" : '<li class="muted">none yet</li>';
    for (const a of rows) addAlert(a, false);
  } catch { /* no alert stage: keep the placeholder */ }
}

window.addEventListener("resize", () => {
  if (S.plot) S.plot.setSize({ width: Math.max(320, $("chart").clientWidth), height: 420 });
});
init().catch((e) => { $("chart").textContent = `failed to load: ${e.message}`; });
