// The console's only way to keycask: signed calls to POST / under the
// signed-in principal's access key. The key lives in this module's scope
// only (never in web storage or a cookie) and is wiped at
// sign-out or after IDLE_MS without activity.

import { sign } from "./sigv4.js";

export const IDLE_MS = 15 * 60 * 1000;

let session = null; // { accessKeyId, secret, sessionToken, region, arn }
let idleTimer = null;
let onExpire = () => {};

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message || code);
    this.code = code;
    this.status = status;
  }
}

export function signedIn() {
  return session !== null;
}

export function identity() {
  return session === null ? null : { accessKeyId: session.accessKeyId, arn: session.arn,
                                     region: session.region };
}

export function whenExpired(callback) {
  onExpire = callback;
}

export function touch() {
  if (session === null) return;
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => { signOut(); onExpire(); }, IDLE_MS);
}

export function signOut() {
  clearTimeout(idleTimer);
  idleTimer = null;
  if (session !== null) {
    session.secret = "";
    session.sessionToken = "";
    session = null;
  }
}

async function signedFetch(method, path, service, headers, body) {
  if (session === null) throw new ApiError("SignedOut", "You are signed out.", 0);
  const signed = await sign({
    host: location.host, headers, body, service, method, path,
    accessKeyId: session.accessKeyId, secret: session.secret, region: session.region,
    sessionToken: session.sessionToken || null,
  });
  return fetch(path, {
    method, headers: signed, body: method === "GET" ? undefined : body, credentials: "omit",
    cache: "no-store", redirect: "error", referrerPolicy: "no-referrer",
  });
}

async function post(service, headers, body) {
  if (session === null) throw new ApiError("SignedOut", "You are signed out.", 0);
  touch();
  return signedFetch("POST", "/", service, headers, body);
}

// GET /metrics, signed (keycask:GetMetrics; a loopback page is answered
// anyway): the Prometheus text. Not activity: the Health page polls it, and
// polling must not keep an idle session alive.
export async function metrics() {
  const response = await signedFetch("GET", "/metrics", "kms", {}, "");
  const text = await response.text();
  if (!response.ok) {
    let doc = {};
    try { doc = JSON.parse(text); } catch { doc = {}; }
    const type = String(doc.__type || "Error").split("#").pop();
    throw new ApiError(type, doc.message || doc.Message || `HTTP ${response.status}`,
                       response.status);
  }
  return text;
}

// A JSON call: TrentService.<Op> (KMS) or KeycaskAdmin.<Op>.
export async function call(target, request = {}) {
  const body = JSON.stringify(request);
  const response = await post("kms", {
    "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target }, body);
  const text = await response.text();
  let doc = {};
  try { doc = text ? JSON.parse(text) : {}; } catch { doc = {}; }
  if (!response.ok) {
    const type = String(doc.__type || "Error").split("#").pop();
    throw new ApiError(type, doc.message || doc.Message || `HTTP ${response.status}`,
                       response.status);
  }
  return doc;
}

export const kms = (operation, request) => call("TrentService." + operation, request);
export const admin = (operation, request) => call("KeycaskAdmin." + operation, request);

// Every page of a paged KMS list (Truncated / NextMarker).
export async function all(operation, request, member) {
  const items = [];
  let marker;
  for (let page = 0; page < 100; page++) {
    const doc = await kms(operation, marker ? { ...request, Marker: marker } : request);
    items.push(...(doc[member] || []));
    if (!doc.Truncated) break;
    marker = doc.NextMarker;
  }
  return items;
}

function text(xml, tag) {
  const found = xml.getElementsByTagName(tag)[0];
  return found ? found.textContent : "";
}

// Sign in: STS GetCallerIdentity proves the key (every principal may call
// it). On failure nothing is kept.
export async function signIn(accessKeyId, secret, region, sessionToken = "") {
  signOut();
  session = { accessKeyId, secret, sessionToken, region, arn: "" };
  try {
    const response = await post("sts", {
      "Content-Type": "application/x-www-form-urlencoded; charset=utf-8" },
      "Action=GetCallerIdentity&Version=2011-06-15");
    const xml = new DOMParser().parseFromString(await response.text(), "text/xml");
    if (!response.ok) {
      throw new ApiError(text(xml, "Code") || "Error",
                         text(xml, "Message") || `HTTP ${response.status}`, response.status);
    }
    session.arn = text(xml, "Arn");
    touch();
    return identity();
  } catch (error) {
    signOut();
    throw error;
  }
}
