/* Swarm AI Lab dashboard: plain JS, no framework. Everything from the network is shown with textContent.
 *
 * Connects as a dashboard (auth {dashboard: true, token}): no session, only `dashboard` snapshots, about one a
 * second. The token is the master's operator token, given in the address (`/dashboard#token=...`, as `lab up`
 * prints it; `?token=` works too): the page keeps it in this tab's sessionStorage, so a reload still connects,
 * and strips it from the address bar, so it is not bookmarked, shared or shown. Without it, or with a wrong one,
 * the master refuses the connection and the page says so.
 * A snapshot is the whole picture (workers, queue, the last five minutes of answers per second), so the page
 * keeps no history of its own: it redraws from each one, and a reload or a reconnect loses nothing. */
(() => {
  "use strict";

  const WINDOW_S = 300; // the charts' x axis: the last five minutes
  const AVERAGE_S = 10; // the throughput line: answers per second averaged over this many seconds
  const CARD_S = 60; // the cards' throughput and latency: over the last minute

  const $ = (id) => document.getElementById(id);
  const byTestId = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const els = {
    status: $("status"),
    statusText: document.querySelector("#status .status-text"),
    rows: $("workers"),
    noWorkers: $("no-workers"),
    tpl: $("worker-tpl"),
    throughputCanvas: $("throughput-chart"),
    latencyCanvas: $("latency-chart"),
  };
  const card = (id) => byTestId(document, id);
  const rows = new Map(); // workerId -> {node, cells}

  // ---------- formatting ----------
  const num = (v) => (Number.isFinite(v) ? v : null);
  const str = (v) => (typeof v === "string" ? v : v == null ? "" : String(v));
  const STATES = new Set(["idle", "busy", "offline", "lost"]);

  function seconds(ms) {
    if (ms == null) return "–";
    if (ms < 10000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 60000) return `${Math.round(ms / 1000)} s`;
    const m = Math.floor(ms / 60000);
    const s = Math.round((ms % 60000) / 1000);
    return `${m} min ${String(s).padStart(2, "0")} s`;
  }
  function ago(ms) {
    if (ms == null) return "–";
    return ms < 1500 ? "just now" : `${seconds(ms)} ago`;
  }
  function rate(v) {
    return v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
  }

  function setStatus(state, text) {
    els.status.dataset.state = state;
    els.statusText.textContent = text;
  }

  // ---------- charts ----------
  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }
  const colors = {
    text: cssVar("--muted", "#5d6375"),
    grid: cssVar("--border", "#dde1ea"),
    accent: cssVar("--accent", "#4f46e5"),
    soft: cssVar("--accent-soft", "#e8e7fd"),
    warn: cssVar("--warn", "#b45309"),
  };

  function chartOptions(yTitle, legend) {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales: {
        x: {
          type: "linear",
          min: -WINDOW_S,
          max: 0,
          grid: { color: colors.grid },
          ticks: {
            color: colors.text,
            stepSize: 60,
            callback: (v) => (v === 0 ? "now" : `−${-v / 60} min`),
          },
        },
        y: {
          beginAtZero: true,
          suggestedMax: 1,
          grid: { color: colors.grid },
          ticks: { color: colors.text, maxTicksLimit: 5 },
          title: { display: true, text: yTitle, color: colors.text },
        },
      },
      plugins: {
        legend: {
          display: legend,
          align: "end",
          labels: { color: colors.text, boxWidth: 10, boxHeight: 10 },
        },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? `${Math.round(-items[0].parsed.x)} s ago` : ""),
          },
        },
      },
    };
  }

  // A few answers are dots (a lone one would be invisible as a line); many are a line, dots would clutter it.
  const sparseDots = (ctx) => (ctx.dataset.data.length > 20 ? 0 : 3);

  function makeCharts() {
    if (typeof window.Chart !== "function") return null; // the vendor script is missing: the rest still works
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    const throughput = new Chart(els.throughputCanvas, {
      type: "line",
      data: {
        datasets: [{
          label: "answers/s",
          data: [],
          borderColor: colors.accent,
          backgroundColor: colors.soft,
          fill: "origin",
          borderWidth: 2,
          pointRadius: 0,
          tension: 0.25,
        }],
      },
      options: chartOptions("answers/s", false),
    });
    const latency = new Chart(els.latencyCanvas, {
      type: "line",
      data: {
        datasets: [
          { label: "p50", data: [], borderColor: colors.accent, backgroundColor: colors.accent,
            borderWidth: 2, pointRadius: sparseDots, spanGaps: true, tension: 0.2 },
          { label: "p95", data: [], borderColor: colors.warn, backgroundColor: colors.warn,
            borderWidth: 1.5, pointRadius: sparseDots, spanGaps: true, tension: 0.2 },
        ],
      },
      options: chartOptions("seconds", true),
    });
    return { throughput, latency };
  }
  const charts = makeCharts();

  // The snapshot's series as chart points: x in seconds before the snapshot (negative), y per second.
  function seriesPoints(snapshot) {
    const s = snapshot.series || {};
    const answers = Array.isArray(s.answers) ? s.answers : [];
    const p50 = Array.isArray(s.p50) ? s.p50 : [];
    const p95 = Array.isArray(s.p95) ? s.p95 : [];
    const start = num(s.start) ?? 0;
    const step = num(s.stepMs) || 1000;
    const now = num(snapshot.timestamp) ?? Date.now();
    const xs = answers.map((_, i) => (start + (i + 1) * step - now) / 1000); // the end of each second
    const throughput = [];
    let sum = 0;
    for (let i = 0; i < answers.length; i++) {
      sum += num(answers[i]) ?? 0;
      if (i >= AVERAGE_S) sum -= num(answers[i - AVERAGE_S]) ?? 0;
      throughput.push({ x: xs[i], y: sum / Math.min(i + 1, AVERAGE_S) });
    }
    const latency = (values) => xs.flatMap((x, i) => (num(values[i]) == null ? [] : [{ x, y: values[i] / 1000 }]));
    return { answers, throughput, p50: latency(p50), p95: latency(p95) };
  }

  function drawCharts(points) {
    const total = points.answers.reduce((a, b) => a + (num(b) ?? 0), 0);
    els.throughputCanvas.dataset.answers = String(total);
    els.latencyCanvas.dataset.points = String(points.p50.length);
    if (!charts) return;
    charts.throughput.data.datasets[0].data = points.throughput;
    charts.latency.data.datasets[0].data = points.p50;
    charts.latency.data.datasets[1].data = points.p95;
    charts.throughput.update("none");
    charts.latency.update("none");
  }

  // ---------- cards ----------
  function drawCards(snapshot, points, lastMinute) {
    const idle = num(snapshot.idle) ?? 0;
    const busy = num(snapshot.busy) ?? 0;
    const gone = (num(snapshot.offline) ?? 0) + (num(snapshot.lost) ?? 0);
    card("workers-online").textContent = String(idle + busy);
    card("workers-idle").textContent = String(idle);
    card("workers-busy").textContent = String(busy);
    card("workers-gone").textContent = String(gone);
    card("workers-gone-line").hidden = gone === 0;
    card("queue-length").textContent = String(num(snapshot.queued) ?? 0);
    card("in-flight").textContent = String(num(snapshot.inFlight) ?? 0);
    const recent = points.answers.slice(-CARD_S);
    const perSecond = recent.length ? recent.reduce((a, b) => a + (num(b) ?? 0), 0) / recent.length : 0;
    card("throughput").textContent = rate(perSecond);
    card("answers-total").textContent = String(points.answers.reduce((a, b) => a + (num(b) ?? 0), 0));
    const lm = lastMinute || {};
    card("latency-p50").textContent = lm.p50 == null ? "–" : seconds(lm.p50);
    card("latency-p95").textContent = lm.p95 == null ? "–" : seconds(lm.p95);
  }

  // ---------- workers table ----------
  function rowFor(workerId) {
    let row = rows.get(workerId);
    if (!row) {
      const node = els.tpl.content.firstElementChild.cloneNode(true);
      const c = (id) => byTestId(node, id);
      row = {
        node,
        id: c("worker-id"),
        language: c("worker-language"),
        state: c("worker-state"),
        task: c("worker-task"),
        taskTime: c("worker-task-time"),
        done: c("worker-done"),
        failed: c("worker-failed"),
        lastSeen: c("worker-last-seen"),
      };
      node.dataset.workerId = workerId;
      row.id.textContent = workerId;
      rows.set(workerId, row);
    }
    return row;
  }

  function drawWorkers(snapshot) {
    const now = num(snapshot.timestamp) ?? Date.now();
    const workers = Array.isArray(snapshot.workers) ? snapshot.workers : [];
    const seen = new Set();
    // Online first (busy, then idle), then the gone ones; by id within each, so rows do not jump around.
    const order = { busy: 0, idle: 1, lost: 2, offline: 3 };
    const sorted = workers
      .filter((w) => w && typeof w.workerId === "string")
      .sort((a, b) => (order[a.state] ?? 4) - (order[b.state] ?? 4) || a.workerId.localeCompare(b.workerId));
    for (const w of sorted) {
      const row = rowFor(w.workerId);
      const state = STATES.has(w.state) ? w.state : "unknown";
      seen.add(w.workerId);
      row.node.dataset.state = state;
      row.language.textContent = str(w.language) || "unknown";
      row.language.dataset.lang = str(w.language);
      row.state.textContent = state;
      row.state.dataset.state = state;
      row.task.textContent = str(w.taskId);
      row.node.dataset.taskId = str(w.taskId);
      row.taskTime.textContent = w.taskId ? seconds(num(w.taskMs)) : "";
      row.done.textContent = String(num(w.tasksDone) ?? 0);
      row.failed.textContent = String(num(w.tasksFailed) ?? 0);
      row.failed.classList.toggle("bad", (num(w.tasksFailed) ?? 0) > 0);
      const last = num(w.lastSeen);
      row.lastSeen.textContent = last ? ago(Math.max(0, now - last)) : "–";
      els.rows.appendChild(row.node); // in order: appending an attached node moves it
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.node.remove();
        rows.delete(id);
      }
    }
    els.noWorkers.hidden = rows.size > 0;
  }

  // ---------- the connection ----------
  const TOKEN_KEY = "swarm-ai-lab.operatorToken";
  const REFUSED = "operator token required: open the URL `lab up` printed";

  // The operator token from the address (`#token=` or `?token=`), else the one this tab kept; the address bar
  // keeps everything else.
  function operatorToken() {
    const url = new URL(window.location.href);
    const hash = new URLSearchParams(url.hash.replace(/^#/, ""));
    const given = hash.get("token") || url.searchParams.get("token");
    if (!given) {
      try {
        return sessionStorage.getItem(TOKEN_KEY) || "";
      } catch {
        return "";
      }
    }
    try {
      sessionStorage.setItem(TOKEN_KEY, given);
    } catch {
      /* private mode: this load still has it */
    }
    hash.delete("token");
    url.searchParams.delete("token");
    const rest = hash.toString();
    history.replaceState(history.state, "", url.pathname + url.search + (rest ? `#${rest}` : ""));
    return given;
  }

  // The master refused the connection: say why. A wrong or stale token is not offered again (a refusal for
  // another reason, too many connections say, keeps it).
  function refused(message) {
    if (message.startsWith("operator token")) {
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch {
        /* nothing kept */
      }
    }
    setStatus("disconnected", "Refused");
    let notice = byTestId(document, "operator-notice");
    if (!notice) {
      notice = document.createElement("p");
      notice.className = "notice";
      notice.dataset.kind = "refused";
      notice.dataset.testid = "operator-notice";
      notice.setAttribute("role", "alert");
      document.querySelector("main").prepend(notice);
    }
    notice.textContent = message;
  }

  function render(snapshot) {
    if (!snapshot || typeof snapshot !== "object") return;
    const points = seriesPoints(snapshot);
    drawCards(snapshot, points, snapshot.lastMinute);
    drawWorkers(snapshot);
    drawCharts(points);
  }

  if (typeof window.io !== "function") {
    setStatus("disconnected", "Socket.IO client missing");
    return;
  }
  const token = operatorToken();
  const socket = io({ auth: { dashboard: true, token } });
  socket.on("connect", () => setStatus("connected", "Live"));
  socket.on("disconnect", () => setStatus("reconnecting", "Reconnecting…"));
  socket.io.on("reconnect_attempt", () => setStatus("reconnecting", "Reconnecting…"));
  socket.on("connect_error", (err) => {
    // Refused by the master (no token, a wrong one): the client does not retry, and the page says why.
    if (!socket.active) refused(err && err.message ? String(err.message) : REFUSED);
    else setStatus("disconnected", "Master unreachable, retrying…");
  });
  socket.on("dashboard", render);
})();
