// AWS Signature Version 4 for the console's calls, with WebCrypto
// (HMAC-SHA256, SHA-256). keycask verifies SigV4 exactly as botocore signs,
// so this signs as botocore's SigV4Auth does for a POST to "/" with no
// query string: every header given is signed, with host and x-amz-date.
// tests/e2e/test_console_browser.py checks it against botocore byte for byte.

const encoder = new TextEncoder();

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(text) {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

async function hmac(key, message) {
  const raw = typeof key === "string" ? encoder.encode(key) : key;
  const cryptoKey = await crypto.subtle.importKey(
    "raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, encoder.encode(message)));
}

// 20261207T151500Z
export function amzDate(date) {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

// The headers to send (Authorization, X-Amz-Date and the given ones; the
// browser adds Host itself, which must be `host` as signed).
export async function sign({ host, headers, body, accessKeyId, secret, region, service,
                             sessionToken = null, now = new Date(), method = "POST", path = "/" }) {
  const date = amzDate(now);
  const day = date.slice(0, 8);
  const canonical = {};
  for (const [name, value] of Object.entries(headers)) {
    canonical[name.toLowerCase()] = String(value).trim().replace(/\s+/g, " ");
  }
  canonical["host"] = host;
  canonical["x-amz-date"] = date;
  if (sessionToken) canonical["x-amz-security-token"] = sessionToken;
  const names = Object.keys(canonical).sort();
  const signedHeaders = names.join(";");
  const request = [
    method, path, "",
    names.map((n) => `${n}:${canonical[n]}\n`).join(""),
    signedHeaders,
    await sha256Hex(body),
  ].join("\n");
  const scope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", date, scope, await sha256Hex(request)].join("\n");
  let key = await hmac("AWS4" + secret, day);
  key = await hmac(key, region);
  key = await hmac(key, service);
  key = await hmac(key, "aws4_request");
  const signature = hex(await hmac(key, stringToSign));
  const out = { ...headers, "X-Amz-Date": date };
  if (sessionToken) out["X-Amz-Security-Token"] = sessionToken;
  out["Authorization"] =
    `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, ` +
    `SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return out;
}
