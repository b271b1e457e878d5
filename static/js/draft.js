// A read is never lost: the case page keeps what the reader entered, on the server (their
// draft, saved as they type) and in this tab (sessionStorage, for the moment the session is
// gone and the server cannot take it), and warns before the session ends. The server puts a
// kept draft back in the form; this script puts back only this tab's newer copy, which is
// still this same reader's own entry (the copy is keyed by reader and case).
(function () {
  "use strict";
  const sidebar = document.getElementById("case-sidebar");
  if (!sidebar || !sidebar.dataset.reader) return;
  const PREFIX = "mammo.read.";
  const key = `${PREFIX}${sidebar.dataset.reader}.${sidebar.dataset.case}`;
  const form = /** @type {HTMLFormElement | null} */ (document.getElementById("read-form"));
  const NOT_KEPT = ["csrfmiddlewaretoken", "kind", "opened", "decision"];

  function storage() {
    try { return window.sessionStorage; } catch (error) { return null; }  // storage disabled
  }

  // Another reader's copy never stays in a tab this reader uses.
  const store = storage();
  if (store) {
    for (let i = store.length - 1; i >= 0; i--) {
      const name = store.key(i);
      if (name && name.startsWith(PREFIX) && !name.startsWith(`${PREFIX}${sidebar.dataset.reader}.`)) store.removeItem(name);
    }
  }
  if (!form) {  // read recorded, case closed, or not this reader's to read: nothing to keep
    if (store) store.removeItem(key);
    return;
  }

  // The form's own fields (inputs, selects, text), the ones a draft keeps and puts back.
  function fields() {
    return Array.from(form.elements).filter((element) =>
      element instanceof HTMLInputElement || element instanceof HTMLSelectElement || element instanceof HTMLTextAreaElement);
  }

  function entered() {
    const values = {};
    for (const element of fields()) {
      if (!element.name || NOT_KEPT.includes(element.name) || element.type === "submit" || element.type === "button") continue;
      if (element instanceof HTMLInputElement && element.type === "radio") { if (element.checked) values[element.name] = element.value; continue; }
      if (element.value) values[element.name] = element.value;
    }
    return values;
  }

  function same(a, b) {
    const names = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...names].every((name) => (a[name] || "") === (b[name] || ""));
  }

  function putBack(values) {
    for (const element of fields()) {
      if (!element.name || NOT_KEPT.includes(element.name) || element.type === "submit" || element.type === "button") continue;
      if (element instanceof HTMLInputElement && element.type === "radio") element.checked = values[element.name] === element.value;
      else element.value = values[element.name] || "";
    }
    form.dispatchEvent(new Event("change", { bubbles: true }));  // case.js explains the read again
  }

  function keepInTab() {
    if (store) store.setItem(key, JSON.stringify({ at: Date.now(), fields: entered() }));
  }

  function tabCopy() {
    try { return JSON.parse((store && store.getItem(key)) || "null"); } catch (error) { return null; }
  }

  // --- The session: warn before it ends, offer to stay signed in -----------------------
  const warning = document.getElementById("session-warning");
  const warningText = document.getElementById("session-warning-text");
  const stay = document.getElementById("stay-signed-in");
  const signIn = document.getElementById("sign-in-again");
  const warnFor = Number(warning ? warning.dataset.warn : 0);
  let deadline = Date.now() + 1000 * Number(warning ? warning.dataset.expiresIn : 0);
  let signedOut = false;
  let timer = null;
  let pending = null;  // the draft's save, waiting for typing to stop (below); tick() flushes it

  function clock(seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function showSignedOut() {
    signedOut = true;
    if (timer) clearInterval(timer);
    keepInTab();
    if (!warning) return;
    warning.hidden = false;
    warningText.textContent = "You are signed out: nothing is recorded yet, and your read is kept. Sign in again to check it and record it.";
    stay.hidden = true;
    signIn.hidden = false;
  }

  function tick() {
    const left = (deadline - Date.now()) / 1000;
    if (left <= 0) { showSignedOut(); return; }
    if (!warning) return;
    if (left > warnFor) { warning.hidden = true; return; }
    if (warning.hidden && pending) saveNow();  // unsaved typing reaches the server in time
    warning.hidden = false;
    warningText.textContent = `You will be signed out in ${clock(left)} for inactivity. Your read so far is kept.`;
  }

  function extended(answer) {
    if (answer && typeof answer.expires_in === "number") deadline = Date.now() + 1000 * answer.expires_in;
    tick();
  }

  async function post(url, body) {
    const token = /** @type {HTMLInputElement} */ (form.querySelector("input[name=csrfmiddlewaretoken]")).value;
    const response = await fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": token },
    });
    if (response.status === 401) { showSignedOut(); return null; }
    return response.ok ? response.json() : null;
  }

  if (stay) {
    stay.addEventListener("click", async () => {
      try { extended(await post(warning.dataset.stayUrl, null)); } catch (error) { /* offline: the warning stays */ }
    });
  }

  // --- The draft: kept in this tab at once, on the server a moment after typing stops ----
  let saving = true;  // false once the server says this case no longer takes this read

  async function saveNow() {
    if (pending) { clearTimeout(pending); pending = null; }
    if (!saving || signedOut) return;
    try {
      const response = await fetch(form.dataset.draftUrl, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.status === 401) { showSignedOut(); return; }
      if (response.status === 409) { saving = false; return; }
      if (response.ok) extended(await response.json());
    } catch (error) { /* offline for a moment: the next change tries again */ }
  }

  function changed() {
    keepInTab();
    if (pending) clearTimeout(pending);
    pending = setTimeout(saveNow, 800);
  }

  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", (event) => {
    if (event.defaultPrevented) return;  // case.js stopped it: nothing was sent
    if (pending) { clearTimeout(pending); pending = null; }
    keepInTab();  // whatever answers this submit, the read is still here
  });

  // This tab's copy is newer than the server's draft (the session ended before the server
  // could take it): put it back, say so, and hand it to the server now that it can.
  const copy = tabCopy();
  const serverAt = Number(form.dataset.draftAt || 0);
  if (copy && copy.fields && !same(copy.fields, entered()) && copy.at > serverAt) {
    putBack(copy.fields);
    const note = document.getElementById("draft-restored");
    if (note) note.hidden = false;
    saveNow();
  }
  if (warning) timer = setInterval(tick, 1000);
  tick();
})();
