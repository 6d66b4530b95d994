/* Swarm AI Lab chat: plain JS, no framework. Everything from the network is shown with textContent, except
   answers: their Markdown is rendered by marked, then sanitized by DOMPurify (renderAnswer). */
(() => {
  "use strict";

  const SESSION_KEY = "swarm-ai-lab.sessionId";
  const ACK_TIMEOUT_MS = 30000; // no acknowledgement after this: the question is marked failed
  const ORPHAN_TTL_MS = 60000; // events for a taskId not acknowledged yet are kept this long
  const ADOPT_AFTER_MS = 3000; // an answer still unclaimed after this is shown on its own (resumed session)
  // The master's MAX_QUERY_CHARS by default; replaced by `max_query_chars` from /api/limits (public) when it tells it.
  const DEFAULT_MAX_QUERY_CHARS = 8000;
  const COUNTER_FROM = 0.9; // the character counter shows from this share of the limit on

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
    info: $("composer-info"),
    notice: $("notice"),
    counter: $("counter"),
  };
  let maxQueryChars = DEFAULT_MAX_QUERY_CHARS;

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
  // Characters as the master counts them (Python's len: code points, so an emoji is one, not two).
  const charCount = (s) => Array.from(s).length;
  const escapeHtml = (s) =>
    str(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

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

  function showFailed(ex, message, data, at, state = "failed") {
    if (ex.done) return;
    ex.done = true;
    setState(ex, state);
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
    renderAnswer(ex.answer, str(data.response));
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

  // ---------- answers in Markdown, sanitized ----------
  // marked turns the Markdown into HTML; raw HTML in the answer is shown as the text it is (a model that
  // writes <br> or <script> in prose is talking about it). DOMPurify then keeps only the elements and
  // attributes below: no scripts, styles, frames, forms, images or event handlers, links only to http(s) and
  // mailto. Images are never loaded: a remote image in an answer is a request to a host chosen by the text
  // (a tracking pixel, or a URL that carries data out of the chat); the CSP refuses them too. They become
  // links the reader may open.
  const PURIFY_CONFIG = {
    ALLOWED_TAGS: [
      "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code", "ul", "ol", "li",
      "strong", "b", "em", "i", "del", "s", "sub", "sup", "kbd", "a", "table", "thead", "tbody", "tr", "th", "td",
    ],
    ALLOWED_ATTR: ["href", "title", "start", "align"],
    ADD_URI_SAFE_ATTR: ["start", "align"], // not URLs: not held to ALLOWED_URI_REGEXP
    ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  };

  function makeMarkdown() {
    const lib = window.marked;
    const purify = window.DOMPurify;
    if (!lib || typeof lib.Marked !== "function" || !purify || typeof purify.sanitize !== "function") return null;
    if (purify.isSupported === false) return null;
    const parser = new lib.Marked({
      gfm: true,
      breaks: true, // a single newline is a line break, as in the plain-text answers before
      async: false,
      renderer: {
        html({ text, block }) {
          const shown = escapeHtml(text);
          return block ? `<p>${shown.trim().replace(/\n/g, "<br>")}</p>\n` : shown;
        },
        image({ href, title, text }) {
          const label = `image: ${text || href}`;
          return `<a href="${escapeHtml(href)}" title="${escapeHtml(title || href)}">${escapeHtml(label)}</a>`;
        },
        checkbox({ checked }) {
          return checked ? "☑ " : "☐ ";
        },
      },
    });
    return (text) => {
      const fragment = purify.sanitize(parser.parse(text), PURIFY_CONFIG);
      for (const a of fragment.querySelectorAll("a")) {
        const href = a.getAttribute("href");
        if (!href) {
          a.replaceWith(...a.childNodes); // its URL was refused: keep the words, lose the link
          continue;
        }
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        if (!a.title) a.title = href; // where it goes, before the click
      }
      return fragment;
    };
  }
  const markdown = makeMarkdown();

  function renderAnswer(el, text) {
    if (markdown) {
      try {
        el.replaceChildren(markdown(text));
        el.dataset.format = "markdown";
        return;
      } catch (e) {
        console.error("Markdown rendering failed; the answer is shown as plain text", e);
      }
    }
    el.textContent = text; // the libraries are missing (or failed): plain text is always safe
    el.dataset.format = "text";
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
    // Back within 2 s of the master's return (a restart, a failover to a standby takes ~6 s): the default
    // backoff grows to 5 s, so users came back up to 5 s after the master did.
    reconnectionDelayMax: 2000,
    // A function so that every (re)connection offers the latest session id.
    auth: (cb) => {
      const sessionId = storage.get();
      cb(sessionId ? { sessionId } : {});
    },
  });

  socket.on("connect", () => {
    setStatus("connected", "Connected");
    learnLimit(); // on every connection: a restarted master may have another limit
  });
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

  // ---------- the composer: notices and the character counter ----------
  // `kind` "empty" goes away as soon as the user types; the others stay until the next question is sent.
  function showNotice(kind, text) {
    els.notice.dataset.kind = kind;
    els.notice.textContent = text;
    els.notice.hidden = false;
    updateInfo();
  }
  function clearNotice() {
    els.notice.hidden = true;
    els.notice.textContent = "";
    delete els.notice.dataset.kind;
    updateInfo();
  }
  function updateInfo() {
    els.info.hidden = els.notice.hidden && els.counter.hidden;
  }

  // Counts what would be sent (the trimmed question), as the master counts it; shown near the limit only.
  function updateCounter() {
    const n = charCount(els.query.value.trim());
    const limit = maxQueryChars;
    const near = n > 0 && n >= Math.floor(limit * COUNTER_FROM);
    els.counter.hidden = !near;
    if (near) {
      const over = n > limit;
      els.counter.dataset.state = over ? "over" : "near";
      els.counter.textContent = over
        ? `${n} / ${limit} characters · ${n - limit} too many`
        : `${n} / ${limit} characters · ${limit - n} left`;
    } else {
      delete els.counter.dataset.state;
      els.counter.textContent = "";
    }
    if (near && n > limit) els.query.setAttribute("aria-invalid", "true");
    else els.query.removeAttribute("aria-invalid");
    updateInfo();
  }

  // The master's limit, when its public /api/limits tells it (`max_query_chars`); otherwise the default stays.
  // (/api/status is an operator view: it needs the operator token, which the chat page never has.)
  async function learnLimit() {
    try {
      const response = await fetch("/api/limits", { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!response.ok) return;
      const limits = await response.json();
      const limit = Number(limits && limits.max_query_chars);
      if (Number.isInteger(limit) && limit > 0 && limit !== maxQueryChars) {
        maxQueryChars = limit;
        updateCounter();
      }
    } catch {
      /* keep the limit we have */
    }
  }

  // A question that was not accepted comes back to the box, unless the user has started another one there.
  function restoreDraft(draft) {
    if (els.query.value.trim()) return false;
    els.query.value = draft;
    autosize();
    updateCounter();
    els.query.focus();
    els.query.setSelectionRange(draft.length, draft.length);
    return true;
  }

  // The exchange says what went wrong; the notice above the box says it again and where the question is.
  function notSent(ex, draft, message, state) {
    showFailed(ex, message, null, 0, state);
    const where = restoreDraft(draft)
      ? "Your question is back in the box: edit it and send it again."
      : "Your question is still in the conversation above.";
    showNotice(state, `${message}. ${where}`);
  }

  // ---------- sending ----------
  function send() {
    const draft = els.query.value;
    const query = draft.trim();
    clearNotice();
    if (!query) {
      showNotice("empty", draft ? "Nothing sent: the question is only spaces." : "Nothing sent: the question is empty.");
      els.query.focus();
      return;
    }
    const payload = { query };
    const key = els.apiKey.value.trim();
    if (key) payload.apiKey = key; // only in this message; never stored, never shown
    const ex = createExchange(query);
    els.query.value = "";
    autosize();
    updateCounter();
    els.query.focus();
    socket.timeout(ACK_TIMEOUT_MS).emit("user-query", payload, (err, ack) => change(() => {
      if (err) {
        notSent(ex, draft, "No acknowledgement from the server in time: the question may not have arrived", "failed");
      } else if (!ack || typeof ack !== "object") {
        notSent(ex, draft, "Unexpected acknowledgement from the server", "failed");
      } else if (ack.error) {
        notSent(ex, draft, `Not sent: ${str(ack.error)}`, "refused"); // the master refused it: nothing queued
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
  els.query.addEventListener("input", () => {
    autosize();
    updateCounter();
    if (els.notice.dataset.kind === "empty") clearNotice();
  });
  updateCounter();
  els.query.focus();
})();
