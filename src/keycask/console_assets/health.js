// Health: /healthz and /readyz (unsigned, like a load balancer's probes) and
// the operator status (KeycaskOperator.Status, signed: administrators of the
// operator account).

import * as api from "./api.js";
import { h, dl } from "./dom.js";

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

export async function healthView(view) {
  const [alive, ready] = await Promise.all([probe("/healthz"), probe("/readyz")]);
  view.append(h("h1", {}, "Health"), dl([["Alive (/healthz)", alive], ["Ready (/readyz)", ready],
    ["Signed in as", api.identity()?.arn]]));
  try {
    const status = await api.call("KeycaskOperator.Status", {});
    view.append(h("h2", {}, "Seal and scheduled jobs"), h("div", { id: "operator-status" },
      dl(Object.entries(status).map(([k, v]) => [NAMES[k] || k, shown(v)]))));
  } catch (error) {
    view.append(h("p", {}, `The operator status needs an administrator of the operator `
      + `account (${error.code}: ${error.message}).`));
  }
}
