// One key's page: its actions and tabs (general, key policy, cryptographic
// configuration, tags, rotation, aliases, grants). Every change is one
// TrentService call; the page is drawn again from keycask after it.

import * as api from "./api.js";
import { h, clear, table, field, dl, date } from "./dom.js";
import { attempt, reload, status } from "./ui.js";
import { whoCanForm } from "./whocan.js";

const TABS = [
  ["general", "General"], ["policy", "Key policy"], ["crypto", "Cryptographic configuration"],
  ["tags", "Tags"], ["rotation", "Rotation"], ["aliases", "Aliases"], ["grants", "Grants"],
];

export async function keyView(view, keyId, tab) {
  const described = await attempt("Describing the key", () =>
    api.kms("DescribeKey", { KeyId: keyId }));
  if (!described) { view.append(h("h1", {}, "Key"), h("p", {}, keyId)); return; }
  const meta = described.KeyMetadata;
  const id = meta.KeyId;
  const link = (t) => `#/key/${encodeURIComponent(id)}/${t}`;
  view.append(
    h("p", {}, h("a", { href: "#/keys" }, "All keys")),
    h("div", { class: "heading" },
      h("h1", {}, "Key ", h("code", {}, id)),
      h("span", { class: "state state-" + meta.KeyState.toLowerCase(), id: "key-state" },
        meta.KeyState)),
    actions(meta),
    h("nav", { class: "tabs", "aria-label": "Key sections" },
      TABS.map(([name, label]) => h("a", { href: link(name), "aria-current":
        name === tab ? "page" : null }, label))));
  const panel = h("section", { class: "card", "aria-label": (TABS.find(([n]) => n === tab)
    || ["", "General"])[1] });
  view.append(panel);
  const draw = { general, policy, crypto, tags, rotation, aliases, grants }[tab] || general;
  await draw(panel, meta);
}

function actions(meta) {
  const id = meta.KeyId;
  const bar = h("div", { class: "actions" });
  const managed = meta.KeyManager === "CUSTOMER";
  if (!managed) return bar;
  if (meta.KeyState === "Enabled") {
    bar.append(h("button", { type: "button", id: "disable-key", onclick: async () => {
      if (await attempt("Disabling the key", () => api.kms("DisableKey", { KeyId: id })) !== undefined) {
        status("Key disabled."); reload();
      }
    } }, "Disable key"));
  } else if (meta.KeyState === "Disabled") {
    bar.append(h("button", { type: "button", id: "enable-key", onclick: async () => {
      if (await attempt("Enabling the key", () => api.kms("EnableKey", { KeyId: id })) !== undefined) {
        status("Key enabled."); reload();
      }
    } }, "Enable key"));
  }
  if (meta.KeyState === "PendingDeletion") {
    bar.append(h("button", { type: "button", id: "cancel-deletion", onclick: async () => {
      if (await attempt("Cancelling the deletion", () =>
        api.kms("CancelKeyDeletion", { KeyId: id })) !== undefined) {
        status("Deletion cancelled; the key is disabled."); reload();
      }
    } }, "Cancel deletion"));
  } else {
    bar.append(scheduleDeletion(id));
  }
  return bar;
}

function scheduleDeletion(id) {
  const days = h("input", { id: "deletion-days", type: "number", min: 7, max: 30, value: "30",
                            required: true });
  const confirm = h("input", { id: "deletion-confirm", autocomplete: "off", spellcheck: "false" });
  const go = h("button", { type: "submit", class: "danger", disabled: true }, "Schedule deletion");
  confirm.addEventListener("input", () => { go.disabled = confirm.value !== id; });
  const form = h("form", { class: "deletion" },
    h("p", {}, "Deleting a key makes everything encrypted under it unreadable once the ",
      "waiting period ends. To schedule it, type the key id."),
    field("Waiting period (days, 7-30)", days),
    field(`Type ${id} to confirm`, confirm), go);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (confirm.value !== id) return;
    const done = await attempt("Scheduling the deletion", () => api.kms("ScheduleKeyDeletion",
      { KeyId: id, PendingWindowInDays: Number(days.value) }));
    if (done) { status(`Deletion scheduled for ${date(done.DeletionDate)}.`); reload(); }
  });
  return h("details", {}, h("summary", {}, "Schedule deletion…"), form);
}

