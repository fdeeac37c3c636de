// The keycask console: a few views over keycask's own APIs, routed by the
// URL's fragment (#/keys, #/key/<id>/<tab>, #/create, #/access, ...). Every
// action is a signed call under the signed-in principal (api.js); every value
// shown is text (dom.js).

import * as api from "./api.js";
import { h, clear, table, field, date } from "./dom.js";
import { attempt, notice, onSignedOut, staleStatus, status } from "./ui.js";
import { keyView } from "./keys.js";
import { accessView, principalView } from "./access.js";
import { auditView } from "./audit.js";
import { healthView } from "./health.js";

const $ = (id) => document.getElementById(id);
let wanted = "";

function showSignIn(message) {
  api.signOut();
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  clear($("view"));
  $("signin").hidden = false;
  notice(message || "");
  if (location.hash !== "") {
    // The page asked for is where sign-in leads; the address bar forgets it.
    wanted = location.hash;
    history.replaceState(null, "", location.pathname);
  }
  $("akid").focus();
}

async function settings() {
  try {
    const response = await fetch("/console/settings.json", { cache: "no-store" });
    return await response.json();
  } catch {
    return {};
  }
}

async function onSignIn(event) {
  event.preventDefault();
  const akid = $("akid").value.trim();
  const secretInput = $("secret");
  const secret = secretInput.value;
  const token = $("token").value.trim();
  secretInput.value = ""; // the fields never hold them after the attempt
  $("token").value = "";
  const region = $("region").value.trim();
  notice("");
  try {
    const who = await api.signIn(akid, secret, region, token);
    $("signin").hidden = true;
    $("nav").hidden = false;
    $("signout").hidden = false;
    $("who").textContent = who.arn;
    $("akid").value = "";
    const next = wanted || "#/keys";
    wanted = "";
    if (location.hash === next) route(); else location.hash = next;
  } catch (error) {
    notice(`Sign-in failed. ${error.code ? error.code + ": " : ""}${error.message}`);
    secretInput.focus();
  }
}

// -- keys list --

const PAGE = 25;
let pageMarkers = [undefined];

async function keysView(view, pageIndex) {
  const marker = pageMarkers[pageIndex];
  const page = await attempt("Listing keys", () =>
    api.kms("ListKeys", marker ? { Limit: PAGE, Marker: marker } : { Limit: PAGE }));
  if (!page) return;
  if (page.Truncated) pageMarkers[pageIndex + 1] = page.NextMarker;
  const aliases = (await attempt("Listing aliases", () =>
    api.all("ListAliases", {}, "Aliases"))) || [];
  const byKey = new Map();
  for (const alias of aliases) {
    if (!alias.TargetKeyId) continue;
    if (!byKey.has(alias.TargetKeyId)) byKey.set(alias.TargetKeyId, []);
    byKey.get(alias.TargetKeyId).push(alias.AliasName);
  }
  const keys = await Promise.all(page.Keys.map(async (key) => {
    try {
      const meta = (await api.kms("DescribeKey", { KeyId: key.KeyId })).KeyMetadata;
      let rotation = "";
      if (meta.KeySpec === "SYMMETRIC_DEFAULT" && meta.KeyManager === "CUSTOMER"
          && meta.Origin === "AWS_KMS" && meta.KeyState !== "PendingDeletion") {
        try {
          const r = await api.kms("GetKeyRotationStatus", { KeyId: key.KeyId });
          rotation = r.KeyRotationEnabled ? "on" : "off";
        } catch { rotation = "?"; }
      }
      return { meta, rotation };
    } catch (error) {
      return { meta: { KeyId: key.KeyId, KeyState: error.code || "?" }, rotation: "" };
    }
  }));
  const filter = h("input", { type: "search", placeholder: "alias, id, state, spec, description",
                              id: "key-filter" });
  const body = h("div");
  const render = () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = keys.filter(({ meta }) => {
      const hay = [...(byKey.get(meta.KeyId) || []), meta.KeyId, meta.KeyState, meta.KeySpec,
                   meta.KeyUsage, meta.Description].join(" ").toLowerCase();
      return words.every((w) => hay.includes(w));
    });
    clear(body).append(table(
      ["Alias", "Key id", "State", "Key spec", "Usage", "Rotation", "Created"],
      shown.map(({ meta, rotation }) => [
        (byKey.get(meta.KeyId) || []).join(", "),
        h("a", { href: `#/key/${encodeURIComponent(meta.KeyId)}/general` }, meta.KeyId),
        h("span", { class: "state state-" + String(meta.KeyState).toLowerCase() }, meta.KeyState),
        meta.KeySpec || "", meta.KeyUsage || "", rotation, date(meta.CreationDate),
      ]), `Keys, page ${pageIndex + 1}`));
  };
  filter.addEventListener("input", render);
  render();
  view.append(
    h("div", { class: "heading" }, h("h1", {}, "Keys"),
      h("a", { class: "button", href: "#/create" }, "Create key")),
    field("Filter this page", filter),
    body,
    h("div", { class: "pager" },
      pageIndex > 0 ? h("a", { class: "button", href: `#/keys/${pageIndex - 1}` }, "Previous page") : null,
      page.Truncated ? h("a", { class: "button", href: `#/keys/${pageIndex + 1}` }, "Next page") : null));
}

// -- create key --

const SPECS = {
  symmetric: ["SYMMETRIC_DEFAULT"],
  asymmetric: ["RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
               "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519",
               "ML_DSA_44", "ML_DSA_65", "ML_DSA_87"],
  hmac: ["HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"],
};

