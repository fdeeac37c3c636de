// Who may do an action on a key (KeycaskAdmin.WhoCan, keycask policy who-can).

import * as api from "./api.js";
import { h, clear, table, field } from "./dom.js";
import { attempt } from "./ui.js";

const ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom",
  "kms:Sign", "kms:Verify", "kms:GenerateMac", "kms:DescribeKey", "kms:PutKeyPolicy",
  "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:CreateGrant"];

const KINDS = { principal: "principal", account: "any principal of the account whose "
  + "identity policies allow it", any: "anyone", grant: "grant" };

export function whoCanForm(keyId) {
  const key = h("input", { id: "whocan-key", value: keyId || "", required: true,
                           placeholder: "key id, ARN or alias" });
  const action = h("input", { id: "whocan-action", value: "kms:Decrypt", required: true,
                              list: "whocan-actions" });
  const out = h("div", { id: "whocan-results" });
  const form = h("form", { class: "inline card", id: "whocan-form" },
    h("h2", {}, "Who can"),
    keyId ? null : field("Key", key), field("Action", action),
    h("datalist", { id: "whocan-actions" }, ACTIONS.map((a) => h("option", { value: a }))),
    h("button", { type: "submit" }, "Who can?"), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(out);
    const got = await attempt("Asking who can", () => api.admin("WhoCan",
      { KeyId: key.value.trim(), Action: action.value.trim() }));
    if (!got) return;
    out.append(table(["Who", "Kind", "Via", "Only if"], got.Allowed.map((f) => [
      f.principal, KINDS[f.kind] || f.kind, f.via,
      f.conditions.length ? f.conditions.join(" and ") : "always"]),
      `Who may ${got.Action} on ${got.KeyArn}`));
  });
  return form;
}
