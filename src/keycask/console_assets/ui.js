// The page's two message areas and the way every view runs an action.

import * as api from "./api.js";

let signedOutHook = () => {};

export function onSignedOut(hook) {
  signedOutHook = hook;
}

export function notice(message) {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.hidden = !message;
}

let statusAt = 0;

export function status(message) {
  document.getElementById("status").textContent = message;
  statusAt = Date.now();
}

// A new page keeps the last action's message only if it was just said.
export function staleStatus() {
  if (Date.now() - statusAt > 3000) document.getElementById("status").textContent = "";
}

// Runs an action; on an error shows it (code and message) and answers undefined.
export async function attempt(what, action) {
  notice("");
  try {
    return await action();
  } catch (error) {
    if (error instanceof api.ApiError && error.code === "SignedOut") {
      signedOutHook("Signed out.");
      return undefined;
    }
    const code = error.code ? `${error.code}: ` : "";
    notice(`${what} failed. ${code}${error.message}`);
    return undefined;
  }
}

// Draws the current page again from keycask (after a change).
export function reload() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}