export function usagesFor(spec) {
  if (spec === "SYMMETRIC_DEFAULT") return ["ENCRYPT_DECRYPT"];
  if (spec.startsWith("RSA_")) return ["ENCRYPT_DECRYPT", "SIGN_VERIFY"];
  if (spec.startsWith("ECC_NIST_P")) return ["SIGN_VERIFY", "KEY_AGREEMENT"];
  if (spec.startsWith("HMAC_")) return ["GENERATE_VERIFY_MAC"];
  return ["SIGN_VERIFY"];
}

function createView(view) {
  const kind = h("select", { id: "create-kind" },
    h("option", { value: "symmetric" }, "Symmetric (encrypt and decrypt)"),
    h("option", { value: "asymmetric" }, "Asymmetric (RSA, elliptic curve, ML-DSA)"),
    h("option", { value: "hmac" }, "HMAC"));
  const spec = h("select", { id: "create-spec" });
  const usage = h("select", { id: "create-usage" });
  const description = h("input", { id: "create-description", maxlength: 8192 });
  const alias = h("input", { id: "create-alias", placeholder: "alias/name (optional)" });
  const tagKey = h("input", { id: "create-tag-key" });
  const tagValue = h("input", { id: "create-tag-value" });
  const problem = h("p", { class: "problem", id: "create-problem", "aria-live": "polite" });
  const fillSpecs = () => {
    clear(spec).append(...SPECS[kind.value].map((s) => h("option", { value: s }, s)));
    fillUsages();
  };
  const fillUsages = () => {
    clear(usage).append(...usagesFor(spec.value).map((u) => h("option", { value: u }, u)));
  };
  kind.addEventListener("change", fillSpecs);
  spec.addEventListener("change", fillUsages);
  fillSpecs();
  const form = h("form", { class: "card", id: "create-form" },
    field("Key type", kind), field("Key spec", spec), field("Key usage", usage,
      "Only the usages the key spec allows are offered."),
    field("Description", description), field("Alias", alias),
    h("fieldset", {}, h("legend", {}, "Tag (optional)"),
      field("Tag key", tagKey), field("Tag value", tagValue)),
    problem, h("button", { type: "submit" }, "Create key"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    if (!usagesFor(spec.value).includes(usage.value)) {
      problem.textContent = `${spec.value} keys cannot be used for ${usage.value}.`;
      return;
    }
    const aliasName = alias.value.trim();
    if (aliasName && !/^alias\/[a-zA-Z0-9/_-]{1,250}$/.test(aliasName)) {
      problem.textContent = "An alias is alias/ and then letters, digits, /, _ or -.";
      return;
    }
    if (!tagKey.value && tagValue.value) {
      problem.textContent = "A tag value needs a tag key.";
      return;
    }
    const request = { KeySpec: spec.value, KeyUsage: usage.value, Description: description.value };
    if (tagKey.value) request.Tags = [{ TagKey: tagKey.value, TagValue: tagValue.value }];
    const created = await attempt("Creating the key", () => api.kms("CreateKey", request));
    if (!created) return;
    const keyId = created.KeyMetadata.KeyId;
    if (aliasName) {
      await attempt("Creating the alias", () =>
        api.kms("CreateAlias", { AliasName: aliasName, TargetKeyId: keyId }));
    }
    status(`Created key ${keyId}.`);
    location.hash = `#/key/${encodeURIComponent(keyId)}/general`;
  });
  view.append(h("h1", {}, "Create key"), form);
}

// -- routing --

let routes = 0;

async function route() {
  if (!api.signedIn()) { showSignIn(); return; }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  // Each page is drawn detached and shown only if no later navigation
  // started meanwhile (a slow page never lands on top of the next one).
  const token = ++routes;
  staleStatus();
  const view = h("div");
  for (const link of $("nav").querySelectorAll("a")) {
    const current = location.hash.startsWith(link.getAttribute("href"))
      || (link.getAttribute("href") === "#/keys" && parts[0] === "key");
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  const [name, arg, tab] = parts;
  if (name === "keys" || name === "") {
    const index = Math.max(0, Number.parseInt(arg || "0", 10) || 0);
    if (index === 0) pageMarkers = [undefined];
    await keysView(view, Math.min(index, pageMarkers.length - 1));
  } else if (name === "create") {
    createView(view);
  } else if (name === "key" && arg) {
    await keyView(view, arg, tab || "general");
  } else if (name === "access") {
    await accessView(view);
  } else if (name === "principal" && arg) {
    await principalView(view, arg);
  } else if (name === "audit") {
    await auditView(view);
  } else if (name === "health") {
    await healthView(view);
  } else {
    view.append(h("h1", {}, "Not found"), h("p", {}, "No such page."));
  }
  if (token !== routes || !api.signedIn()) return;
  clear($("view")).append(view);
  const heading = view.querySelector("h1");
  if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
}

async function start() {
  const config = await settings();
  $("region").value = config.region || "us-east-1";
  onSignedOut(showSignIn);
  $("signin-form").addEventListener("submit", onSignIn);
  $("signout").addEventListener("click", () => showSignIn("Signed out."));
  api.whenExpired(() => showSignIn("Your session expired after 15 minutes without activity."));
  for (const type of ["keydown", "pointerdown"]) {
    document.addEventListener(type, () => api.touch(), { passive: true });
  }
  window.addEventListener("hashchange", route);
  showSignIn();
}

start();
