// The live page: one WebSocket (the seed's protocol), NIFTY's ATM Greeks and ATM IV as they are
// pushed, and the smile refreshed from the REST API on each new chain. No build step.
"use strict";

(function () {
  const UNDERLYING = "NIFTY";
  const GREEKS = ["delta", "gamma", "theta", "vega", "rho", "iv"];
  const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}` +
    `/api/v2/signals/subscriptions/websocket?client_id=live-page-${Math.random().toString(36).slice(2, 8)}`;
  const $ = (id) => document.getElementById(id);
  const atmSeries = [[], []]; // unix seconds, ATM IV in %
  let updates = 0;
  let lastSmileMinute = null;
  let backoff = 500;

  $("ws-url").textContent = wsUrl;

  const atmChart = new uPlot(
    { width: chartWidth("atm-chart"), height: 220, series: [{}, { label: "ATM IV %", stroke: "#0969da", width: 2 }],
      axes: [{}, { label: "%" }] },
    atmSeries, $("atm-chart"));
  const smileChart = new uPlot(
    { width: chartWidth("smile-chart"), height: 280, scales: { x: { time: false } },
      series: [{ label: "strike" },
               { label: "market IV %", stroke: "#cf222e", width: 0, points: { show: true, size: 5 } },
               { label: "SVI fit %", stroke: "#0969da", width: 2, points: { show: false } }],
      axes: [{ label: "strike" }, { label: "%" }] },
    [[], [], []], $("smile-chart"));

  function chartWidth(id) { return Math.max(320, $(id).clientWidth || 600); }

  function setStatus(state, text) {
    const el = $("status");
    el.className = `status ${state}`;
    el.dataset.state = state;
    el.textContent = text;
  }

  function fmt(value, digits) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
  }

  function showGreeks(data) {
    for (const side of ["calls", "puts", "all"]) {
      const row = document.querySelector(`#greeks-table tr[data-side="${side}"]`);
      const g = data.aggregated_greeks[side];
      row.innerHTML = `<th>${side} (${g.count})</th>` + GREEKS.map((name) =>
        `<td data-greek="${name}">${fmt(g[name], name === "gamma" ? 5 : name === "iv" ? 4 : 3)}</td>`).join("");
    }
    $("greeks-time").textContent = `${data.expiry} · ${new Date(data.timestamp).toLocaleTimeString()}`;
  }

  function showAtmIv(data) {
    $("atm-iv").textContent = data.iv === null ? "–" : `${(data.iv * 100).toFixed(2)} %`;
    $("atm-detail").textContent = `strike ${fmt(data.atm_strike, 0)}, forward ${fmt(data.forward, 1)}`;
    $("atm-expiry").textContent = `expiry ${data.expiry}`;
    if (data.iv !== null) {
      atmSeries[0].push(Date.parse(data.timestamp) / 1000);
      atmSeries[1].push(data.iv * 100);
      atmChart.setData(atmSeries);
    }
    if (data.timestamp !== lastSmileMinute) {
      lastSmileMinute = data.timestamp;
      refreshSmile();
    }
  }

  async function refreshSmile() {
    const response = await fetch(`/api/v2/signals/realtime/moneyness/${UNDERLYING}/smile`);
    if (!response.ok) return;
    const smile = await response.json();
    const points = smile.points.filter((p) => p.iv !== null).sort((a, b) => a.strike - b.strike);
    smileChart.setData([points.map((p) => p.strike), points.map((p) => p.iv * 100),
                        points.map((p) => (p.fitted_iv === null ? null : p.fitted_iv * 100))]);
    $("smile-detail").textContent = `${smile.expiry}, ${points.length} out-of-the-money options`;
  }

  function connect() {
    setStatus("connecting", "connecting…");
    const ws = new WebSocket(wsUrl);
    ws.onopen = () => {
      backoff = 500;
      ws.send(JSON.stringify({ type: "subscribe", channel: "moneyness", instrument_key: "moneyness_greeks",
                               params: { underlying: UNDERLYING, moneyness_level: "ATM" } }));
      ws.send(JSON.stringify({ type: "subscribe", channel: "atm_iv", params: { underlying: UNDERLYING } }));
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "connection") setStatus("connected", "live");
      if (message.type === "error") console.warn("signal service:", message.code, message.message);
      if (message.type !== "data") return;
      updates += 1;
      $("updates").textContent = String(updates);
      if (message.channel === "moneyness") showGreeks(message.data);
      if (message.channel === "atm_iv") showAtmIv(message.data);
    };
    ws.onclose = () => {
      setStatus("disconnected", "reconnecting…");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  connect();
})();
