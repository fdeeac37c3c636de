// Audit: this node's recent records of the caller's account
// (KeycaskAdmin.ListAuditRecords), filtered, and the chain's verification.

import * as api from "./api.js";
import { h, clear, table, field, date } from "./dom.js";
import { attempt } from "./ui.js";

export async function auditView(view) {
  const key = h("input", { id: "audit-key", placeholder: "key id or ARN" });
  const principal = h("input", { id: "audit-principal", placeholder: "principal ARN or name" });
  const operation = h("input", { id: "audit-operation", placeholder: "e.g. CreateKey" });
  const outcome = h("select", { id: "audit-outcome" }, h("option", { value: "" }, "any"),
    h("option", { value: "success" }, "success"), h("option", { value: "error" }, "error"));
  const limit = h("input", { id: "audit-limit", type: "number", min: 1, max: 500, value: "50" });
  const verify = h("input", { id: "audit-verify", type: "checkbox" });
  const results = h("div", { id: "audit-results" });
  const form = h("form", { class: "inline card", id: "audit-form" },
    field("Key", key), field("Principal", principal), field("Operation", operation),
    field("Outcome", outcome), field("At most", limit),
    h("div", { class: "check" }, verify,
      h("label", { for: "audit-verify" }, "Verify the hash chain (reads the whole log)")),
    h("button", { type: "submit" }, "Show records"));
  const load = async () => {
    const request = { Limit: Number(limit.value) || 50, Verify: verify.checked };
    if (key.value.trim()) request.KeyId = key.value.trim();
    if (principal.value.trim()) request.Principal = principal.value.trim();
    if (operation.value.trim()) request.Operation = operation.value.trim();
    if (outcome.value) request.Outcome = outcome.value;
    const got = await attempt("Reading the audit log", () => api.admin("ListAuditRecords", request));
    clear(results);
    if (!got) return;
    if (got.Chain) {
      const c = got.Chain;
      results.append(h("p", { id: "chain-status", class: c.Ok ? "ok" : "problem" },
        c.Ok ? `Chain verified: ${c.Records} records in ${c.Segments} segment(s)`
               + (c.Anchored ? ", against the store's anchors and audit key." : " (chain only).")
             : `Chain verification FAILED: ${c.Problem}`));
    }
    results.append(table(
      ["Time", "Operation", "Principal", "Key", "Decision", "Outcome", "Error", "Source", "Detail"],
      got.Records.map((r) => [date(r.time), r.operation || "", r.principal || "", r.key_arn || "",
        r.decided_by ? `${r.decision}: ${r.decided_by}` : r.decision, r.outcome,
        r.error_code || "", r.source_ip || "", r.detail || ""]),
      `${got.Records.length} record(s), newest first`));
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  view.append(h("h1", {}, "Audit"),
    h("p", {}, "This node's recent audit records of your account, newest first."), form, results);
  await load();
}
