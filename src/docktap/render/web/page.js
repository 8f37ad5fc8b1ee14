// The docktap capture page: swimlanes, a filterable list of exchanges, and their details.
// Plain script, no framework: it reads the JSON that docktap embedded in #docktap-data and
// builds everything from it. Large captures (10,000 exchanges and more) must open fast, so the
// lanes and the list are built as one markup string each, and details only on a click.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("docktap-data").textContent);
  const exchanges = data.exchanges;
  const LANE_H = 22;
  const BAR_H = 14;
  const LABEL_W = 168;
  const MIN_BAR_W = 2;
  const HEX_LIMIT = 4096;

  // --- small helpers ----------------------------------------------------------------------
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => ESC[c]);
  }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function statusClass(status) {
    if (status === null || status === undefined) return "st-none";
    if (status === 101) return "st-101";
    return "st-" + Math.floor(status / 100) + "xx";
  }
  function endOf(ex) {
    return ex.t2 === null ? data.capture.duration : ex.t2;
  }
  // --- the header ---------------------------------------------------------------------------
  function header() {
    const cap = data.capture;
    document.getElementById("title").textContent = data.title;
    const facts = [
      exchanges.length + " exchanges",
      data.connections.length + " connections",
      cap.shown.duration,
      cap.complete ? "closed cleanly" : "incomplete (docktap did not close it)",
    ];
    if (cap.upstream) facts.push("daemon " + cap.upstream);
    if (cap.max_body) facts.push("bodies kept up to " + cap.shown.max_body);
    document.getElementById("facts").textContent = facts.join(" · ");
    if (cap.command) document.getElementById("command").textContent = "$ " + cap.command.join(" ");
    // What went wrong on the socket itself (an unreachable daemon, bytes that were not HTTP).
    const errors = document.getElementById("capture-errors");
    for (const error of data.errors) {
      errors.appendChild(el("li", "error", (error.conn ? "conn " + error.conn + ": " : "") + error.kind + ": " + error.message));
    }
  }

  // --- the swimlanes ---------------------------------------------------------------------------
  const lanes = new Map(); // conn -> lane index
  data.connections.forEach((c, index) => lanes.set(c.conn, index));
  for (const ex of exchanges) if (!lanes.has(ex.conn)) lanes.set(ex.conn, lanes.size);
  let scale = 1; // pixels per second
  const laneBox = document.getElementById("lanes");
  const axis = document.getElementById("axis");
  const bars = document.getElementById("bars");

  function fitScale() {
    // The window's width, not the lane box's: reading a box's size would lay out the whole
    // page (the 10,000 rows of a large capture) before the lanes are even drawn.
    const width = Math.max(200, window.innerWidth - LABEL_W - 40);
    return width / Math.max(data.capture.duration, 0.001);
  }

  function laneLabels() {
    const parts = [];
    const byConn = new Map(data.connections.map((c) => [c.conn, c]));
    for (const [conn] of lanes) {
      const c = byConn.get(conn);
      const peer = c && c.peer;
      let who = "";
      if (peer) {
        const exe = peer.exe ? peer.exe.split("/").pop() : "";
        who = (exe ? exe + " " : "") + "pid " + peer.pid;
      }
      parts.push(
        '<div class="lane-label" data-conn="' + conn + '" title="connection ' + conn +
          (who ? ", " + esc(who) : "") + '"><b>conn ' + conn + "</b> " + esc(who) + "</div>",
      );
    }
    document.getElementById("lane-labels").innerHTML = parts.join("");
  }

  function niceStep(minSeconds) {
    const steps = [1, 2, 5];
    let power = Math.pow(10, Math.floor(Math.log10(minSeconds)));
    for (;;) {
      for (const s of steps) if (s * power >= minSeconds) return s * power;
      power *= 10;
    }
  }

  function tickLabel(t, step) {
    if (step < 0.001) return (t * 1e6).toFixed(0) + "µs";
    if (step < 1) return (t * 1000).toFixed(step < 0.01 ? 1 : 0) + "ms";
    return t.toFixed(step < 10 ? 1 : 0) + "s";
  }

  // Only the lanes in view (and a screenful either side) are drawn: a capture of thousands of
  // connections would otherwise make the browser lay out every bar before showing any.
  const LANE_MARGIN = 40;
  const onLane = []; // lane index -> the exchanges on it
  for (const ex of exchanges) {
    const lane = lanes.get(ex.conn);
    (onLane[lane] || (onLane[lane] = [])).push(ex);
  }
  let drawn = [0, -1]; // the first and last lane drawn

  function lanesInView() {
    // Before the first layout the box's size is not known: reading it would force that layout.
    const top = drawn[1] < 0 ? 0 : laneBox.scrollTop - 24;
    const height = drawn[1] < 0 ? window.innerHeight : laneBox.clientHeight;
    const first = Math.max(0, Math.floor(top / LANE_H) - LANE_MARGIN);
    const last = Math.min(lanes.size - 1, Math.ceil((top + height) / LANE_H) + LANE_MARGIN);
    return [first, last];
  }

  function drawLanes() {
    const total = data.capture.duration;
    const width = Math.ceil(total * scale) + 40;
    const height = lanes.size * LANE_H;
    const step = niceStep(90 / scale);
    const ticks = [];
    const grid = [];
    for (let t = 0; t <= total + step; t += step) {
      const x = (t * scale).toFixed(1);
      const anchor = t === 0 ? ' class="first"' : "";
      ticks.push('<line x1="' + x + '" x2="' + x + '" y1="14" y2="22"/><text' + anchor + ' x="' + x + '" y="11">' + tickLabel(t, step) + "</text>");
      grid.push('<line class="grid" x1="' + x + '" x2="' + x + '" y1="0" y2="' + height + '"/>');
    }
    axis.setAttribute("width", width);
    axis.setAttribute("height", 24);
    axis.innerHTML = ticks.join("");
    drawn = lanesInView();
    const parts = [];
    for (let lane = drawn[0] + (drawn[0] % 2); lane <= drawn[1]; lane += 2) {
      parts.push('<rect class="stripe" x="0" y="' + lane * LANE_H + '" width="' + width + '" height="' + LANE_H + '"/>');
    }
    parts.push(...grid);
    for (let lane = drawn[0]; lane <= drawn[1]; lane += 1) {
      for (const ex of onLane[lane] || []) parts.push(bar(ex, lane));
    }
    bars.setAttribute("width", width);
    bars.setAttribute("height", height);
    bars.innerHTML = parts.join("");
    document.getElementById("zoom-level").textContent = Math.round(scale) + " px/s";
    applyFilterMarks();
    markSelected();
  }

  function bar(ex, lane) {
    const y = lane * LANE_H + (LANE_H - BAR_H) / 2;
    const x0 = ex.t0 * scale;
    const x2 = Math.max(endOf(ex) * scale, x0 + MIN_BAR_W);
    const cls = "bar " + statusClass(ex.status) + " k-" + ex.kind + (ex.t2 === null ? " open" : "") + (ex.findings.length ? " flagged" : "");
    let inner = '<rect class="body" x="' + x0.toFixed(1) + '" y="' + y + '" width="' + (x2 - x0).toFixed(1) + '" height="' + BAR_H + '"/>';
    if (ex.kind !== "plain" && ex.t1 !== null) {
      // The head part, request to response head, solid; what streamed after it, lighter.
      const x1 = Math.min(Math.max(ex.t1 * scale, x0 + 1), x2);
      inner += '<rect class="head" x="' + x0.toFixed(1) + '" y="' + y + '" width="' + (x1 - x0).toFixed(1) + '" height="' + BAR_H + '"/>';
    }
    const label = ex.operation || ex.method;
    if (x2 - x0 > label.length * 6.5 + 8) {
      inner += '<text x="' + (x0 + 4).toFixed(1) + '" y="' + (y + BAR_H - 3) + '">' + esc(label) + "</text>";
    }
    return '<g class="' + cls + '" data-i="' + ex.i + '"><title>' + esc(title(ex)) + "</title>" + inner + "</g>";
  }

  let redraw = 0;
  laneBox.addEventListener("scroll", () => {
    if (redraw) return;
    redraw = requestAnimationFrame(() => {
      redraw = 0;
      const [first, last] = lanesInView();
      const wanted = [Math.max(0, first + LANE_MARGIN / 2), Math.min(lanes.size - 1, last - LANE_MARGIN / 2)];
      if (wanted[0] < drawn[0] || wanted[1] > drawn[1]) drawLanes();
    });
  });

  function showLane(ex) {
    // Bring the exchange's bar into view when it is not.
    const top = lanes.get(ex.conn) * LANE_H;
    if (top < laneBox.scrollTop || top + LANE_H + 24 > laneBox.scrollTop + laneBox.clientHeight) {
      laneBox.scrollTop = top - laneBox.clientHeight / 2;
    }
    const x = ex.t0 * scale;
    const view = laneBox.clientWidth - LABEL_W;
    if (x < laneBox.scrollLeft || x > laneBox.scrollLeft + view) laneBox.scrollLeft = x - view / 4;
  }

  function title(ex) {
    return (
      "#" + ex.number + " (conn " + ex.conn + ") " + (ex.operation || "?") + " " + ex.method + " " + ex.shown.path +
      " → " + (ex.status === null ? "no answer" : ex.status) + ", " + ex.shown.took +
      (ex.hijacked ? ", hijacked (" + ex.hijacked + ")" : ex.kind === "stream" ? ", streamed" : "")
    );
  }

  function zoom(factor, anchorX) {
    // Keep the time under the pointer (or the middle of the view) where it is.
    const view = laneBox.clientWidth - LABEL_W;
    const anchor = anchorX === undefined ? view / 2 : anchorX;
    const t = (laneBox.scrollLeft + anchor) / scale;
    scale = Math.min(Math.max(scale * factor, fitScale() / 4), 1e7);
    drawLanes();
    laneBox.scrollLeft = t * scale - anchor;
  }

  document.getElementById("zoom-in").addEventListener("click", () => zoom(2));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(0.5));
  document.getElementById("zoom-fit").addEventListener("click", () => {
    scale = fitScale();
    drawLanes();
    laneBox.scrollLeft = 0;
  });
  laneBox.addEventListener(
    "wheel",
    (event) => {
      if (!event.ctrlKey && !event.metaKey) return;
      event.preventDefault();
      const box = bars.getBoundingClientRect();
      zoom(event.deltaY < 0 ? 1.25 : 0.8, event.clientX - box.left - laneBox.scrollLeft);
    },
    { passive: false },
  );
  bars.addEventListener("click", (event) => {
    const g = event.target.closest("g.bar");
    if (g) select(Number(g.dataset.i), true);
  });

  // --- the list ------------------------------------------------------------------------------
  // Like the lanes, only the rows in view (and a screenful either side) are in the document;
  // every row is one line of ROW_H pixels, so a row's place follows from its position.
  const ROW_H = 21;
  const ROW_MARGIN = 60;
  const listBox = document.getElementById("list-box");
  const rows = document.getElementById("rows");
  const opFilter = document.getElementById("filter-op");
  const statusFilter = document.getElementById("filter-status");
  const textFilter = document.getElementById("filter-text");
  let shown = null; // Uint8Array: 1 when the exchange passes the filters; null: all pass
  let listed = exchanges.map((ex) => ex.i); // the exchanges passing the filters, in order
  let rendered = [0, -1]; // the first and last position in `listed` in the document
  let haystacks = null; // lower-case text of each exchange, built on the first text search

  function rowHtml(ex) {
    const marks = [];
    if (ex.hijacked) marks.push('<span class="mark hijack" title="hijacked: ' + esc(ex.hijacked) + '">⇅ ' + esc(ex.hijacked) + "</span>");
    else if (ex.kind === "stream") marks.push('<span class="mark stream" title="streamed or long poll">≋ stream</span>');
    if (ex.t2 === null) marks.push('<span class="mark open" title="never ended in the capture">open</span>');
    if (ex.findings.length) {
      const worst = ex.findings[0].level;
      marks.push('<span class="mark lvl-' + esc(worst) + '" title="audit findings">' + ex.findings.length + " " + esc(worst) + "</span>");
    }
    if (cut(ex.request_body) || cut(ex.response_body)) marks.push('<span class="mark cut" title="a body was cut at the cap">cut</span>');
    return (
      '<div class="row' + (ex.i === selected ? " selected" : "") + '" data-i="' + ex.i + '" data-conn="' + ex.conn + '" data-seq="' + ex.seq + '">' +
      '<span class="num">' + ex.shown.start + "</span>" +
      '<span class="conn" title="conn ' + ex.conn + ", request " + ex.seq + ' on it">#' + ex.number + "</span>" +
      '<span class="op">' + esc(ex.operation || "") + "</span>" +
      '<span class="req"><span class="method">' + esc(ex.method) + "</span> " + esc(ex.shown.path) + "</span>" +
      '<span class="status ' + statusClass(ex.status) + '">' + (ex.status === null ? "-" : ex.status) + "</span>" +
      '<span class="num">' + ex.shown.took + "</span>" +
      '<span class="num">' + (ex.sent ? ex.shown.sent : "-") + "</span>" +
      '<span class="num">' + (ex.got ? ex.shown.got : "-") + "</span>" +
      '<span class="marks">' + marks.join("") + "</span></div>"
    );
  }

  function rowsInView() {
    const first = rendered[1] < 0 ? 0 : listBox.scrollTop - ROW_H;
    const height = rendered[1] < 0 ? window.innerHeight : listBox.clientHeight;
    return [
      Math.max(0, Math.floor(first / ROW_H) - ROW_MARGIN),
      Math.min(listed.length - 1, Math.ceil((first + height) / ROW_H) + ROW_MARGIN),
    ];
  }

  function renderRows() {
    rendered = rowsInView();
    const parts = [];
    for (let at = rendered[0]; at <= rendered[1]; at += 1) parts.push(rowHtml(exchanges[listed[at]]));
    rows.style.height = listed.length * ROW_H + "px";
    rows.style.paddingTop = rendered[0] * ROW_H + "px";
    rows.innerHTML = parts.join("");
  }

  let relist = 0;
  listBox.addEventListener("scroll", () => {
    if (relist) return;
    relist = requestAnimationFrame(() => {
      relist = 0;
      const [first, last] = rowsInView();
      const wanted = [Math.max(0, first + ROW_MARGIN / 2), Math.min(listed.length - 1, last - ROW_MARGIN / 2)];
      if (wanted[0] < rendered[0] || wanted[1] > rendered[1]) renderRows();
    });
  });

  function operations() {
    const counts = new Map();
    for (const ex of exchanges) {
      const op = ex.operation || "(none)";
      counts.set(op, (counts.get(op) || 0) + 1);
    }
    const options = ['<option value="">every operation</option>'];
    for (const op of [...counts.keys()].sort()) {
      options.push('<option value="' + esc(op) + '">' + esc(op) + " (" + counts.get(op) + ")</option>");
    }
    opFilter.innerHTML = options.join("");
  }

  function cut(body) {
    return body !== null && body.kept < body.size;
  }

  function haystack(ex) {
    const parts = [ex.method, ex.target, ex.operation || "", String(ex.status)];
    for (const h of ex.request_headers) parts.push(h[0] + ": " + h[1]);
    for (const h of ex.response_headers) parts.push(h[0] + ": " + h[1]);
    if (ex.request_body && ex.request_body.text) parts.push(ex.request_body.text);
    if (ex.response_body && ex.response_body.text) parts.push(ex.response_body.text);
    for (const piece of ex.io) parts.push(piece[2]);
    return parts.join("\n").toLowerCase();
  }

  function passes(ex, op, status, text) {
    if (op && (ex.operation || "(none)") !== op) return false;
    if (status) {
      const cls = statusClass(ex.status).slice(3);
      if (status === "error" ? !(ex.status === null || ex.status >= 400 || ex.errors.length) : cls !== status) return false;
    }
    if (text) {
      if (haystacks === null) haystacks = exchanges.map(haystack);
      if (!haystacks[ex.i].includes(text)) return false;
    }
    return true;
  }

  function applyFilters() {
    const op = opFilter.value;
    const status = statusFilter.value;
    const text = textFilter.value.trim().toLowerCase();
    if (!op && !status && !text) {
      shown = null;
      listed = exchanges.map((ex) => ex.i);
    } else {
      shown = new Uint8Array(exchanges.length);
      listed = [];
      for (const ex of exchanges) {
        if (passes(ex, op, status, text)) {
          shown[ex.i] = 1;
          listed.push(ex.i);
        }
      }
    }
    const count = listed.length;
    rendered = [0, -1];
    renderRows();
    applyFilterMarks();
    document.getElementById("count").textContent =
      count === exchanges.length ? exchanges.length + " exchanges" : count + " of " + exchanges.length + " exchanges";
  }

  function applyFilterMarks() {
    const groups = bars.querySelectorAll("g.bar");
    for (let i = 0; i < groups.length; i += 1) {
      groups[i].classList.toggle("dim", shown !== null && !shown[Number(groups[i].dataset.i)]);
    }
  }

  let typing = 0;
  opFilter.addEventListener("change", applyFilters);
  statusFilter.addEventListener("change", applyFilters);
  textFilter.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(applyFilters, exchanges.length > 2000 ? 200 : 0);
  });
  rows.addEventListener("click", (event) => {
    const row = event.target.closest(".row");
    if (row) select(Number(row.dataset.i), false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.target === textFilter || event.target.tagName === "SELECT") return;
    if (event.key !== "j" && event.key !== "k" && event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const down = event.key === "j" || event.key === "ArrowDown";
    const at = selected === null ? (down ? -1 : listed.length) : listed.indexOf(selected);
    const next = at + (down ? 1 : -1);
    if (next >= 0 && next < listed.length) {
      event.preventDefault();
      select(listed[next], true);
    }
  });

  // --- the details of one exchange -------------------------------------------------------------
  const details = document.getElementById("details");
  let selected = null;

  function markSelected() {
    for (const node of document.querySelectorAll(".selected")) node.classList.remove("selected");
    if (selected === null) return;
    const row = rows.querySelector('.row[data-i="' + selected + '"]');
    if (row) row.classList.add("selected");
    const g = bars.querySelector('g.bar[data-i="' + selected + '"]');
    if (g) g.classList.add("selected");
  }

  function select(i, scrollList) {
    selected = i;
    markSelected();
    const ex = exchanges[i];
    showDetails(ex);
    if (scrollList) showRow(i);
    else showLane(ex);
    history.replaceState(null, "", "#x-" + ex.number);
  }

  function showRow(i) {
    // Scroll the list to the row when it is out of view (it may not even be in the document).
    const at = listed.indexOf(i);
    if (at < 0) return;
    const top = at * ROW_H;
    if (top < listBox.scrollTop || top + 2 * ROW_H > listBox.scrollTop + listBox.clientHeight) {
      listBox.scrollTop = top - listBox.clientHeight / 3;
      renderRows();
    }
  }

  function section(title) {
    const node = el("section", "part");
    node.appendChild(el("h3", null, title));
    details.appendChild(node);
    return node;
  }

  function headText(first, headers) {
    return [first, ...headers.map((h) => h[0] + ": " + h[1])].join("\n");
  }

  function bytesOf(b64) {
    const raw = atob(b64);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
    return out;
  }

  function hexDump(bytes) {
    const lines = [];
    const end = Math.min(bytes.length, HEX_LIMIT);
    for (let at = 0; at < end; at += 16) {
      const row = bytes.subarray(at, Math.min(at + 16, end));
      const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
      const text = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(at.toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + "  " + text);
    }
    return lines.join("\n");
  }

  function indentJson(text) {
    // Re-indents JSON text as it is: parsing it and printing it again would round numbers
    // past 2^53 (Docker's timeNano, sizes), and the page must show what was sent.
    const parts = [];
    let depth = 0;
    const newline = () => "\n" + "  ".repeat(depth);
    for (let i = 0; i < text.length; i += 1) {
      const c = text[i];
      if (c === '"') {
        let j = i + 1;
        while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
        parts.push(text.slice(i, j + 1));
        i = j;
      } else if (c === "{" || c === "[") {
        let j = i + 1;
        while (j < text.length && " \t\r\n".includes(text[j])) j += 1;
        if (text[j] === (c === "{" ? "}" : "]")) {
          parts.push(c + text[j]);
          i = j;
        } else {
          depth += 1;
          parts.push(c + newline());
        }
      } else if (c === "}" || c === "]") {
        depth -= 1;
        parts.push(newline() + c);
      } else if (c === ",") {
        parts.push("," + newline());
      } else if (c === ":") {
        parts.push(": ");
      } else if (!" \t\r\n".includes(c)) {
        parts.push(c);
      }
    }
    return parts.join("");
  }

  function isJson(text) {
    try {
      JSON.parse(text);
      return true;
    } catch (error) {
      return false;
    }
  }

  function jsonMessages(text) {
    // A stream of JSON values one per line (events, pull and build progress): one message each.
    const lines = text.split("\n").map((line) => line.replace(/\r$/, "")).filter((line) => line.trim());
    if (lines.length < 2) return null;
    const out = lines.map((line) => ({ ok: isJson(line), text: line.trim() }));
    return out.some((m) => m.ok) ? out : null;
  }

  function showBody(part, body, framed) {
    if (body === null) {
      part.appendChild(el("p", "note", "no body"));
      return;
    }
    const notes = [];
    if (body.kept < body.size) {
      notes.push("cut at the capture's cap: " + body.kept + " of " + body.size + " bytes kept (sha256 " + body.sha256 + " of all of them)");
    } else {
      notes.push(body.size + " bytes");
    }
    if (body.complete === false) notes.push("the connection closed before the body ended");
    const note = el("p", "note body-note" + (body.kept < body.size ? " cut" : ""), notes.join("; "));
    part.appendChild(note);
    if (framed) {
      part.appendChild(el("p", "note", "multiplexed output: shown demuxed under Streams"));
      return;
    }
    // Bytes that are UTF-8 yet full of control characters (a tar archive: NULs) read as hex.
    const binary = body.b64 === undefined && /[\x00-\x08\x0e-\x1a\x1c-\x1f]/.test(body.text);
    if (body.b64 !== undefined || binary) {
      const bytes = binary ? new TextEncoder().encode(body.text) : bytesOf(body.b64);
      part.appendChild(el("p", "note", "binary" + (bytes.length > HEX_LIMIT ? ", the first " + HEX_LIMIT + " bytes in hex" : ", in hex")));
      part.appendChild(el("pre", "body hex", hexDump(bytes)));
      return;
    }
    const text = body.text;
    if (!text) return;
    if (isJson(text)) {
      part.appendChild(el("pre", "body json", indentJson(text)));
      return;
    }
    const messages = jsonMessages(text);
    if (messages) {
      part.appendChild(el("p", "note", messages.length + " JSON messages, one per line"));
      const list = el("ol", "messages");
      for (const m of messages) list.appendChild(el("li", m.ok ? "msg" : "msg bad", m.text));
      part.appendChild(list);
      return;
    }
    part.appendChild(el("pre", "body text", text));
  }

  function shownPiece(text) {
    // Each piece is a line of its own already: its own line end would double it.
    return text.replace(/\r?\n$/, "");
  }

  function showStreams(ex) {
    const part = section("Streams");
    part.classList.add("streams");
    const names = ["stdout", "stderr", "stdin", "system-error"].filter((name) => ex.io.some((p) => p[1] === name));
    if (!names.length) {
      part.appendChild(el("p", "note", "nothing went either way"));
      return;
    }
    const apart = el("div", "io-apart");
    for (const name of names) {
      const box = el("div", "io io-" + name);
      box.appendChild(el("h4", null, name === "stdin" ? "stdin (client → container)" : name));
      const pre = el("pre");
      for (const piece of ex.io) {
        if (piece[1] !== name) continue;
        const line = el("span", "piece");
        line.appendChild(el("span", "at", piece[3]));
        line.appendChild(el("span", "data", shownPiece(piece[2])));
        pre.appendChild(line);
      }
      box.appendChild(pre);
      apart.appendChild(box);
    }
    part.appendChild(apart);
    if (names.length > 1) {
      const order = el("details", "io-order");
      order.appendChild(el("summary", null, "in the order they crossed (" + ex.io.length + " pieces)"));
      const pre = el("pre");
      for (const piece of ex.io) {
        const line = el("span", "piece s-" + piece[1]);
        line.appendChild(el("span", "at", piece[3]));
        line.appendChild(el("span", "who", piece[1]));
        line.appendChild(el("span", "data", shownPiece(piece[2])));
        pre.appendChild(line);
      }
      order.appendChild(pre);
      part.appendChild(order);
    }
  }

  function explanation(text) {
    // The sentences mark code with backticks, as in Markdown.
    const node = el("p", "explain");
    text.split("`").forEach((part, at) => node.appendChild(at % 2 ? el("code", null, part) : document.createTextNode(part)));
    return node;
  }

  function showDetails(ex) {
    details.textContent = "";
    details.dataset.i = ex.i;
    const head = el("h2");
    head.appendChild(el("span", "conn", "#" + ex.number + " "));
    head.appendChild(el("span", "op", ex.operation || "(no operation)"));
    head.appendChild(el("span", "status " + statusClass(ex.status), ex.status === null ? " no answer" : " " + ex.status + " " + (ex.reason || "")));
    details.appendChild(head);
    if (ex.explain) details.appendChild(explanation(ex.operation + " " + ex.explain));
    const timing = [
      "request at " + ex.shown.start,
      ex.t1 === null ? "no response head" : "response head at " + ex.shown.head,
      ex.t2 === null ? "never ended" : "ended at " + ex.shown.end + " (" + ex.shown.took + ")",
    ];
    if (ex.hijacked) timing.push("hijacked: " + ex.hijacked);
    else if (ex.kind === "stream") timing.push("streamed");
    details.appendChild(el("p", "timing", timing.join(" · ")));

    if (ex.findings.length) {
      const part = section("Audit findings");
      part.classList.add("findings");
      for (const f of ex.findings) {
        const item = el("div", "finding lvl-" + f.level);
        item.appendChild(el("b", "level", f.level.toUpperCase()));
        item.appendChild(el("span", "rule", " " + f.rule + (f.cis ? " (CIS " + f.cis + ")" : "") + ": "));
        item.appendChild(el("span", "title", f.title));
        item.appendChild(el("p", null, f.explanation));
        const p = f.process;
        if (p && (p.pid !== null || p.uid !== null)) {
          item.appendChild(el("p", "who", "asked by pid " + p.pid + " uid " + p.uid + " gid " + p.gid + (p.executable ? " " + p.executable : "")));
        }
        part.appendChild(item);
      }
    }
    if (ex.decisions.length) {
      const part = section("Policy decisions");
      part.classList.add("decisions");
      for (const d of ex.decisions) {
        part.appendChild(el("div", "decision " + (d.allowed ? "allowed" : "denied"), (d.allowed ? "allowed: " : "denied: ") + d.reason));
      }
    }
    if (ex.errors.length) {
      const part = section("Errors");
      for (const message of ex.errors) part.appendChild(el("p", "error", message));
    }

    const request = section("Request");
    request.classList.add("request");
    request.appendChild(el("pre", "head", headText(ex.method + " " + ex.target + " HTTP/1.1", ex.request_headers)));
    showBody(request, ex.request_body, false);

    const response = section("Response");
    response.classList.add("response");
    if (ex.status === null) {
      response.appendChild(el("p", "note", "no answer recorded"));
    } else {
      for (const code of ex.informational) response.appendChild(el("pre", "head informational", "HTTP/1.1 " + code));
      response.appendChild(el("pre", "head", headText("HTTP/1.1 " + ex.status + " " + (ex.reason || ""), ex.response_headers)));
      if (!ex.hijacked) showBody(response, ex.response_body, ex.io.length > 0);
    }
    if (ex.hijacked || ex.io.length) showStreams(ex);
    details.scrollTop = 0;
  }

  // --- start --------------------------------------------------------------------------------
  header();
  laneLabels();
  operations();
  scale = fitScale();
  drawLanes();
  applyFilters();
  // The address names an exchange by its number, as docktap show prints it: page.html#x-5.
  const wanted = /^#x-(\d+)$/.exec(location.hash);
  const first = wanted ? exchanges.find((ex) => ex.number === Number(wanted[1])) : null;
  if (first) select(first.i, true);
  const root = document.documentElement;
  root.dataset.ready = Math.round(performance.now());
  // And once the first frame with all of it is on the screen: what opening the page costs.
  requestAnimationFrame(() => setTimeout(() => (root.dataset.shown = Math.round(performance.now()))));
})();
