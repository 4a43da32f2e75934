// The task page made live (GET /v2/images/{id}/tasks as text/html; see docs/web-view.md).
//
// The feed is the same URL read as text/event-stream with fetch(), same origin, so it carries the
// identity the page request carried (an authenticating proxy's or a browser extension's headers, or
// the session's cookies) and no token is ever written into the page or a URL. Each "tasks" event moves
// the bars at once; the rest of the page (image, stores, lock, a new task or store) is the server's
// own HTML, fetched again at most once a second while events arrive and once after each task ends.
"use strict";

(() => {
  const view = document.getElementById("view");
  if (!view) return; // an error page: nothing to follow
  const url = view.dataset.tasksUrl;
  const feedStatus = document.getElementById("feed-status");
  const MARKS = {
    pending: "…", copying: "▶", done: "✓", failed: "✗",
    processing: "▶", success: "✓", failure: "✗",
  };
  const REFRESH_EVERY = 1000;
  let lastId = null;
  let lastTasks = [];
  let retryMs = 2000;

  // A live region: written only when its words change, so that a screen reader says each once.
  const say = (text) => { if (feedStatus.textContent !== text) feedStatus.textContent = text; };
  const sayLive = () => say(lastTasks.some((task) => task.status === "pending" || task.status === "processing")
    ? "Live: the bars follow this image's tasks as they run."
    : "Live: no task is running; a new import or copy of this image will appear here.");
  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "unknown size";
    if (bytes < 1024) return `${bytes} bytes`;
    for (const [unit, scale] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]]) {
      if (bytes >= scale) return `${(bytes / scale).toFixed(1)} ${unit}`;
    }
    return `${bytes} bytes`;
  }

  // The server's estimate of the phase under way, or when the last byte moved while none moves.
  function timeLeft(progress) {
    if (progress.stalled_since) return `stalled since ${progress.stalled_since.replace(/\.\d+Z$/, "Z")}`;
    const left = progress.eta_seconds;
    if (left === null || left === undefined) return "—";
    const hours = Math.floor(left / 3600);
    const minutes = String(Math.floor((left % 3600) / 60)).padStart(2, "0");
    const seconds = String(left % 60).padStart(2, "0");
    return `${hours}:${minutes}:${seconds}`;
  }

  function storeText(p) {
    const head = p.percent === null ? "size unknown" : `${p.percent} %`;
    let text = `${head} · ${p.state} · ${size(p.bytes_done)} of ${size(p.bytes_total)}`;
    if (p.error) text += ` · ${p.error}`;
    return text;
  }

  function setState(element, state) {
    if (!element || element.dataset.state === state) return;
    element.dataset.state = state;
    element.className = element.className.replace(/\bstate-\S+/, `state-${state}`);
    element.firstElementChild.textContent = MARKS[state] || "•";
    element.lastChild.textContent = ` ${state}`;
  }

  function setBar(item, progress) {
    const bar = item.querySelector("progress");
    const text = storeText(progress);
    if (progress.percent === null) {
      bar.removeAttribute("value");
      bar.removeAttribute("aria-valuenow");
    } else {
      bar.value = progress.percent;
      bar.setAttribute("aria-valuenow", String(progress.percent));
    }
    bar.setAttribute("aria-valuetext", text);
    item.querySelector(".store-text").textContent = text;
    setState(item.querySelector(".store-state"), progress.state);
  }

  // Moves what the page already shows; true when an event names a task or store it lacks.
  function apply(tasks) {
    let missing = false;
    for (const task of tasks) {
      const article = document.getElementById(`task-${task.id}`);
      if (!article) { missing = true; continue; }
      setState(article.querySelector("h3 .status"), task.status);
      article.querySelector(".task-message").textContent = task.message || "No message yet.";
      article.querySelector(".task-phase").textContent = task.progress.phase;
      const rate = task.progress.bytes_per_second;
      article.querySelector(".task-rate").textContent = rate === null ? "—" : `${size(Math.floor(rate))}/s`;
      const eta = article.querySelector(".task-eta");
      if (eta) eta.textContent = timeLeft(task.progress);
      for (const [store, progress] of Object.entries(task.progress.stores || {})) {
        const item = article.querySelector(`li.store-bar[data-store="${CSS.escape(store)}"]`);
        if (item) setBar(item, progress); else missing = true;
      }
    }
    return missing;
  }

  // --- the server's HTML, fetched again -------------------------------------------------------
  let refreshing = false;
  let again = false;
  let lastRefresh = 0;

  async function refreshNow() {
    const response = await fetch(url, {
      headers: { Accept: "text/html" }, credentials: "same-origin", cache: "no-store",
    });
    if (!response.ok) {
      say(`Could not refresh the page: the server answered ${response.status}. Reload to try again.`);
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["image", "stores", "lock", "task-list", "history", "rendered"]) {
      const mine = document.getElementById(id);
      const theirs = fresh.getElementById(id);
      if (mine && theirs) mine.replaceWith(document.importNode(theirs, true));
    }
    apply(lastTasks); // the events may be newer than the page just read
  }

  async function refresh(soon) {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      do {
        again = false;
        const wait = soon ? 0 : lastRefresh + REFRESH_EVERY - Date.now();
        if (wait > 0) await sleep(wait);
        lastRefresh = Date.now();
        await refreshNow();
      } while (again);
    } catch (error) {
      say(`Could not refresh the page (${error.message}). Reload to try again.`);
    } finally {
      refreshing = false;
    }
  }

  // --- the event stream -----------------------------------------------------------------------
  function parseEvent(block) {
    const event = { event: "message", data: "", id: null, retry: null };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data += (event.data ? "\n" : "") + value;
      else if (field === "event") event.event = value;
      else if (field === "id") event.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
    }
    return event;
  }

  // Reads one response to its end: "end" (every task finished), "stop" (the image went away) or "closed".
  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let outcome = "closed";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return outcome;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (event.retry !== null) retryMs = event.retry;
        if (event.id !== null) lastId = event.id;
        if (event.event === "tasks") {
          lastTasks = JSON.parse(event.data).tasks;
          const finished = lastTasks.some((task) => task.status === "success" || task.status === "failure");
          refresh(apply(lastTasks) || finished);
          sayLive();
        } else if (event.event === "end") {
          outcome = "end";
        } else if (event.event === "error") {
          const error = JSON.parse(event.data);
          say(`Live updates stopped: ${error.message} (${error.code}).`);
          refresh(true);
          return "stop";
        }
      }
    }
  }

  async function follow() {
    for (;;) {
      const headers = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      let response;
      try {
        response = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
      } catch (error) {
        say(`Live updates lost (${error.message}); trying again in ${retryMs / 1000} s.`);
        await sleep(retryMs);
        continue;
      }
      if (!response.ok) {
        let message = "";
        try { message = (await response.json()).message || ""; } catch { message = ""; }
        const final = [400, 401, 403, 404].includes(response.status);
        say(`Live updates ${final ? "stopped" : "paused"}: the server answered ${response.status}. ${message}` +
          (final ? " Reload the page once that is fixed." : ` Trying again in ${retryMs / 1000} s.`));
        if (final) return;
        await sleep(retryMs);
        continue;
      }
      if (lastId === null) say("Live: connected, waiting for the first update.");
      else sayLive();
      let outcome;
      try {
        outcome = await read(response.body);
      } catch (error) {
        outcome = "closed";
      }
      if (outcome === "stop") return;
      if (outcome === "end") {
        sayLive();
        refresh(true);
        continue; // with Last-Event-ID the server waits for the next change
      }
      await sleep(retryMs);
    }
  }

  follow();
})();
