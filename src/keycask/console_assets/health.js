// Health: /healthz and /readyz (unsigned, like a load balancer's probes);
// the version and the cluster's nodes (KeycaskAdmin.ListNodes, signed:
// keycask:ListNodes); the operator status (KeycaskOperator.Status:
// administrators of the operator account); and two charts, requests and
// errors per second, from keycask_requests_total in GET /metrics, scraped
// signed (keycask:GetMetrics) every SCRAPE_MS while the page is shown.

import * as api from "./api.js";
import { lineChart } from "./chart.js";
import { h, dl, date, table } from "./dom.js";

export const SCRAPE_MS = 2000;
const KEEP_MS = 5 * 60 * 1000;
// A page drawn but never shown (another navigation won) stops polling after this.
const UNSHOWN_TICKS = 5;

async function probe(path) {
  try {
    const response = await fetch(path, { cache: "no-store", credentials: "omit" });
    const doc = await response.json();
    return `${response.status} ${doc.status || ""}`;
  } catch (error) {
    return `unreachable (${error.message})`;
  }
}

const NAMES = { sealed: "Sealed", seal: "Seal type", progress: "Unseal progress",
  threshold: "Unseal threshold", term: "Barrier term", rewrite_pending: "Barrier rewrite pending",
  keys: "Keys", jobs: "Scheduled jobs", runs_jobs: "This node runs the scheduled jobs" };

function shown(value) {
  if (value === true) return "yes";
  if (value === false) return "no";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// keycask_requests_total summed: every request, and those whose outcome is
// not success. Label values are keycask's own names (no quotes inside).
export function requestTotals(exposition) {
  let requests = 0;
  let errors = 0;
  for (const line of exposition.split("\n")) {
    const found = /^keycask_requests_total\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!found) continue;
    const value = Number(found[2]);
    if (!Number.isFinite(value)) continue;
    requests += value;
    const outcome = /(?:^|,)outcome="([^"]*)"/.exec(found[1]);
    if (!outcome || outcome[1] !== "success") errors += value;
  }
  return { requests, errors };
}

const STATE_CLASS = { ready: "state state-enabled", stopped: "state state-disabled",
  unreachable: "state state-pendingdeletion" };

function nodesTable(nodes) {
  return table(["Node", "Address", "Version", "State", "Last heartbeat", "Started"],
    nodes.map((n) => [
      n.This ? [n.Name, " ", h("small", { class: "hint" }, "(this node)")] : n.Name,
      n.Address, n.Version,
      h("span", { class: STATE_CLASS[n.State] || "state" }, n.State),
      date(n.LastHeartbeat), date(n.Started),
    ]), "Nodes of the cluster; one not heard from for 60 s is unreachable");
}

function charts(view) {
  const requests = lineChart("chart-requests", "Requests per second", "requests");
  const errors = lineChart("chart-errors", "Errors per second", "errors");
  const note = h("p", { class: "hint", id: "charts-note" },
    `From keycask_requests_total in /metrics, read every ${SCRAPE_MS / 1000} s while this `
    + "page is open; the last 5 minutes, kept in this page only.");
  view.append(h("h2", {}, "Requests and errors"), note,
    h("div", { class: "charts" }, requests.figure, errors.figure));
  const samples = [];
  let unshown = 0;
  let wasShown = false;
  let timer = null;

  async function scrape() {
    // The page is drawn detached, then shown; once another page replaced
    // it (or it was never shown), polling stops.
    if (requests.figure.isConnected) {
      wasShown = true;
    } else if (wasShown || ++unshown > UNSHOWN_TICKS) {
      clearInterval(timer);
      return;
    }
    if (!api.signedIn()) {
      clearInterval(timer);
      return;
    }
    let totals;
    try {
      totals = requestTotals(await api.metrics());
    } catch (error) {
      clearInterval(timer);
      note.textContent = `The charts need keycask:GetMetrics (${error.code}: ${error.message}).`;
      return;
    }
    const now = Date.now();
    samples.push({ t: now, ...totals });
    while (samples.length > 0 && samples[0].t < now - KEEP_MS) samples.shift();
    const rates = { requests: [], errors: [] };
    for (let i = 1; i < samples.length; i++) {
      const [a, b] = [samples[i - 1], samples[i]];
      const seconds = (b.t - a.t) / 1000;
      // A counter that went down: the server restarted; no rate across it.
      if (seconds <= 0 || b.requests < a.requests || b.errors < a.errors) continue;
      rates.requests.push({ t: b.t, v: (b.requests - a.requests) / seconds });
      rates.errors.push({ t: b.t, v: (b.errors - a.errors) / seconds });
    }
    requests.draw(rates.requests, KEEP_MS);
    errors.draw(rates.errors, KEEP_MS);
  }

  timer = setInterval(scrape, SCRAPE_MS);
  scrape();
}

export async function healthView(view) {
  const [alive, ready] = await Promise.all([probe("/healthz"), probe("/readyz")]);
  const facts = [["Alive (/healthz)", alive], ["Ready (/readyz)", ready]];
  let nodes = null;
  let refusal = null;
  try {
    nodes = (await api.admin("ListNodes", {})).Nodes || [];
  } catch (error) {
    refusal = `The version and the nodes need keycask:ListNodes (${error.code}: ${error.message}).`;
  }
  const here = nodes && nodes.find((n) => n.This);
  if (here) facts.push(["Version", here.Version]);
  facts.push(["Signed in as", api.identity()?.arn]);
  view.append(h("h1", {}, "Health"), h("div", { id: "health-facts" }, dl(facts)));
  try {
    const status = await api.call("KeycaskOperator.Status", {});
    view.append(h("h2", {}, "Seal and scheduled jobs"), h("div", { id: "operator-status" },
      dl(Object.entries(status).map(([k, v]) => [NAMES[k] || k, shown(v)]))));
  } catch (error) {
    view.append(h("p", {}, `The operator status needs an administrator of the operator `
      + `account (${error.code}: ${error.message}).`));
  }
  view.append(h("h2", {}, "Nodes"),
    nodes ? h("div", { id: "nodes" }, nodesTable(nodes)) : h("p", {}, refusal));
  charts(view);
}
