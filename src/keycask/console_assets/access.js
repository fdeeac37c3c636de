// Principals, their identity policies and access keys (KeycaskAdmin.*). A
// new secret access key is shown once, in a box the operator closes.

import * as api from "./api.js";
import { h, clear, table, field, dl, date } from "./dom.js";
import { attempt, reload, status } from "./ui.js";
import { whoCanForm } from "./whocan.js";

function secretOnce(accessKeyId, secret) {
  const value = h("code", { id: "new-secret" }, secret);
  const box = h("div", { class: "secret-once", role: "alert" },
    h("p", {}, h("strong", {}, "Copy the secret access key now: keycask shows it only once.")),
    dl([["Access key id", accessKeyId]]), h("p", {}, "Secret access key: ", value),
    h("button", { type: "button", onclick: () => { box.remove(); reload(); } },
      "I have copied it"));
  return box;
}

export async function accessView(view) {
  const listed = await attempt("Listing principals", () => api.admin("ListPrincipals", { Limit: 1000 }));
  view.append(h("h1", {}, "Access"), h("h2", {}, "Principals"));
  if (listed) {
    view.append(table(["Name", "Kind", "Administrator", "ARN"], listed.Principals.map((p) => [
      h("a", { href: `#/principal/${encodeURIComponent(p.Name)}` }, p.Name), p.Kind,
      p.Admin ? "yes" : "no", p.Arn])));
  }
  const name = h("input", { id: "principal-name", required: true, pattern: "[A-Za-z0-9_+=,.@-]{1,64}" });
  const adminBox = h("input", { id: "principal-admin", type: "checkbox" });
  const out = h("div");
  const form = h("form", { class: "card" }, h("h2", {}, "Create principal"),
    field("Name", name), h("div", { class: "check" }, adminBox,
      h("label", { for: "principal-admin" }, "Administrator (may do everything in the account)")),
    h("button", { type: "submit" }, "Create principal"), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const made = await attempt("Creating the principal", () => api.admin("CreatePrincipal",
      { Name: name.value, Admin: adminBox.checked }));
    if (!made) return;
    status(`Created ${made.Arn}.`);
    clear(out).append(made.SecretAccessKey ? secretOnce(made.AccessKeyId, made.SecretAccessKey)
                                          : h("p", {}, made.Arn));
  });
  view.append(form, whoCanForm(null));
}

export async function principalView(view, name) {
  const p = await attempt("Reading the principal", () => api.admin("GetPrincipal", { Name: name }));
  view.append(h("p", {}, h("a", { href: "#/access" }, "All principals")),
              h("h1", {}, "Principal ", h("code", {}, name)));
  if (!p) return;
  view.append(dl([["ARN", p.Arn], ["Kind", p.Kind], ["Administrator", p.Admin ? "yes" : "no"],
                  ["Created", date(p.CreateDate)], ["Unique id", p.UniqueId],
                  ["Tags", Object.entries(p.Tags || {}).map(([k, v]) => `${k}=${v}`)]]));
  if (p.TrustPolicy) view.append(h("h2", {}, "Trust policy"), h("pre", {}, p.TrustPolicy));

  // Access keys.
  const out = h("div");
  view.append(h("h2", {}, "Access keys"));
  const keys = await attempt("Listing access keys", () => api.admin("ListAccessKeys", { Name: name }));
  if (keys) {
    view.append(table(["Access key id", "Status", "Created", ""], keys.AccessKeys.map((k) => [
      k.AccessKeyId, k.Status, date(k.CreateDate), h("span", { class: "row-actions" },
        h("button", { type: "button", onclick: async () => {
          const next = k.Status === "Active" ? "Inactive" : "Active";
          if (await attempt("Updating the access key", () => api.admin("UpdateAccessKey",
            { AccessKeyId: k.AccessKeyId, Status: next })) !== undefined) reload();
        } }, k.Status === "Active" ? "Deactivate" : "Activate"),
        h("button", { type: "button", class: "danger", onclick: async () => {
          if (!window.confirm(`Delete access key ${k.AccessKeyId}? Whoever uses it is locked out.`)) return;
          if (await attempt("Deleting the access key", () => api.admin("DeleteAccessKey",
            { AccessKeyId: k.AccessKeyId })) !== undefined) reload();
        } }, "Delete"))])));
    view.append(h("button", { type: "button", id: "create-access-key", onclick: async () => {
      const made = await attempt("Creating an access key", () =>
        api.admin("CreateAccessKey", { Name: name }));
      if (made) clear(out).append(secretOnce(made.AccessKeyId, made.SecretAccessKey));
    } }, "Create access key"), out);
  }

  // Identity policies.
  view.append(h("h2", {}, "Identity policies"));
  for (const policyName of p.PolicyNames || []) {
    const got = await attempt("Reading a policy", () => api.admin("GetPrincipalPolicy",
      { Name: name, PolicyName: policyName }));
    if (!got) continue;
    view.append(h("section", { class: "card" }, h("h3", {}, policyName),
      h("pre", {}, got.PolicyDocument),
      h("button", { type: "button", class: "danger", onclick: async () => {
        if (await attempt("Deleting the policy", () => api.admin("DeletePrincipalPolicy",
          { Name: name, PolicyName: policyName })) !== undefined) reload();
      } }, "Delete policy")));
  }
  const policyName = h("input", { id: "policy-name", required: true });
  const doc = h("textarea", { id: "policy-document", rows: 10, spellcheck: "false", required: true });
  const form = h("form", { class: "card" }, h("h3", {}, "Put an identity policy"),
    field("Policy name", policyName), field("Policy document (JSON)", doc),
    h("button", { type: "submit" }, "Save policy"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await attempt("Saving the policy", () => api.admin("PutPrincipalPolicy",
      { Name: name, PolicyName: policyName.value, PolicyDocument: doc.value })) !== undefined) {
      status("Policy saved."); reload();
    }
  });
  view.append(form);
}
