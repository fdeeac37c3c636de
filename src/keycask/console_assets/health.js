// Health: /healthz and /readyz (unsigned, like a load balancer's probes) and
// the operator status (KeycaskOperator.Status, signed: administrators of the
// operator account).

import * as api from "./api.js";
import { h, dl, table } from "./dom.js";

async function probe(path) {
  try {
    const response = await fetch(path, { cache: "no-store", credentials: "omit" });
    const doc = await response.json();
    return `${response.status} ${doc.status || ""}`;
  } catch (error) {
    return `unreachable (${error.message})`;
  }
}

export async function healthView(view) {
  const [alive, ready] = await Promise.all([probe("/healthz"), probe("/readyz")]);
  view.append(h("h1", {}, "Health"), dl([["Alive (/healthz)", alive], ["Ready (/readyz)", ready],
    ["Signed in as", api.identity()?.arn]]));
  try {
    const status = await api.call("KeycaskOperator.Status", {});
    const rows = Object.entries(status).map(([k, v]) =>
      [k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
    view.append(table(["Item", "Value"], rows, "Operator status"));
  } catch (error) {
    view.append(h("p", {}, `The operator status needs an administrator of the operator `
      + `account (${error.code}: ${error.message}).`));
  }
}