async function general(panel, meta) {
  panel.append(h("h2", {}, "General"), dl([
    ["Key id", meta.KeyId], ["ARN", meta.Arn], ["State", meta.KeyState],
    ["Description", meta.Description], ["Created", date(meta.CreationDate)],
    ["Origin", meta.Origin], ["Key manager", meta.KeyManager],
    ["Enabled", meta.Enabled ? "yes" : "no"], ["Deletion date", date(meta.DeletionDate)],
    ["Pending deletion window (days)", meta.PendingDeletionWindowInDays],
    ["Valid to", date(meta.ValidTo)], ["Multi-Region", meta.MultiRegion ? "yes" : ""],
  ]));
  if (meta.KeyManager !== "CUSTOMER") return;
  const text = h("input", { id: "description-input", value: meta.Description || "",
                            maxlength: 8192 });
  const form = h("form", {}, field("New description", text),
    h("button", { type: "submit" }, "Update description"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await attempt("Updating the description", () => api.kms("UpdateKeyDescription",
      { KeyId: meta.KeyId, Description: text.value })) !== undefined) {
      status("Description updated."); reload();
    }
  });
  panel.append(form);
}

function findingsList(findings) {
  return h("ul", { class: "findings", id: "lint-findings" }, findings.map((f) =>
    h("li", { class: "finding sev-" + f.Severity },
      h("strong", {}, `${f.Severity} · ${f.Rule}`), " ",
      h("span", {}, `${f.Statement}: ${f.Message}`))));
}

async function policy(panel, meta) {
  const got = await attempt("Reading the key policy", () =>
    api.kms("GetKeyPolicy", { KeyId: meta.KeyId, PolicyName: "default" }));
  if (!got) return;
  let pretty = got.Policy;
  try { pretty = JSON.stringify(JSON.parse(got.Policy), null, 2); } catch { /* shown as is */ }
  const editor = h("textarea", { id: "policy-editor", rows: 22, spellcheck: "false",
                                 value: pretty });
  editor.value = pretty;
  const results = h("div", { id: "lint-results", "aria-live": "polite" });
  const save = h("button", { type: "button", id: "policy-save", disabled: true },
    "Save policy");
  const lint = async () => {
    clear(results);
    save.disabled = true;
    try { JSON.parse(editor.value); } catch (error) {
      results.append(h("p", { class: "problem" }, `Not JSON: ${error.message}`));
      return false;
    }
    const tagList = (await attempt("Reading the key's tags", () =>
      api.all("ListResourceTags", { KeyId: meta.KeyId }, "Tags"))) || [];
    const keyTags = Object.fromEntries(tagList.map((t) => [t.TagKey, t.TagValue]));
    const linted = await attempt("Checking the policy", () => api.admin("LintPolicy",
      { PolicyDocument: editor.value, Kind: "key", KeyTags: keyTags }));
    if (!linted) return false;
    const findings = linted.Findings || [];
    if (findings.length) {
      results.append(h("p", {}, `${findings.length} finding(s) by keycask policy lint:`),
                     findingsList(findings));
    } else {
      results.append(h("p", { class: "ok" }, "keycask policy lint found nothing to flag."));
    }
    save.disabled = false;
    return true;
  };
  const check = h("button", { type: "button", id: "policy-check", onclick: lint },
    "Check policy");
  editor.addEventListener("input", () => { save.disabled = true; clear(results); });
  save.addEventListener("click", async () => {
    clear(results);
    try {
      await api.kms("PutKeyPolicy", { KeyId: meta.KeyId, PolicyName: "default",
                                      Policy: editor.value });
      status("Key policy saved.");
      reload();
    } catch (error) {
      const lockout = /will not allow you to update the key policy|lockout safety check/i
        .test(error.message);
      results.append(h("div", { class: "refusal", id: "policy-refusal", role: "alert" },
        h("strong", {}, lockout ? "Refused by the lockout safety check. "
                                : `Refused (${error.code}). `),
        error.message));
    }
  });
  panel.append(h("h2", {}, "Key policy"),
    h("p", {}, "Edit the policy, check it (keycask policy lint), then save."),
    field("Policy document (JSON)", editor), h("div", { class: "actions" }, check, save),
    results, whoCanForm(meta.KeyId));
}

async function crypto(panel, meta) {
  panel.append(h("h2", {}, "Cryptographic configuration"), dl([
    ["Key spec", meta.KeySpec], ["Key usage", meta.KeyUsage],
    ["Encryption algorithms", meta.EncryptionAlgorithms],
    ["Signing algorithms", meta.SigningAlgorithms], ["MAC algorithms", meta.MacAlgorithms],
    ["Key agreement algorithms", meta.KeyAgreementAlgorithms],
    ["Origin", meta.Origin], ["Current key material id", meta.CurrentKeyMaterialId],
  ]));
}

