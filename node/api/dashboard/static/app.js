/* Provenet dashboard: plain JavaScript over the node's own read API.
 *
 * Everything is fetched from this origin with relative URLs; nothing is
 * loaded from elsewhere.  Data from the ledger only ever reaches the page
 * as text nodes (textContent), never as markup.
 */
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATUS_EVERY_MS = 3000;
  const POLL_EVERY_MS = 2000;
  const BLOCKS_SHOWN = 25;
  const THROUGHPUT_BLOCKS = 50;

  const state = {
    status: null,
    validators: [],
    lastHeight: 0, // highest block shown in the live list
    initialHeight: 0, // blocks up to this one were already there when the page opened
    ws: null,
    wsFailures: 0,
    polling: false,
    pollTimer: null,
    throughputAt: 0,
    activityTouched: false,
  };

  // ------------------------------------------------------------ helpers

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "onclick") node.addEventListener("click", value);
      else node.setAttribute(key, String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function short(hex, n) {
    const text = String(hex || "");
    const keep = n || 12;
    return text.length > keep ? text.slice(0, keep) + "…" : text || "–";
  }

  function fmtTime(ms) {
    if (typeof ms !== "number") return "–";
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function carats(points) {
    return typeof points === "number" ? (points / 100).toFixed(2) + " ct" : "";
  }

  function kg(grams) {
    return typeof grams === "number" ? (grams / 1000).toLocaleString() + " kg" : "";
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || code || "HTTP " + status);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "unreachable", "the node does not answer");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error ? body.error : {};
      throw new ApiError(response.status, error.code || "http_" + response.status, error.message);
    }
    return body;
  }

  function unwrap(body) {
    return isObject(body) && "result" in body ? body.result : body;
  }

  function showError(container, err, what) {
    clear(container);
    container.dataset.state = err.status === 404 ? "unavailable" : "error";
    const text =
      err.status === 404 && err.code === "not_found"
        ? what + " is not available on this node"
        : what + ": " + err.message + (err.code ? " (" + err.code + ")" : "");
    container.appendChild(el("p", { class: "notice " + container.dataset.state, text }));
  }

  function setPill(node, stateName, text) {
    node.dataset.state = stateName;
    node.textContent = text;
  }

  /* A generic, safe rendering of any JSON value: for shapes this page
   * does not know yet (the audit routes may grow fields). */
  function renderJson(value, depth) {
    const level = depth || 0;
    if (Array.isArray(value)) {
      if (value.length === 0) return el("span", { class: "muted", text: "none" });
      if (value.every(isObject)) return objectTable(value, level);
      return el("ul", { class: "plain" }, value.map((item) => el("li", {}, renderJson(item, level + 1))));
    }
    if (isObject(value)) {
      if (level > 4) return el("code", { text: JSON.stringify(value) });
      return el(
        "dl",
        { class: "json" },
        Object.keys(value).map((key) =>
          el("div", {}, el("dt", { text: key }), el("dd", {}, renderJson(value[key], level + 1)))
        )
      );
    }
    if (value === null || value === undefined) return el("span", { class: "muted", text: "–" });
    return el("span", { text: String(value) });
  }

  function objectTable(rows, level) {
    const keys = [];
    for (const row of rows) for (const key of Object.keys(row)) if (!keys.includes(key)) keys.push(key);
    return el(
      "table",
      { class: "grid" },
      el("thead", {}, el("tr", {}, keys.map((key) => el("th", { text: key })))),
      el(
        "tbody",
        {},
        rows.map((row) => el("tr", {}, keys.map((key) => el("td", {}, renderJson(row[key], level + 1)))))
      )
    );
  }

  // ------------------------------------------------------------ network status

  async function refreshStatus() {
    let status;
    try {
      status = await api("/v1/status");
    } catch (err) {
      setPill($("connection"), "down", "node unreachable");
      return;
    }
    state.status = status;
    setPill($("connection"), "up", "live");
    const validatorSet = isObject(status.validator_set) ? status.validator_set : {};
    state.validators = Array.isArray(validatorSet.validators) ? validatorSet.validators : [];
    $("node-identity").textContent =
      "node " + (status.node || "?") + " · " + (status.org_id || "?") + " · " + (status.role || "?");
    $("status-chain").textContent = status.chain_id || "–";
    $("status-role").textContent = status.role || "–";
    $("status-view").textContent = status.view ?? "–";
    $("status-primary").textContent = validatorName(status.primary);
    $("status-height").textContent = status.height ?? "–";
    $("status-height").dataset.height = status.height ?? "";
    $("status-mempool").textContent = isObject(status.mempool) ? status.mempool.size ?? "–" : "–";
    $("status-root").textContent = status.state_root || "–";
    $("status-hash").textContent = status.block_hash || "–";
    $("quorum").textContent = validatorSet.quorum ? "(quorum " + validatorSet.quorum + ")" : "";
    renderValidators(status);
    renderFollowing(status);
    renderAlerts(status.alerts);
    if (!state.activityTouched) {
      const height = Number(status.height) || 0;
      $("activity-from").value = String(Math.max(1, height - 99));
      $("activity-to").value = String(Math.max(1, height));
    }
    if (Date.now() - state.throughputAt > 5000) refreshThroughput(Number(status.height) || 0);
  }

  function validatorName(replicaId) {
    if (replicaId === null || replicaId === undefined) return "–";
    const found = state.validators.find((v) => v.replica_id === replicaId);
    return found ? found.name + " (#" + replicaId + ")" : "#" + replicaId;
  }

  function renderValidators(status) {
    const body = clear($("validators").tBodies[0]);
    const peers = isObject(status.peers) ? status.peers : {};
    for (const v of state.validators) {
      let link;
      let linkState;
      if (v.name === status.node) {
        link = "this node";
        linkState = "self";
      } else if (isObject(peers[v.name])) {
        linkState = peers[v.name].connected ? "connected" : "disconnected";
        link = linkState;
      } else {
        link = "–";
        linkState = "unknown";
      }
      const isPrimary = v.replica_id === status.primary;
      body.appendChild(
        el(
          "tr",
          { "data-validator": v.name, "data-link": linkState, class: isPrimary ? "primary" : null },
          el("td", { text: v.replica_id }),
          el("td", {}, v.name, isPrimary ? el("span", { class: "tag", text: "primary" }) : null),
          el("td", { text: v.org_id }),
          el("td", {}, el("span", { class: "dot " + linkState }), link)
        )
      );
    }
  }

  function renderFollowing(status) {
    const box = $("following");
    if (!isObject(status.following)) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const f = status.following;
    clear(box).appendChild(
      el(
        "p",
        {},
        "Observer following ",
        el("strong", { text: f.source ?? "?" }),
        ", ",
        el("strong", { text: f.lag_blocks ?? "?" }),
        " block(s) behind"
      )
    );
  }

  function renderAlerts(alerts) {
    const box = $("alerts-box");
    if (!Array.isArray(alerts)) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const list = clear($("alerts"));
    if (alerts.length === 0) {
      list.appendChild(el("li", { class: "muted", text: "no alerts" }));
      return;
    }
    for (const alert of alerts.slice(-20).reverse()) {
      const a = isObject(alert) ? alert : { message: String(alert) };
      list.appendChild(
        el(
          "li",
          { "data-kind": a.kind || "" },
          el("strong", { text: a.kind || "alert" }),
          " ",
          a.validator !== undefined ? "validator " + a.validator + " " : "",
          a.height !== undefined ? "at height " + a.height + ": " : "",
          a.message || "",
          a.time_ms ? el("span", { class: "muted", text: " " + fmtTime(a.time_ms) }) : null
        )
      );
    }
  }

  async function refreshThroughput(height) {
    state.throughputAt = Date.now();
    if (height < 1) {
      $("throughput").textContent = "no blocks yet";
      return;
    }
    const from = Math.max(1, height - THROUGHPUT_BLOCKS + 1);
    let blocks;
    try {
      blocks = (await api("/v1/blocks?from=" + from + "&limit=" + THROUGHPUT_BLOCKS)).blocks || [];
    } catch (err) {
      $("throughput").textContent = "–";
      return;
    }
    const points = blocks
      .filter((b) => isObject(b) && isObject(b.header))
      .map((b) => ({ height: b.height, time: b.header.time_ms, txs: Array.isArray(b.txs) ? b.txs.length : 0 }));
    drawSparkline(points);
    if (points.length < 2) {
      $("throughput").textContent = points.length ? points[0].txs + " tx in 1 block" : "–";
      return;
    }
    const spanMs = points[points.length - 1].time - points[0].time;
    // The first block's transactions arrived before its own time: count the rest.
    const txs = points.slice(1).reduce((sum, p) => sum + p.txs, 0);
    const rate = spanMs > 0 ? (txs * 1000) / spanMs : 0;
    $("throughput").textContent = rate.toFixed(rate < 10 ? 2 : 0) + " tx/s";
    $("throughput").title = txs + " transactions in " + (points.length - 1) + " blocks over " + (spanMs / 1000).toFixed(1) + " s";
  }

  function drawSparkline(points) {
    const chart = clear($("throughput-chart"));
    const width = 320;
    const height = 48;
    if (points.length === 0) return;
    const max = Math.max(1, ...points.map((p) => p.txs));
    const bar = width / THROUGHPUT_BLOCKS;
    points.forEach((p, i) => {
      const h = Math.max(1, (p.txs / max) * (height - 4));
      chart.appendChild(
        svg("rect", { x: i * bar, y: height - h, width: Math.max(1, bar - 1), height: h, class: "bar" },
          svg("title", { text: "block " + p.height + ": " + p.txs + " tx" }))
      );
    });
  }

  // ------------------------------------------------------------ live blocks

  function startBlocks() {
    const height = Number(state.status && state.status.height) || 0;
    const from = Math.max(1, height - BLOCKS_SHOWN + 1);
    state.lastHeight = from - 1;
    state.initialHeight = height;
    openStream();
  }

  function openStream() {
    if (!("WebSocket" in window) || state.wsFailures >= 3) {
      startPolling();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + location.host + "/v1/events?from_height=" + (state.lastHeight + 1);
    let opened = false;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      state.wsFailures += 1;
      startPolling();
      return;
    }
    state.ws = ws;
    ws.onopen = () => {
      opened = true;
      state.wsFailures = 0;
      stopPolling();
      $("blocks").dataset.source = "websocket";
      setPill($("blocks-source"), "up", "live");
    };
    ws.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      if (isObject(frame) && frame.type === "block") addBlock(frame);
    };
    ws.onclose = () => {
      state.ws = null;
      if (!opened) state.wsFailures += 1;
      if (state.wsFailures >= 3) {
        startPolling();
        return;
      }
      setPill($("blocks-source"), "connecting", "reconnecting");
      // 1013 (fell behind) and any other close: resume from the last height shown.
      setTimeout(openStream, opened ? 500 : 1500);
    };
  }

  function startPolling() {
    if (state.polling) return;
    state.polling = true;
    $("blocks").dataset.source = "polling";
    setPill($("blocks-source"), "poll", "polling");
    const poll = async () => {
      if (!state.polling) return;
      try {
        const body = await api("/v1/blocks?from=" + (state.lastHeight + 1) + "&limit=" + BLOCKS_SHOWN);
        for (const block of body.blocks || []) addBlock(blockToFrame(block));
      } catch (err) {
        setPill($("blocks-source"), "down", "unreachable");
      }
      state.pollTimer = setTimeout(poll, POLL_EVERY_MS);
    };
    poll();
    // Try the stream again now and then.
    setTimeout(() => {
      if (state.polling) {
        state.wsFailures = 0;
        openStream();
      }
    }, 30000);
  }

  function stopPolling() {
    state.polling = false;
    if (state.pollTimer) clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }

  function blockToFrame(block) {
    return {
      type: "block",
      height: block.height,
      hash: block.hash,
      time_ms: isObject(block.header) ? block.header.time_ms : undefined,
      txs: Array.isArray(block.txs) ? block.txs : [],
    };
  }

  let statusSoon = null;

  function addBlock(frame) {
    const height = Number(frame.height);
    if (!(height > state.lastHeight)) return;
    state.lastHeight = height;
    const txs = Array.isArray(frame.txs) ? frame.txs : [];
    const ok = txs.filter((t) => t.status === "ok").length;
    const kinds = {};
    for (const tx of txs) {
      for (const event of Array.isArray(tx.events) ? tx.events : []) {
        kinds[event.kind] = (kinds[event.kind] || 0) + 1;
      }
    }
    const kindText = Object.keys(kinds)
      .sort()
      .map((k) => (kinds[k] > 1 ? k + " ×" + kinds[k] : k))
      .join(", ");
    const row = el(
      "tr",
      { "data-height": height, class: height > state.initialHeight ? "fresh" : null },
      el("td", { text: height }),
      el("td", { text: fmtTime(frame.time_ms) }),
      el("td", {}, String(txs.length), txs.length > ok ? el("span", { class: "rejected", text: " (" + (txs.length - ok) + " rejected)" }) : null),
      el("td", { class: "events", text: kindText || (txs.length ? "" : "empty") }),
      el("td", { class: "hash", text: short(frame.hash, 12), title: frame.hash || "" })
    );
    const body = $("blocks").tBodies[0];
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > BLOCKS_SHOWN) body.deleteRow(body.rows.length - 1);
    setTimeout(() => row.classList.remove("fresh"), 1200);
    if (!statusSoon) statusSoon = setTimeout(() => { statusSoon = null; refreshStatus(); }, 400);
    if (height > state.initialHeight && !auditSoon) auditSoon = setTimeout(refreshAudits, 1500);
  }

  // The audit views follow the chain: redrawn a moment after new blocks.
  let auditSoon = null;

  function refreshAudits() {
    auditSoon = null;
    loadNoncompliant();
    loadSanctions();
    if (!state.activityTouched) {
      $("activity-to").value = String(state.lastHeight);
      loadActivity();
    }
  }

  // ------------------------------------------------------------ provenance graph

  const NODE_W = 210;
  const GAP_X = 100;
  const GAP_Y = 28;
  const MARGIN = 24;
  const LINE = 15;
  const BADGE_H = 18;
  const CHAR_W = 6.6; // badge text is monospace 11px

  async function searchAsset(assetId) {
    const id = assetId.trim();
    const result = $("asset-result");
    if (!id) return;
    $("asset-input").value = id;
    history.replaceState(null, "", "#asset=" + encodeURIComponent(id));
    result.dataset.state = "loading";
    result.dataset.assetId = id;
    $("asset-verdict").textContent = "tracing " + id + "…";
    clear($("asset-failures"));
    clear($("asset-detail"));
    const path = encodeURIComponent(id);
    let trace;
    let compliance;
    try {
      [trace, compliance] = await Promise.all([
        api("/v1/trace/" + path).then(unwrap),
        api("/v1/compliance/" + path).then(unwrap),
      ]);
    } catch (err) {
      clearGraph();
      result.dataset.state = "error";
      $("asset-verdict").textContent =
        err.code === "unknown_asset" || err.status === 404
          ? "No diamond asset " + id + " on this ledger."
          : "Could not trace " + id + ": " + err.message;
      $("asset-verdict").className = "verdict unknown";
      return;
    }
    if (result.dataset.assetId !== id) return; // a newer search has started
    renderVerdict(id, compliance);
    drawGraph(trace, compliance);
    result.dataset.state = "ready";
  }

  function renderVerdict(id, compliance) {
    const verdict = $("asset-verdict");
    const free = isObject(compliance) && compliance.conflict_free === true;
    verdict.className = "verdict " + (free ? "ok" : "bad");
    verdict.dataset.conflictFree = String(free);
    clear(verdict).appendChild(
      el(
        "span",
        {},
        el("strong", { text: id }),
        free ? " is conflict-free" : " is NOT conflict-free",
        isObject(compliance) && compliance.assets_checked !== undefined
          ? el("span", { class: "muted", text: " · " + compliance.assets_checked + " assets checked" })
          : null
      )
    );
    const list = clear($("asset-failures"));
    const failures = isObject(compliance) && Array.isArray(compliance.failures) ? compliance.failures : [];
    for (const f of failures) {
      list.appendChild(
        el(
          "li",
          { "data-rule": f.rule || "", "data-asset-id": f.asset_id || "" },
          el("code", { text: f.rule || "failure" }),
          " at ",
          el("strong", { text: f.asset_id || "?" }),
          ": ",
          f.detail || ""
        )
      );
    }
  }

  function clearGraph() {
    const graph = clear($("provenance-graph"));
    graph.setAttribute("width", "0");
    graph.setAttribute("height", "0");
    $("graph-legend").hidden = true;
  }

  /* Build the graph model: asset nodes from the trace, a node per origin
   * mine, and the retail sale of the stone when it was sold. */
  function graphModel(trace, compliance) {
    const nodes = new Map();
    const edges = [];
    const assets = Array.isArray(trace.nodes) ? trace.nodes : [];
    const mines = new Map((trace.mines || []).map((m) => [m.mine_id, m]));
    const kp = new Map((trace.kp_certificates || []).map((c) => [c.cert_id, c]));
    const grading = new Map((trace.grading_reports || []).map((g) => [g.report_id, g]));
    const failures = isObject(compliance) && Array.isArray(compliance.failures) ? compliance.failures : [];
    const failing = new Map();
    for (const f of failures) {
      if (!failing.has(f.asset_id)) failing.set(f.asset_id, []);
      failing.get(f.asset_id).push(f);
    }
    for (const asset of assets) {
      const events = Array.isArray(asset.events) ? asset.events : [];
      nodes.set(asset.asset_id, {
        id: asset.asset_id,
        type: "asset",
        asset,
        events,
        failures: failing.get(asset.asset_id) || [],
        badges: badgesOf(asset, kp, grading),
      });
    }
    for (const [parent, child] of trace.edges || []) {
      if (nodes.has(parent) && nodes.has(child)) edges.push(edgeOf(parent, child, nodes.get(child)));
    }
    for (const node of [...nodes.values()]) {
      const mineId = node.asset.mine_id;
      if (!mineId) continue;
      const id = "mine:" + mineId;
      const mineFailures = node.failures.filter(
        (f) => String(f.rule).startsWith("mine_") ||
          (f.rule === "country_sanctioned" && String(f.detail || "").startsWith("origin country"))
      );
      if (!nodes.has(id)) {
        nodes.set(id, { id, type: "mine", mine: mines.get(mineId) || { mine_id: mineId }, failures: mineFailures, badges: [] });
      }
      const extracted = node.events.find((e) => e.kind === "extracted") || node.events[0];
      edges.push({
        from: id,
        to: node.id,
        label: "extracted",
        actor: extracted && extracted.actor ? extracted.actor : "",
      });
    }
    const root = nodes.get(trace.asset_id);
    if (root) {
      const sold = root.events.filter((e) => e.kind === "sold").pop();
      if (sold) {
        const id = "sale:" + root.id;
        nodes.set(id, { id, type: "sale", event: sold, failures: [], badges: [] });
        edges.push({ from: root.id, to: id, label: "sold", actor: sold.actor || "" });
      }
    }
    return { nodes, edges, target: trace.asset_id, failing };
  }

  function edgeOf(parent, child, childNode) {
    const first = childNode.events.find((e) => e.attributes && e.attributes.parent === parent) || childNode.events[0];
    if (!first) return { from: parent, to: child, label: "", actor: "" };
    const label = String(first.kind || "").replace(/_from$/, "").replace(/_/g, " ");
    return { from: parent, to: child, label, actor: first.actor || "" };
  }

  function badgesOf(asset, kp, grading) {
    const badges = [];
    for (const certId of asset.kp_certificates || []) {
      const cert = kp.get(certId) || {};
      const route = cert.origin_country && cert.destination_country ? " " + cert.origin_country + "→" + cert.destination_country : "";
      badges.push({
        kind: "kp",
        id: certId,
        text: (/KP/.test(certId) ? "" : "KP ") + certId + route,
        revoked: cert.revoked === true,
        title: "Kimberley Process certificate " + certId + (cert.issuer ? ", issued by " + cert.issuer : "") +
          (cert.confirmed_by ? ", import confirmed by " + cert.confirmed_by : "") + (cert.status ? " (" + cert.status + ")" : "") +
          (cert.revoked ? " — REVOKED" : ""),
      });
    }
    if (asset.grading_report) {
      const report = grading.get(asset.grading_report) || {};
      const grade = [report.colour, report.clarity, report.cut_grade].filter(Boolean).join(" ");
      badges.push({
        kind: "grading",
        id: asset.grading_report,
        text: (/^GR/.test(asset.grading_report) ? "" : "GR ") + asset.grading_report + (grade ? " " + grade : ""),
        revoked: report.revoked === true,
        title: "grading report " + asset.grading_report + (report.lab ? " by " + report.lab : "") + (report.revoked ? " — REVOKED" : ""),
      });
    }
    if (asset.frozen) badges.push({ kind: "frozen", id: asset.asset_id, text: "FROZEN", revoked: true, title: "frozen by a regulator" });
    return badges;
  }

  /* Longest-path layers from the sources (mine on the left, shop on the right),
   * ordered inside a layer by the mean position of their parents. */
  function layout(model) {
    const incoming = new Map();
    const outgoing = new Map();
    for (const id of model.nodes.keys()) {
      incoming.set(id, []);
      outgoing.set(id, []);
    }
    for (const e of model.edges) {
      incoming.get(e.to).push(e.from);
      outgoing.get(e.from).push(e.to);
    }
    const layer = new Map();
    const indegree = new Map([...incoming].map(([id, parents]) => [id, parents.length]));
    const queue = [...model.nodes.keys()].filter((id) => indegree.get(id) === 0).sort();
    while (queue.length) {
      const id = queue.shift();
      const parents = incoming.get(id);
      layer.set(id, parents.length ? Math.max(...parents.map((p) => layer.get(p) ?? 0)) + 1 : 0);
      for (const child of outgoing.get(id)) {
        indegree.set(child, indegree.get(child) - 1);
        if (indegree.get(child) === 0) queue.push(child);
      }
    }
    for (const id of model.nodes.keys()) if (!layer.has(id)) layer.set(id, 0); // a cycle: never expected
    const columns = [];
    for (const [id, index] of layer) (columns[index] = columns[index] || []).push(id);
    const order = new Map();
    columns.forEach((column, c) => {
      if (c === 0) column.sort();
      else {
        const weight = (id) => {
          const parents = incoming.get(id);
          return parents.length ? parents.reduce((s, p) => s + (order.get(p) ?? 0), 0) / parents.length : 0;
        };
        column.sort((a, b) => weight(a) - weight(b) || (a < b ? -1 : a > b ? 1 : 0));
      }
      column.forEach((id, i) => order.set(id, i));
    });
    for (const node of model.nodes.values()) node.height = nodeHeight(node);
    const columnHeights = columns.map((column) => column.reduce((s, id) => s + model.nodes.get(id).height, 0) + GAP_Y * (column.length - 1));
    const totalHeight = Math.max(...columnHeights, 0);
    columns.forEach((column, c) => {
      let y = MARGIN + (totalHeight - columnHeights[c]) / 2;
      for (const id of column) {
        const node = model.nodes.get(id);
        node.x = MARGIN + c * (NODE_W + GAP_X);
        node.y = y;
        node.layer = c;
        y += node.height + GAP_Y;
      }
    });
    return {
      width: MARGIN * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * GAP_X,
      height: MARGIN * 2 + totalHeight,
    };
  }

  function badgeRows(node) {
    const rows = [];
    let row = [];
    let used = 0;
    for (const badge of node.badges) {
      const text = truncate(badge.text, Math.floor((NODE_W - 24) / CHAR_W));
      const width = Math.ceil(text.length * CHAR_W) + 12;
      if (row.length && used + width > NODE_W - 16) {
        rows.push(row);
        row = [];
        used = 0;
      }
      row.push({ badge, text, width, x: used });
      used += width + 6;
    }
    if (row.length) rows.push(row);
    return rows;
  }

  function nodeLines(node) {
    if (node.type === "mine") {
      const m = node.mine;
      return [
        "origin mine",
        [m.country, m.operator ? "operated by " + m.operator : ""].filter(Boolean).join(" · "),
        m.accredited === false ? "NOT accredited" : m.accredited ? "accredited" : "",
      ].filter(Boolean);
    }
    if (node.type === "sale") {
      const a = node.event.attributes || {};
      return [
        "retail sale by " + (node.event.actor || "?"),
        "block " + node.event.height + (typeof a.price_cents === "number" ? " · $" + (a.price_cents / 100).toLocaleString() : ""),
      ];
    }
    const a = node.asset;
    const kinds = node.events.map((e) => e.kind);
    return [
      [a.kind, carats(a.carats_points), a.country].filter(Boolean).join(" · "),
      "owner " + a.owner + (a.custodian && a.custodian !== a.owner ? " · held by " + a.custodian : ""),
      a.status + " · " + node.events.length + " event" + (node.events.length === 1 ? "" : "s"),
      kinds.length ? kinds.join(" → ") : "",
    ].filter(Boolean);
  }

  function nodeTitle(node) {
    if (node.type === "mine") return node.mine.mine_id || "mine";
    if (node.type === "sale") return "shop";
    return node.id;
  }

  function nodeHeight(node) {
    node.lines = nodeLines(node);
    node.badgeRows = badgeRows(node);
    const lines = node.lines.length + failureRules(node).length;
    return 12 + LINE + 4 + lines * LINE + node.badgeRows.length * (BADGE_H + 4) + 8;
  }

  function failureRules(node) {
    return [...new Set(node.failures.map((f) => String(f.rule)))];
  }

  function truncate(text, max) {
    const s = String(text);
    return s.length > max ? s.slice(0, Math.max(1, max - 1)) + "…" : s;
  }

  /* The failing links: the assets compliance names (and the mine of a
   * mine rule), the edges touching them, and the taint path from there
   * down to the searched asset. */
  function markFailures(model) {
    const failingIds = new Set();
    for (const node of model.nodes.values()) if (node.failures.length) failingIds.add(node.id);
    const tainted = new Set(failingIds);
    let grew = true;
    while (grew) {
      grew = false;
      for (const e of model.edges) {
        if (tainted.has(e.from) && !tainted.has(e.to)) {
          tainted.add(e.to);
          grew = true;
        }
      }
    }
    for (const e of model.edges) {
      e.failing = failingIds.has(e.from) || failingIds.has(e.to);
      e.tainted = !e.failing && tainted.has(e.from) && tainted.has(e.to);
    }
    for (const node of model.nodes.values()) {
      node.failing = failingIds.has(node.id);
      node.tainted = !node.failing && tainted.has(node.id);
      for (const badge of node.badges) {
        badge.failing = badge.revoked || node.failures.some((f) => String(f.detail || "").includes(badge.id));
      }
    }
  }

  function drawGraph(trace, compliance) {
    const graph = clear($("provenance-graph"));
    if (!isObject(trace) || !Array.isArray(trace.nodes) || trace.nodes.length === 0) {
      clearGraph();
      return;
    }
    const model = graphModel(trace, compliance);
    markFailures(model);
    const size = layout(model);
    graph.setAttribute("width", String(size.width));
    graph.setAttribute("height", String(size.height));
    graph.setAttribute("viewBox", "0 0 " + size.width + " " + size.height);
    graph.dataset.target = model.target;
    graph.dataset.conflictFree = String(isObject(compliance) && compliance.conflict_free === true);
    graph.dataset.truncated = String(trace.truncated === true);
    graph.appendChild(
      svg(
        "defs",
        {},
        svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" })),
        svg("marker", { id: "arrow-failing", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead failing" }))
      )
    );
    const edgeLayer = svg("g", { class: "edges" });
    const nodeLayer = svg("g", { class: "nodes" });
    graph.appendChild(edgeLayer);
    graph.appendChild(nodeLayer);
    for (const e of model.edges) edgeLayer.appendChild(drawEdge(model, e));
    for (const node of model.nodes.values()) nodeLayer.appendChild(drawNode(model, node));
    $("graph-legend").hidden = false;
    const target = model.nodes.get(model.target);
    if (target) showDetail(target, model);
  }

  function drawEdge(model, e) {
    const a = model.nodes.get(e.from);
    const b = model.nodes.get(e.to);
    const x1 = a.x + NODE_W;
    const y1 = a.y + a.height / 2;
    const x2 = b.x - 2;
    const y2 = b.y + b.height / 2;
    const mid = (x1 + x2) / 2;
    const classes = ["edge"];
    if (e.failing) classes.push("failing");
    if (e.tainted) classes.push("tainted");
    const group = svg("g", { class: classes.join(" "), "data-from": e.from, "data-to": e.to });
    group.appendChild(
      svg("path", {
        d: "M" + x1 + "," + y1 + " C" + mid + "," + y1 + " " + mid + "," + y2 + " " + x2 + "," + y2,
        class: "edge-line",
        "marker-end": e.failing || e.tainted ? "url(#arrow-failing)" : "url(#arrow)",
      })
    );
    const maxChars = Math.floor((GAP_X - 8) / 6);
    if (e.label) {
      group.appendChild(svg("text", { x: mid, y: (y1 + y2) / 2 - 7, class: "edge-label", "text-anchor": "middle", text: truncate(e.label, maxChars) }));
    }
    if (e.actor) {
      group.appendChild(svg("text", { x: mid, y: (y1 + y2) / 2 + 15, class: "edge-label actor", "text-anchor": "middle", text: truncate("by " + e.actor, maxChars) }));
    }
    return group;
  }

  function drawNode(model, node) {
    const classes = ["graph-node", node.type + "-node"];
    if (node.type === "asset") classes.push("asset-node", node.asset.kind || "");
    if (node.id === model.target) classes.push("target");
    if (node.failing) classes.push("failing");
    if (node.tainted) classes.push("tainted");
    const attrs = {
      class: classes.filter(Boolean).join(" "),
      transform: "translate(" + node.x + "," + node.y + ")",
      "data-node-id": node.id,
      "data-layer": node.layer,
      tabindex: 0,
    };
    if (node.type === "asset") {
      attrs["data-asset-id"] = node.id;
      attrs["data-kind"] = node.asset.kind;
    }
    if (node.type === "mine") attrs["data-mine-id"] = node.mine.mine_id;
    if (node.failing) attrs["data-rules"] = node.failures.map((f) => f.rule).join(" ");
    const group = svg("g", attrs);
    const tooltip = [nodeTitle(node), ...node.lines, ...node.failures.map((f) => "✗ " + f.rule + ": " + f.detail)].join("\n");
    group.appendChild(svg("title", { text: tooltip }));
    group.appendChild(svg("rect", { class: "node-box", width: NODE_W, height: node.height, rx: 8, ry: 8 }));
    group.appendChild(svg("rect", { class: "node-band", width: 6, height: node.height, rx: 3, ry: 3 }));
    let y = 12 + LINE - 3;
    group.appendChild(svg("text", { x: 14, y, class: "node-title", text: truncate(nodeTitle(node), 28) }));
    y += 4;
    for (const line of node.lines) {
      y += LINE;
      group.appendChild(svg("text", { x: 14, y: y - 3, class: "node-line", text: truncate(line, 33) }));
    }
    for (const rule of failureRules(node)) {
      y += LINE;
      group.appendChild(svg("text", { x: 14, y: y - 3, class: "fail-mark", text: truncate("✗ " + rule, 33) }));
    }
    y += 6;
    for (const row of node.badgeRows) {
      for (const item of row) {
        const badge = item.badge;
        const b = svg("g", {
          class: "badge " + badge.kind + (badge.revoked ? " revoked" : "") + (badge.failing ? " failing" : ""),
          transform: "translate(" + (14 + item.x) + "," + y + ")",
          "data-badge-kind": badge.kind,
          "data-cert-id": badge.id,
        });
        b.appendChild(svg("title", { text: badge.title }));
        b.appendChild(svg("rect", { width: item.width, height: BADGE_H, rx: 9, ry: 9 }));
        b.appendChild(svg("text", { x: item.width / 2, y: 13, "text-anchor": "middle", text: item.text }));
        group.appendChild(b);
      }
      y += BADGE_H + 4;
    }
    group.addEventListener("click", () => showDetail(node, model));
    group.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") showDetail(node, model);
    });
    return group;
  }

  function showDetail(node, model) {
    for (const g of document.querySelectorAll("#provenance-graph .graph-node.selected")) g.classList.remove("selected");
    const drawn = [...document.querySelectorAll("#provenance-graph .graph-node")].find((g) => g.dataset.nodeId === node.id);
    if (drawn) drawn.classList.add("selected");
    const box = clear($("asset-detail"));
    box.dataset.nodeId = node.id;
    box.appendChild(el("h3", { text: nodeTitle(node) + (node.type === "asset" ? " (" + node.asset.kind + ")" : "") }));
    if (node.failures.length) {
      box.appendChild(el("ul", { class: "failures" }, node.failures.map((f) => el("li", {}, el("code", { text: f.rule }), " ", f.detail || ""))));
    }
    if (node.type === "mine") {
      box.appendChild(renderJson(node.mine));
      return;
    }
    const events = node.type === "sale" ? [node.event] : node.events;
    if (node.type === "asset") {
      const a = node.asset;
      box.appendChild(
        el("p", { class: "muted" },
          "actors: " + (a.actors || []).join(", ") + " · created at block " + a.created_height +
          (a.parents && a.parents.length ? " · from " + a.parents.join(", ") : ""))
      );
    }
    box.appendChild(
      el(
        "table",
        { class: "grid events-table" },
        el("thead", {}, el("tr", {}, ["#", "event", "by", "block", "time", "details"].map((h) => el("th", { text: h })))),
        el(
          "tbody",
          {},
          events.map((e) =>
            el(
              "tr",
              { "data-event": e.kind },
              el("td", { text: e.seq ?? "" }),
              el("td", { text: e.kind }),
              el("td", { text: e.actor }),
              el("td", { text: e.height }),
              el("td", { text: fmtTime(e.time_ms) }),
              el("td", {}, isObject(e.attributes) ? attributeText(e.attributes) : "")
            )
          )
        )
      )
    );
  }

  function attributeText(attributes) {
    return Object.keys(attributes)
      .sort()
      .map((k) => {
        const v = attributes[k];
        return k + "=" + (typeof v === "object" ? JSON.stringify(v) : String(v));
      })
      .join(", ");
  }

  // ------------------------------------------------------------ recall impact

  async function searchLot(lotId) {
    const id = lotId.trim();
    const box = $("recall-result");
    if (!id) return;
    $("lot-input").value = id;
    history.replaceState(null, "", "#lot=" + encodeURIComponent(id));
    box.dataset.state = "loading";
    box.dataset.lotId = id;
    clear(box).appendChild(el("p", { class: "muted", text: "following " + id + " downstream…" }));
    let impact;
    try {
      impact = unwrap(await api("/v1/recall_impact/" + encodeURIComponent(id)));
    } catch (err) {
      clear(box);
      box.dataset.state = "error";
      box.appendChild(
        el("p", { class: "notice error", text: err.status === 404 ? "No food lot " + id + " on this ledger." : "Could not read the impact of " + id + ": " + err.message })
      );
      return;
    }
    if (box.dataset.lotId !== id) return;
    renderRecall(box, id, impact);
    box.dataset.state = "ready";
  }

  function renderRecall(box, id, impact) {
    clear(box);
    if (!isObject(impact)) {
      box.appendChild(renderJson(impact));
      return;
    }
    const affected = Array.isArray(impact.affected) ? impact.affected : [];
    const holders = Array.isArray(impact.holders) ? impact.holders : [];
    box.appendChild(
      el(
        "p",
        { class: "verdict " + (impact.recalled ? "bad" : "ok"), id: "recall-summary" },
        el("strong", { text: id }),
        impact.recalled ? " is recalled" : " is not recalled",
        " · " + affected.length + " downstream lot" + (affected.length === 1 ? "" : "s"),
        impact.truncated ? el("span", { class: "rejected", text: " (truncated: more lots than the limit)" }) : null
      )
    );
    box.appendChild(
      el("p", { id: "recall-holders" }, "Held now by: ",
        holders.length ? holders.map((h, i) => [i ? ", " : "", el("strong", { class: "holder", "data-holder": h, text: h })]) : "nobody")
    );
    const rows = affected.map((lot) =>
      el(
        "tr",
        { "data-lot-id": lot.lot_id, "data-depth": lot.depth, class: lot.status === "consumed" ? "consumed" : null },
        indentCell(lot),
        el("td", { text: lot.depth }),
        el("td", { text: lot.product }),
        el("td", { text: kg(lot.mass_grams) }),
        el("td", { text: lot.status }),
        el("td", { text: lot.owner }),
        el("td", { text: lot.custodian + (lot.destination ? " → " + lot.destination : "") }),
        el("td", { text: lot.recalled ? "recalled" : "" })
      )
    );
    box.appendChild(
      el(
        "table",
        { id: "recall-table", class: "grid" },
        el("thead", {}, el("tr", {}, ["lot", "depth", "product", "mass", "status", "owner", "held by", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted", text: "nothing was made from this lot" })))
      )
    );
  }

  function indentCell(lot) {
    const depth = Math.max(1, Number(lot.depth) || 1);
    const cell = el("td", { class: "tree" }, el("span", { class: "branch", text: "└ " }), el("strong", { text: lot.lot_id }));
    cell.style.paddingLeft = 6 + (depth - 1) * 16 + "px"; // CSSOM, allowed by the page's CSP
    return cell;
  }

  // ------------------------------------------------------------ audit views

  async function loadAudit(containerId, path, what, render) {
    const box = $(containerId);
    if (box.dataset.state !== "ready") box.dataset.state = "loading";
    let body;
    try {
      body = await api(path);
    } catch (err) {
      showError(box, err, what);
      return;
    }
    clear(box);
    try {
      render(box, unwrap(body));
    } catch (err) {
      clear(box).appendChild(renderJson(unwrap(body)));
    }
    box.dataset.state = "ready";
  }

  function assetLink(id) {
    return el("a", { href: "#asset=" + encodeURIComponent(id), class: "asset-link", "data-asset-id": id, text: id, onclick: (ev) => {
      ev.preventDefault();
      searchAsset(id);
      $("asset-card").scrollIntoView({ behavior: "smooth" });
    } });
  }

  function renderNoncompliant(box, result) {
    const assets = isObject(result) && Array.isArray(result.assets) ? result.assets : null;
    if (!assets) {
      box.appendChild(renderJson(result));
      return;
    }
    const checked = typeof result.checked === "number" ? " (" + result.checked + " checked)" : "";
    if (assets.length === 0) {
      box.appendChild(el("p", { class: "verdict ok", text: "Every diamond in circulation is conflict-free" + checked + "." }));
      return;
    }
    box.appendChild(el("p", { class: "verdict bad", text: assets.length + " diamond" + (assets.length === 1 ? "" : "s") + " fail compliance" + checked + "." }));
    box.appendChild(
      el(
        "table",
        { class: "grid" },
        el("thead", {}, el("tr", {}, el("th", { text: "asset" }), el("th", { text: "failing links" }))),
        el(
          "tbody",
          {},
          assets.map((a) =>
            el(
              "tr",
              { "data-asset-id": a.asset_id },
              el("td", {}, assetLink(String(a.asset_id)), a.owner ? el("div", { class: "muted", text: a.owner + (a.status ? " · " + a.status : "") }) : null),
              el("td", {}, (Array.isArray(a.failures) ? a.failures : []).map((f) =>
                el("div", {}, el("code", { text: isObject(f) ? f.rule : String(f) }), isObject(f) ? " at " + f.asset_id + (f.detail ? ": " + f.detail : "") : "")))
            )
          )
        )
      )
    );
    if (result.truncated) box.appendChild(el("p", { class: "muted", text: "(list truncated)" }));
  }

  function renderSanctions(box, result) {
    if (!isObject(result)) {
      box.appendChild(renderJson(result));
      return;
    }
    const taint = (list) =>
      Array.isArray(list) && list.length
        ? list.map((id, i) => [i ? ", " : "", assetLink(String(id))])
        : el("span", { class: "muted", text: "none" });
    const sanctions = Array.isArray(result.sanctions) ? result.sanctions : [];
    const revocations = Array.isArray(result.revocations) ? result.revocations : [];
    box.appendChild(el("h4", { text: "Sanctions (" + sanctions.length + ")" }));
    box.appendChild(
      sanctions.length
        ? el("table", { class: "grid", id: "sanctions-table" },
            el("thead", {}, el("tr", {}, ["kind", "target", "reason", "by", "height", "tainted"].map((h) => el("th", { text: h })))),
            el("tbody", {}, sanctions.map((s) =>
              el("tr", { "data-kind": s.kind, "data-target": s.target },
                el("td", { text: s.kind }), el("td", { text: s.target }), el("td", { text: s.reason ?? "" }),
                el("td", { text: s.imposed_by ?? s.by ?? "" }), el("td", { text: s.height ?? "" }),
                el("td", {}, taint(s.tainted))))))
        : el("p", { class: "muted", text: "none" })
    );
    box.appendChild(el("h4", { text: "Revocations (" + revocations.length + ")" }));
    box.appendChild(
      revocations.length
        ? el("table", { class: "grid", id: "revocations-table" },
            el("thead", {}, el("tr", {}, ["kind", "id", "organisation", "height", "tainted"].map((h) => el("th", { text: h })))),
            el("tbody", {}, revocations.map((r) =>
              el("tr", { "data-kind": r.kind },
                el("td", { text: r.kind }), el("td", { text: r.id ?? "" }), el("td", { text: r.org_id ?? "" }),
                el("td", { text: r.height ?? "" }), el("td", {}, taint(r.tainted))))))
        : el("p", { class: "muted", text: "none" })
    );
    const known = new Set(["sanctions", "revocations"]);
    const rest = Object.keys(result).filter((k) => !known.has(k));
    if (rest.length) box.appendChild(renderJson(Object.fromEntries(rest.map((k) => [k, result[k]]))));
  }

  function renderActivity(box, result) {
    const orgs = isObject(result) && isObject(result.orgs) ? result.orgs : null;
    if (!orgs) {
      box.appendChild(renderJson(result));
      return;
    }
    box.appendChild(el("p", { class: "muted", text: "blocks " + (result.from ?? "?") + " to " + (result.to ?? "?") }));
    const names = Object.keys(orgs).sort();
    if (!names.length) {
      box.appendChild(el("p", { class: "muted", text: "no transactions in this range" }));
      return;
    }
    box.appendChild(
      el("table", { class: "grid", id: "activity-table" },
        el("thead", {}, el("tr", {}, ["organisation", "txs", "ok", "rejected", "methods"].map((h) => el("th", { text: h })))),
        el("tbody", {}, names.map((name) => {
          const o = isObject(orgs[name]) ? orgs[name] : {};
          const methods = isObject(o.methods)
            ? Object.keys(o.methods).sort().map((m) => m + " ×" + o.methods[m]).join(", ")
            : "";
          return el("tr", { "data-org": name },
            el("td", { text: name }), el("td", { text: o.txs ?? "" }), el("td", { text: o.ok ?? "" }),
            el("td", { text: o.rejected ?? "" }), el("td", { class: "methods", text: methods }));
        })))
    );
  }

  function loadNoncompliant() {
    return loadAudit("audit-noncompliant", "/v1/audit/noncompliant?limit=100", "The non-compliance audit", renderNoncompliant);
  }

  function loadSanctions() {
    return loadAudit("audit-sanctions", "/v1/audit/sanctions", "The sanctions audit", renderSanctions);
  }

  function loadActivity() {
    const from = $("activity-from").value.trim();
    const to = $("activity-to").value.trim();
    const query = [];
    if (/^\d+$/.test(from)) query.push("from=" + from);
    if (/^\d+$/.test(to)) query.push("to=" + to);
    return loadAudit("audit-activity", "/v1/audit/activity" + (query.length ? "?" + query.join("&") : ""), "The activity audit", renderActivity);
  }

  // ------------------------------------------------------------ start

  function routeFromHash() {
    const hash = location.hash.replace(/^#/, "");
    const match = /^(asset|lot)=(.+)$/.exec(hash);
    if (!match) return;
    let value;
    try {
      value = decodeURIComponent(match[2]);
    } catch (err) {
      return;
    }
    if (match[1] === "asset") searchAsset(value);
    else searchLot(value);
  }

  async function start() {
    $("asset-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      searchAsset($("asset-input").value);
    });
    $("lot-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      searchLot($("lot-input").value);
    });
    $("activity-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.activityTouched = true;
      loadActivity();
    });
    $("audit-noncompliant-refresh").addEventListener("click", loadNoncompliant);
    $("audit-sanctions-refresh").addEventListener("click", loadSanctions);
    window.addEventListener("hashchange", routeFromHash);
    await refreshStatus();
    setInterval(refreshStatus, STATUS_EVERY_MS);
    startBlocks();
    routeFromHash();
    loadNoncompliant();
    loadSanctions();
    loadActivity();
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
