/* Swarm AI Lab chat: plain JS, no framework. Everything from the network is shown with textContent. */
(() => {
  "use strict";

  const SESSION_KEY = "swarm-ai-lab.sessionId";
  const ACK_TIMEOUT_MS = 30000; // no acknowledgement after this: the question is marked failed
  const ORPHAN_TTL_MS = 60000; // events for a taskId not acknowledged yet are kept this long
  const ADOPT_AFTER_MS = 3000; // an answer still unclaimed after this is shown on its own (resumed session)

  const $ = (id) => document.getElementById(id);
  const els = {
    status: $("status"),
    statusText: document.querySelector("#status .status-text"),
    session: $("session-id"),
    workers: $("workers"),
    log: $("log"),
    empty: $("empty"),
    form: $("composer"),
    query: $("query"),
    apiKey: $("api-key"),
    tpl: $("exchange-tpl"),
  };

  const byTask = new Map(); // taskId -> exchange
  const orphans = new Map(); // taskId -> {at, events: [[name, data, arrivedAt], ...]}
  const exchanges = []; // every exchange, oldest first

  // ---------- small helpers ----------
  // sessionStorage may be unavailable (privacy settings): then sessions are simply not resumed.
  const storage = {
    get: () => { try { return window.sessionStorage.getItem(SESSION_KEY); } catch { return null; } },
    set: (v) => { try { window.sessionStorage.setItem(SESSION_KEY, v); } catch { /* ignore */ } },
    clear: () => { try { window.sessionStorage.removeItem(SESSION_KEY); } catch { /* ignore */ } },
  };

  const toInt = (v) => {
    const n = Number(v);
    return Number.isFinite(n) ? Math.max(0, Math.round(n)) : null;
  };
  const str = (v) => (typeof v === "string" ? v : v == null ? "" : String(v));

  // Follow new content only when the reader is already at the bottom (decided before the change).
  function atBottom() {
    const l = els.log;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 40;
  }
  function change(fn) {
    const follow = atBottom();
    fn();
    if (follow) els.log.scrollTop = els.log.scrollHeight;
  }

  function setStatus(state, text) {
    els.status.dataset.state = state;
    els.statusText.textContent = text;
  }

  // ---------- exchanges (one question and its answer) ----------
  function createExchange(query) {
    const node = els.tpl.content.firstElementChild.cloneNode(true);
    const q = (sel) => node.querySelector(`[data-testid="${sel}"]`);
    const ex = {
      node,
      query,
      taskId: null,
      sentAt: performance.now(),
      done: false,
      question: q("question"),
      progress: node.querySelector(".progress"),
      position: q("queue-position"),
      answer: q("answer"),
      error: q("error"),
      meta: node.querySelector(".meta"),
      worker: q("answer-worker"),
      processing: q("answer-processing-ms"),
      total: q("answer-total-ms"),
    };
    ex.question.textContent = query;
    setState(ex, "sending");
    els.empty.hidden = true;
    els.log.appendChild(node);
    els.log.scrollTop = els.log.scrollHeight;
    exchanges.push(ex);
    return ex;
  }

  function setState(ex, state) {
    ex.node.dataset.state = state;
    ex.node.setAttribute("aria-busy", String(state === "sending" || state === "queued" || state === "working"));
  }

  function showQueued(ex, position) {
    if (ex.done) return;
    const p = toInt(position);
    if (p === null || p === 0) {
      // Position 0: handed to a worker at once; task-assigned will name it.
      if (ex.node.dataset.state !== "working") {
        setState(ex, "queued");
        ex.position.textContent = "Handing to a worker…";
      }
      return;
    }
    setState(ex, "queued");
    ex.position.dataset.position = String(p);
    ex.position.textContent = `In queue · position ${p}${p === 1 ? " (next)" : ""}`;
  }

  function showWorking(ex, workerId) {
    if (ex.done) return;
    setState(ex, "working");
    delete ex.position.dataset.position;
    ex.position.textContent = workerId ? `${str(workerId)} is working…` : "A worker is working…";
  }

  function showFailed(ex, message, data, at) {
    if (ex.done) return;
    ex.done = true;
    setState(ex, "failed");
    ex.progress.hidden = true;
    ex.error.textContent = str(message) || "Something went wrong.";
    ex.error.hidden = false;
    if (data) fillMeta(ex, data, at);
  }

  function fillMeta(ex, data, at) {
    const total = Math.max(0, Math.round(at - ex.sentAt));
    const processing = toInt(data.processingTime);
    ex.worker.textContent = str(data.workerId) || "unknown";
    ex.processing.textContent = processing === null ? "?" : String(processing);
    ex.total.textContent = String(total);
    ex.meta.hidden = false;
  }

  function showAnswer(ex, data, at) {
    if (ex.done) return;
    if (str(data.error)) {
      showFailed(ex, data.error, data, at);
      return;
    }
    ex.done = true;
    setState(ex, "answered");
    ex.progress.hidden = true;
    ex.answer.textContent = str(data.response);
    ex.answer.hidden = false;
    fillMeta(ex, data, at);
  }

  // `at`: when the event arrived (performance.now()), so buffered events keep their own time.
  function apply(ex, name, data, at = performance.now()) {
    change(() => {
      if (name === "task-queued") showQueued(ex, data.position);
      else if (name === "task-assigned") showWorking(ex, data.workerId);
      else if (name === "ai-response") showAnswer(ex, data, at);
    });
  }

  // ---------- correlation by taskId (events may arrive before the ack) ----------
  function dispatch(name, data) {
    if (!data || typeof data !== "object") return;
    const taskId = str(data.taskId);
    if (!taskId) {
      // A master without task ids: match an answer to the oldest open question with the same text.
      if (name === "ai-response") {
        const ex = exchanges.find((e) => !e.done && e.query === str(data.query));
        if (ex) apply(ex, name, data);
      }
      return;
    }
    const ex = byTask.get(taskId);
    if (ex) {
      apply(ex, name, data);
      return;
    }
    pruneOrphans();
    const entry = orphans.get(taskId) || { at: Date.now(), events: [] };
    entry.events.push([name, data, performance.now()]);
    orphans.set(taskId, entry);
    // An answer nobody in this page asked for: a question sent before a reload of this session.
    if (name === "ai-response") setTimeout(() => adopt(taskId), ADOPT_AFTER_MS);
  }

  function adopt(taskId) {
    const entry = orphans.get(taskId);
    if (!entry) return;
    const [, last, at] = entry.events[entry.events.length - 1];
    const ex = createExchange(str(last.query) || "(question sent before this page was loaded)");
    const sent = Number(last.queryTimestamp); // server clock: only an estimate of the total time
    ex.sentAt = Number.isFinite(sent) && sent > 0 ? at - Math.max(0, Date.now() - (performance.now() - at) - sent) : at;
    ex.node.dataset.resumed = "true";
    bind(ex, taskId, 0);
  }

  function pruneOrphans() {
    const now = Date.now();
    for (const [id, entry] of orphans) if (now - entry.at > ORPHAN_TTL_MS) orphans.delete(id);
  }

  function bind(ex, taskId, position) {
    ex.taskId = taskId;
    ex.node.dataset.taskId = taskId;
    byTask.set(taskId, ex);
    apply(ex, "task-queued", { position });
    const early = orphans.get(taskId);
    if (early) {
      orphans.delete(taskId);
      for (const [name, data, at] of early.events) apply(ex, name, data, at);
    }
  }

  // ---------- socket ----------
  if (typeof window.io !== "function") {
    setStatus("disconnected", "Disconnected · client library missing");
    return;
  }

  const socket = window.io({
    // A function so that every (re)connection offers the latest session id.
    auth: (cb) => {
      const sessionId = storage.get();
      cb(sessionId ? { sessionId } : {});
    },
  });

  socket.on("connect", () => setStatus("connected", "Connected"));
  socket.on("disconnect", (reason) => {
    // "io server disconnect": the server closed us; the client will not retry by itself.
    if (reason === "io server disconnect") {
      setStatus("disconnected", "Disconnected");
      setTimeout(() => socket.connect(), 2000);
    } else {
      setStatus("reconnecting", "Reconnecting…");
    }
  });
  socket.io.on("reconnect_failed", () => setStatus("disconnected", "Disconnected"));
  socket.on("connect_error", () => {
    if (socket.active) {
      setStatus("reconnecting", "Reconnecting…");
      return;
    }
    // Refused by the server (perhaps the stored session): forget it and try again as a new session.
    setStatus("disconnected", "Disconnected");
    storage.clear();
    setTimeout(() => socket.connect(), 3000);
  });

  socket.on("session-id", (id) => {
    const sessionId = str(id);
    if (!sessionId) return;
    storage.set(sessionId);
    els.session.textContent = sessionId;
    els.session.title = `Session id: ${sessionId}`;
  });

  for (const name of ["task-queued", "task-assigned", "ai-response"]) {
    socket.on(name, (data, ack) => {
      dispatch(name, data);
      // The master keeps an answer until a page acknowledges it, and sends it again on reconnect.
      if (typeof ack === "function") ack(true);
    });
  }

  socket.on("system-status", (s) => {
    if (!s || typeof s !== "object") return;
    const workers = Array.isArray(s.workers) ? s.workers.length : toInt(s.workers);
    const parts = [];
    if (workers !== null) parts.push(`${workers} worker${workers === 1 ? "" : "s"}`);
    if (toInt(s.busy) !== null) parts.push(`${toInt(s.busy)} busy`);
    const queued = toInt(s.queued ?? s.queue_length);
    if (queued !== null) parts.push(`${queued} queued`);
    els.workers.textContent = parts.join(" · ");
    els.workers.hidden = parts.length === 0;
  });

  // ---------- sending ----------
  function send() {
    const query = els.query.value.trim();
    if (!query) {
      els.query.focus();
      return;
    }
    const payload = { query };
    const key = els.apiKey.value.trim();
    if (key) payload.apiKey = key; // only in this message; never stored, never shown
    const ex = createExchange(query);
    els.query.value = "";
    autosize();
    els.query.focus();
    socket.timeout(ACK_TIMEOUT_MS).emit("user-query", payload, (err, ack) => change(() => {
      if (err) {
        showFailed(ex, "No acknowledgement from the server (timed out).");
      } else if (!ack || typeof ack !== "object") {
        showFailed(ex, "Unexpected acknowledgement from the server.");
      } else if (ack.error) {
        showFailed(ex, ack.error);
      } else if (ack.taskId) {
        bind(ex, str(ack.taskId), ack.position);
      } else {
        setState(ex, "queued"); // a master without task ids: answers are matched by text
        ex.position.textContent = "Waiting for an answer…";
      }
    }));
  }

  function autosize() {
    els.query.style.height = "auto";
    els.query.style.height = `${Math.min(els.query.scrollHeight, 200)}px`;
  }

  els.form.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  els.query.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  els.query.addEventListener("input", autosize);
  els.query.focus();
})();
