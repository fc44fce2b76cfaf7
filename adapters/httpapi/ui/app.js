// GPU fleet dashboard: three views (fleet, one GPU, pipeline) over apigw's
// JSON API. No build step and no framework: the state of a view lives in
// the URL's hash (#/fleet?host=…, #/gpu/<id>?window=1h, #/pipeline), so a
// view can be bookmarked and the browser's back button works; every
// control writes the hash and a hashchange renders from it.
"use strict";
(function () {
  const PREFIX = "DCGM_FI_DEV_";
  const HOT = "DCGM_FI_DEV_GPU_TEMP";
  const BUSY = "DCGM_FI_DEV_GPU_UTIL";
  // Windows of the GPU view with a step that keeps about 100–300 points;
  // whole-minute steps read the 1-minute rollups.
  const WINDOWS = [
    { key: "15m", label: "15 min", secs: 900, step: 10 },
    { key: "1h", label: "1 hour", secs: 3600, step: 60 },
    { key: "6h", label: "6 hours", secs: 21600, step: 120 },
    { key: "24h", label: "24 hours", secs: 86400, step: 300 },
    { key: "7d", label: "7 days", secs: 604800, step: 1800 },
  ];
  const GPU_REFRESH_MS = 10000;
  const PIPE_REFRESH_MS = 5000;
  // The persisted rate is averaged over the polls of the last minute, not
  // taken between two polls: samples arrive in bursts (every GPU's at each
  // scrape, 30 s apart by default), so the difference of two polls 5 s
  // apart read 0 five times in six and six times the average the sixth.
  const RATE_WINDOW_S = 60;
  const FLEET_MAX_AGE_MS = 60000;
  const LATEST_CONCURRENCY = 6;

  const $ = (sel) => document.querySelector(sel);
  const cache = { gpus: null, metrics: null, latest: null, loadedAt: 0 };
  let timer = null; // the current view's refresh timer
  let charts = []; // uPlot instances of the current view
  let pipeHistory = newPipeHistory();
  let renderSeq = 0; // a newer render makes older async work stop

  // el builds an element; children are nodes or text (never parsed as HTML).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function status(msg, isError) {
    const s = $("#status");
    s.textContent = msg;
    s.classList.toggle("error", !!isError);
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try {
        const body = await r.json();
        if (body && body.error) msg = body.error.message || body.error;
        else if (body && body.detail) msg = body.detail;
      } catch (_) { /* not JSON */ }
      throw new Error(url.split("?")[0] + ": " + msg);
    }
    return r.json();
  }

  // ---------- URL state ----------
  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const q = raw.indexOf("?");
    const path = (q < 0 ? raw : raw.slice(0, q)).split("/").filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
    return { view: path[0] || "fleet", arg: path[1] || "", params };
  }

  function hashOf(view, arg, params) {
    let h = "#/" + view + (arg ? "/" + encodeURIComponent(arg) : "");
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) qs.set(k, v);
    const s = qs.toString();
    return s ? h + "?" + s : h;
  }

  // setParams changes some of the current view's parameters.
  function setParams(changes) {
    const st = parseHash();
    const params = Object.fromEntries(st.params);
    Object.assign(params, changes);
    location.hash = hashOf(st.view, st.arg, params);
  }

  // ---------- formatting ----------
  function short(metric) {
    return metric.startsWith(PREFIX) ? metric.slice(PREFIX.length) : metric;
  }
  function unitOf(metric) {
    const m = (cache.metrics || []).find((x) => x.name === metric);
    return m ? m.unit : "";
  }
  function num(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 10000) return Math.round(v).toLocaleString("en-US");
    if (a >= 100) return v.toFixed(0);
    return String(Math.round(v * 10) / 10);
  }
  // compact is num for axis ticks: 81k, 1.2M.
  function compact(v) {
    if (v === null || v === undefined || !isFinite(v)) return "";
    const a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return +(v / 1e3).toFixed(0) + "k";
    return num(v);
  }
  // Charts show UTC, like every other time on the page.
  const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
  function utc(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "–";
  }
  function clock(d) {
    return d.toISOString().slice(11, 19) + " UTC";
  }
  function age(secs) {
    if (secs === null || secs === undefined) return "–";
    if (secs < 90) return Math.round(secs) + " s";
    if (secs < 5400) return Math.round(secs / 60) + " min";
    if (secs < 172800) return Math.round(secs / 3600) + " h";
    return Math.round(secs / 86400) + " d";
  }

  // ---------- data ----------
  async function loadGPUs() {
    const out = [];
    let cursor = "";
    for (;;) {
      const page = await getJSON("/api/v1/gpus?limit=1000" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      out.push(...page.gpus);
      if (!page.next_cursor) return out;
      cursor = page.next_cursor;
    }
  }

  async function loadLatest(gpus, seq) {
    const latest = new Map();
    let next = 0;
    async function worker() {
      while (next < gpus.length && seq === renderSeq) {
        const g = gpus[next++];
        const body = await getJSON("/api/v1/gpus/" + encodeURIComponent(g.id) + "/latest");
        const values = {};
        for (const m of body.metrics) values[m.metric_name] = m.value;
        latest.set(g.id, values);
      }
    }
    await Promise.all(Array.from({ length: LATEST_CONCURRENCY }, worker));
    return latest;
  }

  async function ensureFleet(seq, force) {
    if (!force && cache.latest && Date.now() - cache.loadedAt < FLEET_MAX_AGE_MS) return;
    status("Loading the fleet…");
    const [gpus, metrics] = await Promise.all([loadGPUs(), getJSON("/api/v1/metrics")]);
    cache.gpus = gpus;
    cache.metrics = metrics.metrics;
    cache.latest = await loadLatest(gpus, seq);
    cache.loadedAt = Date.now();
  }

  // ---------- views ----------
  function show(view) {
    for (const v of ["fleet", "gpu", "pipeline"]) $("#view-" + v).hidden = v !== view;
    for (const [nav, on] of [["#nav-fleet", view !== "pipeline"], ["#nav-pipeline", view === "pipeline"]]) {
      if (on) $(nav).setAttribute("aria-current", "page");
      else $(nav).removeAttribute("aria-current");
    }
  }

  function stopView() {
    if (timer) clearInterval(timer);
    timer = null;
    for (const c of charts) c.destroy();
    charts = [];
  }

  async function route() {
    const seq = ++renderSeq;
    const st = parseHash();
    const same = route.last && route.last.view === st.view && route.last.arg === st.arg;
    route.last = st;
    show(st.view === "gpu" || st.view === "pipeline" ? st.view : "fleet");
    try {
      if (st.view === "gpu") await renderGPU(st, seq, same);
      else if (st.view === "pipeline") await renderPipeline(st, seq, same);
      else await renderFleet(st, seq, same);
    } catch (err) {
      if (seq === renderSeq) status(err.message, true);
    }
  }

  function fillSelect(sel, values, keep) {
    const first = sel.options[0] && sel.options[0].value === "" ? sel.options[0] : null;
    sel.replaceChildren(...(first ? [first] : []), ...values.map(([v, label]) => el("option", { value: v, text: label })));
    sel.value = values.some(([v]) => v === keep) ? keep : (first ? "" : (values[0] || [""])[0]);
  }

  function topIDs(metric, n) {
    const vals = [];
    // Only positive values: an idle or cold GPU is nobody's "busiest".
    for (const [id, v] of cache.latest) if (v[metric] > 0) vals.push([id, v[metric]]);
    vals.sort((a, b) => b[1] - a[1]);
    return new Set(vals.slice(0, n).map((x) => x[0]));
  }

  async function renderFleet(st, seq, same) {
    if (!same) stopView();
    await ensureFleet(seq, false);
    if (seq !== renderSeq) return;
    const p = st.params;
    const hosts = [...new Set(cache.gpus.map((g) => g.hostname))].sort();
    const models = [...new Set(cache.gpus.map((g) => g.model_name))].sort();
    const metrics = cache.metrics.map((m) => m.name);
    fillSelect($("#f-host"), hosts.map((h) => [h, h]), p.get("host") || "");
    fillSelect($("#f-model"), models.map((m) => [m, m]), p.get("model") || "");
    fillSelect($("#f-sort"), metrics.map((m) => [m, short(m)]), p.get("sort") || "");
    // The order applies to a metric; host order is always A to Z, index 0
    // up, so without a metric the select shows that and is disabled rather
    // than offering a choice that changes nothing.
    const byMetric = !!p.get("sort") && metrics.includes(p.get("sort"));
    $("#f-dir").value = byMetric && p.get("dir") !== "asc" ? "desc" : "asc";
    $("#f-dir").disabled = !byMetric;
    $("#f-dir").title = byMetric ? "" : "Hosts are listed A to Z; sort by a metric to choose the order";
    const summaryMetric = metrics.includes(p.get("metric")) ? p.get("metric") : (metrics.includes(HOT) ? HOT : metrics[0] || "");
    $("#f-metric").replaceChildren(...metrics.map((m) => el("option", { value: m, text: short(m) })));
    $("#f-metric").value = summaryMetric;

    const host = $("#f-host").value, model = $("#f-model").value, sort = $("#f-sort").value;
    const dir = $("#f-dir").value === "asc" ? 1 : -1;
    let rows = cache.gpus.filter((g) => (!host || g.hostname === host) && (!model || g.model_name === model));
    if (sort) {
      const val = (g) => (cache.latest.get(g.id) || {})[sort];
      rows = rows.slice().sort((a, b) => {
        const x = val(a), y = val(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1; // blanks last either way
        if (y === null || y === undefined) return -1;
        return dir * (x - y);
      });
    }
    const hot = topIDs(HOT, 3), busy = topIDs(BUSY, 3);
    const headerCell = (label, key, title, unit) => {
      const active = sort === key && key !== "";
      return el("th", { scope: "col", "aria-sort": active ? (dir > 0 ? "ascending" : "descending") : null },
        el("button", { type: "button", class: "sort", title: title || label, "data-sort": key,
          onclick: () => setParams({ sort: key, dir: active && dir < 0 ? "asc" : "desc" }) },
          label, active ? (dir > 0 ? " ▲" : " ▼") : "", unit ? el("small", { class: "unit", text: unit }) : null));
    };
    $("#gpu-table thead").replaceChildren(el("tr", {},
      headerCell("Host", "", "Sort by host and index"), el("th", { scope: "col" }, "#"), el("th", { scope: "col" }, "Model"),
      metrics.map((m) => headerCell(short(m), m, m + (unitOf(m) ? " (" + unitOf(m) + ")" : ""), unitOf(m)))));
    $("#gpu-table tbody").replaceChildren(...rows.map((g) => {
      const v = cache.latest.get(g.id) || {};
      const badges = [];
      if (hot.has(g.id)) badges.push(el("span", { class: "badge hot", text: "hottest" }));
      if (busy.has(g.id)) badges.push(el("span", { class: "badge busy", text: "busiest" }));
      return el("tr", { class: (hot.has(g.id) ? "hot " : "") + (busy.has(g.id) ? "busy" : ""), "data-gpu": g.id },
        el("td", {}, el("a", { href: hashOf("gpu", g.id, {}), title: "GPU " + g.id }, g.hostname), " ", badges),
        el("td", {}, String(g.gpu_index)), el("td", { class: "model", title: g.model_name }, g.model_name),
        metrics.map((m) => el("td", { class: "num" }, num(v[m]))));
    }));
    $("#gpu-count").textContent = String(rows.length);
    $("#gpu-table").dataset.drawn = "true";
    $("#gpu-table").dataset.rows = String(rows.length);
    $("#gpu-table").dataset.sort = sort ? sort + ":" + (dir > 0 ? "asc" : "desc") : "";
    await renderSummary(summaryMetric, seq);
    if (seq === renderSeq) status("Fleet loaded " + clock(new Date(cache.loadedAt)));
    if (!timer) timer = setInterval(() => { cache.loadedAt = 0; route(); }, FLEET_MAX_AGE_MS);
  }

  async function renderSummary(metric, seq) {
    if (!metric) return;
    const s = await getJSON("/api/v1/fleet/summary?top=3&metric_name=" + encodeURIComponent(metric));
    if (seq !== renderSeq) return;
    const u = s.unit ? " " + s.unit : "";
    const card = (label, value) => el("div", { class: "card" }, el("span", { class: "label", text: label }), el("span", { class: "value", text: value }));
    $("#summary").replaceChildren(
      card(short(metric) + " · GPUs", String(s.count)),
      card("min", num(s.min) + u), card("avg", num(s.avg) + u), card("p95", num(s.p95) + u), card("max", num(s.max) + u),
      el("div", { class: "card top" }, el("span", { class: "label", text: "highest" }),
        el("ol", {}, s.top.map((t) => el("li", {}, el("a", { href: hashOf("gpu", t.gpu_id, {}) }, t.hostname + " #" + t.gpu_index), " " + num(t.value) + u)))));
    $("#summary").dataset.metric = metric;
  }

  // ---------- one GPU ----------
  function windowOf(key) {
    return WINDOWS.find((w) => w.key === key) || WINDOWS[0];
  }

  function span(win) {
    const now = Math.floor(Date.now() / 1000);
    const align = win.step >= 60 ? 60 : win.step;
    const start = Math.floor((now - win.secs) / align) * align;
    return { start: new Date(start * 1000).toISOString(), end: new Date(now * 1000).toISOString() };
  }

  async function renderGPU(st, seq, same) {
    const id = st.arg;
    const win = windowOf(st.params.get("window"));
    const live = st.params.get("live") !== "0";
    stopView();
    if (!cache.gpus) {
      const [gpus, metrics] = await Promise.all([loadGPUs(), getJSON("/api/v1/metrics")]);
      cache.gpus = gpus;
      cache.metrics = metrics.metrics;
    }
    if (seq !== renderSeq) return;
    const g = cache.gpus.find((x) => x.id === id);
    $("#gpu-title").textContent = g ? g.hostname + " · GPU " + g.gpu_index : "GPU " + id;
    $("#gpu-meta").replaceChildren(
      el("span", {}, "UUID ", el("code", {}, id)),
      g ? el("span", {}, " · " + g.model_name + " · " + g.device + " · last sample " + utc(g.last_seen) + " UTC") : " · not in the registry");
    $("#windows").replaceChildren(...WINDOWS.map((w) => el("label", { class: "radio" },
      el("input", { type: "radio", name: "window", value: w.key, checked: w.key === win.key,
        onchange: () => setParams({ window: w.key }) }), " " + w.label)));
    $("#live").checked = live;
    const { start, end } = span(win);
    $("#dl-ndjson").href = "/api/v1/gpus/" + encodeURIComponent(id) + "/telemetry?format=ndjson&start_time=" +
      encodeURIComponent(start) + "&end_time=" + encodeURIComponent(end);
    $("#dl-ndjson").setAttribute("download", "telemetry-" + id + "-" + win.key + ".ndjson");
    const latest = await getJSON("/api/v1/gpus/" + encodeURIComponent(id) + "/latest");
    if (seq !== renderSeq) return;
    const metrics = latest.metrics.map((m) => m.metric_name);
    const box = $("#charts");
    box.dataset.drawn = "false";
    box.replaceChildren(...metrics.map((m) => el("figure", { class: "chart", id: "chart-" + m, "data-metric": m },
      el("figcaption", {}, short(m), el("span", { class: "unit", text: unitOf(m) ? " (" + unitOf(m) + ")" : "" })),
      el("div", { class: "plot" }))));
    await drawSeries(id, metrics, win, seq);
    if (seq !== renderSeq) return;
    box.dataset.drawn = "true";
    box.dataset.window = win.key;
    status("GPU " + (g ? g.hostname + " #" + g.gpu_index : id) + " · " + win.label + (live ? " · live" : ""));
    if (live) timer = setInterval(() => drawSeries(id, metrics, win, seq).catch((e) => status(e.message, true)), GPU_REFRESH_MS);
  }

  // sparse shows a series' points when it has few, so a fresh or patchy
  // series is visible as dots rather than specks of line.
  function sparse(u, sidx) {
    let n = 0;
    for (const v of u.data[sidx]) if (v !== null && v !== undefined) n++;
    return n <= 60;
  }

  // A silence longer than this between two samples is drawn as a gap; a
  // shorter one is bridged by the line (Grafana's "connect null values"
  // threshold). Two minutes is also when the pipeline view calls a host
  // stale.
  const SILENCE_S = 120;

  // chartData turns /series buckets into uPlot's columns [x, avg, max]: the
  // buckets with samples, and a null between two of them more than
  // max(SILENCE_S, 2 steps) apart. A step finer than the scrape interval
  // (10 s buckets of samples 30 s apart) leaves most buckets empty, and
  // drawn as they come the line broke at each one: dots, no line.
  function chartData(buckets, step) {
    const cols = [[], [], []], gap = Math.max(SILENCE_S, 2 * step);
    const add = (x, avg, max) => [x, avg, max].forEach((v, i) => cols[i].push(v));
    let prev = null;
    for (const b of buckets) {
      if (!(b.count > 0)) continue;
      const x = Date.parse(b.start) / 1000;
      if (prev !== null && x - prev > gap) add((prev + x) / 2, null, null);
      add(x, b.avg, b.max);
      prev = x;
    }
    return cols;
  }

  async function drawSeries(id, metrics, win, seq) {
    const { start, end } = span(win);
    const all = await Promise.all(metrics.map((m) => getJSON("/api/v1/gpus/" + encodeURIComponent(id) +
      "/series?metric_name=" + encodeURIComponent(m) + "&start_time=" + encodeURIComponent(start) +
      "&end_time=" + encodeURIComponent(end) + "&step=" + win.step + "s")));
    if (seq !== renderSeq) return;
    all.forEach((s, i) => {
      const fig = document.getElementById("chart-" + metrics[i]);
      if (!fig) return;
      const data = chartData(s.buckets, win.step);
      fig.dataset.points = String(s.buckets.filter((b) => b.count > 0).length);
      // The canvas says nothing to a screen reader: the plot's label does.
      const last = [...s.buckets].reverse().find((b) => b.count > 0);
      fig.querySelector(".plot").setAttribute("role", "img");
      fig.querySelector(".plot").setAttribute("aria-label", short(metrics[i]) + " over " + win.label + ": " +
        fig.dataset.points + " buckets with data" + (last ? ", latest average " + num(last.avg) + (s.unit ? " " + s.unit : "") : ""));
      fig.dataset.source = s.source;
      let chart = charts.find((c) => c.root.parentElement === fig.querySelector(".plot"));
      if (chart) {
        chart.setData(data);
        return;
      }
      const plot = fig.querySelector(".plot");
      chart = new uPlot({
        width: Math.max(plot.clientWidth, 200), height: 180, tzDate,
        legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true, range: () => [Date.parse(span(win).start) / 1000, Date.now() / 1000] } },
        axes: [{}, { size: 50, values: (u, vals) => vals.map(compact) }],
        series: [
          { value: (u, v) => (v === null ? "–" : new Date(v * 1000).toISOString().slice(5, 16).replace("T", " ")) },
          { label: "avg", stroke: "#1f6feb", width: 1.5, value: (u, v) => num(v), points: { show: sparse, size: 5, fill: "#1f6feb" } },
          { label: "max", stroke: "#d4a72c", width: 1, dash: [4, 3], value: (u, v) => num(v) },
        ],
      }, data, plot);
      charts.push(chart);
    });
  }

  // ---------- pipeline ----------
  function newPipeHistory() {
    return { t: [], rate: [], backlog: [], polls: [], reading: null };
  }

  // windowRate adds a snapshot (t in seconds, n samples inserted so far) to
  // polls, drops the polls the window no longer needs, and returns the rate
  // over the window, {rate, span}: from the newest poll at least
  // RATE_WINDOW_S old, or the oldest one while the window fills. It returns
  // null for a snapshot no newer than the last and when there is nothing to
  // compare with yet: the first poll, or the first after the counter went
  // back (a dropped partition takes its count along), which restarts the
  // window.
  function windowRate(polls, t, n) {
    const last = polls[polls.length - 1];
    if (last && t <= last.t) return null;
    if (last && n < last.n) polls.length = 0;
    polls.push({ t, n });
    while (polls.length > 2 && t - polls[1].t >= RATE_WINDOW_S) polls.shift();
    if (polls.length < 2) return null;
    return { rate: (n - polls[0].n) / (t - polls[0].t), span: t - polls[0].t };
  }

  async function renderPipeline(st, seq, same) {
    if (!same) {
      stopView();
      pipeHistory = newPipeHistory();
    }
    await Promise.all([pollPipeline(seq), renderDeadLetters(st.params.get("dl") || "", seq)]);
    if (!timer && seq === renderSeq) timer = setInterval(() => pollPipeline(renderSeq).catch((e) => status(e.message, true)), PIPE_REFRESH_MS);
  }

  async function pollPipeline(seq) {
    const p = await getJSON("/api/v1/pipeline");
    if (seq !== renderSeq) return;
    const t = Date.parse(p.time) / 1000;
    const h = pipeHistory;
    const r = windowRate(h.polls, t, p.samples_inserted);
    if (r) {
      h.reading = r;
      h.t.push(t);
      h.rate.push(r.rate);
      h.backlog.push(p.queue_backlog);
      if (h.t.length > 360) for (const k of ["t", "rate", "backlog"]) h[k].shift();
    }
    const stale = p.hosts.filter((x) => x.stale);
    const card = (label, value, cls) => el("div", { class: "card " + (cls || "") }, el("span", { class: "label", text: label }), el("span", { class: "value", text: value }));
    const oldest = p.oldest_queued ? (t - Date.parse(p.oldest_queued) / 1000) : null;
    $("#pipe-cards").replaceChildren(
      card(h.reading ? "persisted/s · " + age(h.reading.span) + " avg" : "persisted samples/s", h.reading ? num(h.reading.rate) : "measuring…"),
      card("queue backlog", p.queue_backlog === null ? "n/a" : num(p.queue_backlog) + (p.queue_backlog_capped ? "+" : "")),
      card("oldest queued", oldest === null ? "none" : age(oldest)),
      card("dead letters", num(p.dead_letters) + (p.dead_letters_capped ? "+" : ""), p.dead_letters > 0 ? "warn" : ""),
      card("stale hosts", stale.length + " / " + p.hosts.length, stale.length ? "bad" : ""));
    $("#stale-note").textContent = "(stale after " + age(p.stale_after_seconds) + " without a sample)";
    $("#host-table tbody").replaceChildren(...p.hosts.map((x) => el("tr", { class: x.stale ? "stale" : "" },
      el("th", { scope: "row" }, x.hostname), el("td", { class: "num" }, String(x.gpus)), el("td", {}, utc(x.last_seen)),
      el("td", { class: "num" }, age(x.age_seconds)), el("td", {}, x.stale ? el("strong", { text: "STALE" }) : "ok"))));
    $("#host-table").dataset.loaded = "true";
    drawPipeChart();
    status("Pipeline updated " + clock(new Date()));
  }

  function drawPipeChart() {
    const h = pipeHistory;
    const data = [h.t, h.rate, h.backlog.map((b) => (b === null ? null : b))];
    if (charts.length) {
      charts[0].setData(data);
      return;
    }
    const box = $("#pipe-chart");
    box.replaceChildren();
    charts.push(new uPlot({
      width: Math.max(box.clientWidth, 200), height: 200, tzDate,
      legend: { live: false },
      // At least the last 5 minutes, from the polls themselves: for a single
      // point uPlot's own x range would span 10^5 days of seconds.
      scales: { x: { time: true, range: () => {
        const t = pipeHistory.t, hi = t.length ? t[t.length - 1] : Date.now() / 1000;
        return [Math.min(t.length ? t[0] : hi, hi - 300), hi];
      } }, n: { auto: true } },
      // Time ticks at least 90 px apart: at uPlot's default 50 px the first
      // tick's date line ran into the next minute's label.
      axes: [{ space: 90 }, { scale: "y", size: 60, label: "samples/s", values: (u, v) => v.map(compact) },
        { scale: "n", side: 1, size: 60, label: "backlog", grid: { show: false }, values: (u, v) => v.map(compact) }],
      series: [{}, { label: "persisted/s", scale: "y", stroke: "#1f6feb", width: 1.5, value: (u, v) => num(v) },
        { label: "backlog", scale: "n", stroke: "#cf222e", width: 1.5, value: (u, v) => num(v) }],
    }, data, box));
  }

  async function renderDeadLetters(cursor, seq) {
    const page = await getJSON("/api/v1/dead-letters?limit=20" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    if (seq !== renderSeq) return;
    const rows = page.dead_letters.map((d) => el("tr", { "data-msg": d.msg_uuid },
      el("td", { class: "num" }, String(d.id)), el("td", {}, utc(d.created_at)), el("td", {}, d.topic),
      el("td", { class: "reason" }, d.reason), el("td", {}, el("code", {}, d.msg_uuid)),
      el("td", {}, el("code", { class: "payload", title: d.payload }, d.payload.length > 120 ? d.payload.slice(0, 120) + "…" : d.payload),
        d.payload_truncated ? " (" + d.payload_bytes + " bytes)" : "")));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "6", text: cursor ? "No older dead letters." : "No dead letters." })));
    $("#dl-table tbody").replaceChildren(...rows);
    $("#dl-table").dataset.loaded = "true";
    const older = $("#dl-older");
    older.disabled = !page.next_cursor;
    older.onclick = () => setParams({ dl: page.next_cursor });
    $("#dl-newest").disabled = !cursor;
    $("#dl-newest").onclick = () => setParams({ dl: "" });
  }

  // ---------- wiring ----------
  function init() {
    $("#f-host").addEventListener("change", (e) => setParams({ host: e.target.value }));
    $("#f-model").addEventListener("change", (e) => setParams({ model: e.target.value }));
    $("#f-sort").addEventListener("change", (e) => setParams({ sort: e.target.value }));
    $("#f-dir").addEventListener("change", (e) => setParams({ dir: e.target.value }));
    $("#f-metric").addEventListener("change", (e) => setParams({ metric: e.target.value }));
    $("#live").addEventListener("change", (e) => setParams({ live: e.target.checked ? "" : "0" }));
    for (const f of document.querySelectorAll("form")) f.addEventListener("submit", (e) => e.preventDefault());
    window.addEventListener("hashchange", route);
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        for (const c of charts) {
          const w = c.root.parentElement.clientWidth;
          if (w > 0) c.setSize({ width: w, height: c.height });
        }
      }, 150);
    });
    if (!location.hash) history.replaceState(null, "", "#/fleet");
    route();
  }

  // The pure helpers the browser tests call on their own inputs.
  window.dashboardTesting = Object.freeze({ windowRate, chartData });
  document.addEventListener("DOMContentLoaded", init);
})();