async function tags(panel, meta) {
  const listed = await attempt("Listing tags", () =>
    api.all("ListResourceTags", { KeyId: meta.KeyId }, "Tags"));
  panel.append(h("h2", {}, "Tags"));
  if (listed) {
    panel.append(table(["Key", "Value", ""], listed.map((tag) => [tag.TagKey, tag.TagValue,
      h("button", { type: "button", "aria-label": `Remove tag ${tag.TagKey}`, onclick: async () => {
        if (await attempt("Removing the tag", () => api.kms("UntagResource",
          { KeyId: meta.KeyId, TagKeys: [tag.TagKey] })) !== undefined) reload();
      } }, "Remove")])));
  }
  const key = h("input", { id: "tag-key", required: true });
  const value = h("input", { id: "tag-value" });
  const form = h("form", { class: "inline" }, field("Tag key", key), field("Tag value", value),
    h("button", { type: "submit" }, "Add tag"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await attempt("Tagging the key", () => api.kms("TagResource",
      { KeyId: meta.KeyId, Tags: [{ TagKey: key.value, TagValue: value.value }] })) !== undefined) {
      status("Tag added."); reload();
    }
  });
  panel.append(form);
}

async function rotation(panel, meta) {
  panel.append(h("h2", {}, "Rotation"));
  const state = await attempt("Reading the rotation status", () =>
    api.kms("GetKeyRotationStatus", { KeyId: meta.KeyId }));
  if (state) {
    panel.append(dl([
      ["Automatic rotation", state.KeyRotationEnabled ? "enabled" : "disabled"],
      ["Period (days)", state.RotationPeriodInDays],
      ["Next rotation", date(state.NextRotationDate)],
      ["On-demand rotation started", date(state.OnDemandRotationStartDate)],
    ]));
    const period = h("input", { id: "rotation-days", type: "number", min: 90, max: 2560,
                                value: String(state.RotationPeriodInDays || 365) });
    const enable = h("form", { class: "inline" }, field("Period (days, 90-2560)", period),
      h("button", { type: "submit" }, state.KeyRotationEnabled ? "Change period" : "Enable rotation"));
    enable.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (await attempt("Enabling rotation", () => api.kms("EnableKeyRotation",
        { KeyId: meta.KeyId, RotationPeriodInDays: Number(period.value) })) !== undefined) reload();
    });
    panel.append(enable, h("div", { class: "actions" },
      state.KeyRotationEnabled ? h("button", { type: "button", onclick: async () => {
        if (await attempt("Disabling rotation", () =>
          api.kms("DisableKeyRotation", { KeyId: meta.KeyId })) !== undefined) reload();
      } }, "Disable rotation") : null,
      h("button", { type: "button", onclick: async () => {
        if (await attempt("Rotating now", () =>
          api.kms("RotateKeyOnDemand", { KeyId: meta.KeyId })) !== undefined) {
          status("Rotation started."); reload();
        }
      } }, "Rotate now")));
  }
  const history = await attempt("Listing rotations", () =>
    api.all("ListKeyRotations", { KeyId: meta.KeyId }, "Rotations"));
  if (history) {
    panel.append(table(["Rotated", "Type", "Key material id"], history.map((r) =>
      [date(r.RotationDate), r.RotationType || "", r.KeyMaterialId || ""]), "Rotation history"));
  }
}

async function aliases(panel, meta) {
  panel.append(h("h2", {}, "Aliases"));
  const listed = await attempt("Listing aliases", () =>
    api.all("ListAliases", { KeyId: meta.KeyId }, "Aliases"));
  if (listed) {
    panel.append(table(["Alias", ""], listed.map((a) => [a.AliasName,
      h("button", { type: "button", "aria-label": `Delete ${a.AliasName}`, onclick: async () => {
        if (await attempt("Deleting the alias", () =>
          api.kms("DeleteAlias", { AliasName: a.AliasName })) !== undefined) reload();
      } }, "Delete")])));
  }
  const name = h("input", { id: "alias-name", placeholder: "alias/name", required: true });
  const form = h("form", { class: "inline" }, field("New alias", name),
    h("button", { type: "submit" }, "Create alias"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await attempt("Creating the alias", () => api.kms("CreateAlias",
      { AliasName: name.value.trim(), TargetKeyId: meta.KeyId })) !== undefined) reload();
  });
  panel.append(form);
}

async function grants(panel, meta) {
  panel.append(h("h2", {}, "Grants"));
  const listed = await attempt("Listing grants", () =>
    api.all("ListGrants", { KeyId: meta.KeyId }, "Grants"));
  if (!listed) return;
  panel.append(table(["Grant id", "Name", "Grantee", "Operations", "Created", ""],
    listed.map((g) => [g.GrantId, g.Name || "", g.GranteePrincipal, (g.Operations || []).join(", "),
      date(g.CreationDate), h("button", { type: "button", onclick: async () => {
        if (await attempt("Revoking the grant", () => api.kms("RevokeGrant",
          { KeyId: meta.KeyId, GrantId: g.GrantId })) !== undefined) reload();
      } }, "Revoke")])));
}
