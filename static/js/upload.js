// Upload with progress: the study's files are sent by XMLHttpRequest (fetch reports no
// upload progress), with megabytes and files sent shown while the button is disabled; the
// server's own page (stored, or the reasons it refused) then replaces the page's content.
// Without JavaScript the form posts as before. From a file: the CSP allows no inline script.
(function () {
  "use strict";

  function megabytes(bytes) {
    const mb = bytes / 1e6;
    return mb >= 100 ? String(Math.round(mb)) : mb.toFixed(1);
  }

  function chosenFiles(form) {
    return Array.from(form.querySelectorAll("input[type=file]")).flatMap((input) => Array.from(input.files));
  }

  // How many files have gone, from the bytes sent: the body holds the files in order, and
  // the few form fields and multipart boundaries are shared out in proportion.
  function filesSent(sizes, loaded, total) {
    const payload = sizes.reduce((a, b) => a + b, 0);
    const sent = total ? loaded * (payload / total) : 0;
    let end = 0;
    let count = 0;
    for (const size of sizes) {
      end += size;
      if (end <= sent + 1) count += 1;
    }
    return count;
  }

  function show(progress, loaded, total, sent, files) {
    progress.hidden = false;
    progress.querySelector("progress").value = total ? loaded / total : 0;
    progress.querySelector(".upload-sent").textContent =
      `${megabytes(loaded)} of ${megabytes(total)} MB, ${sent} of ${files} file${files === 1 ? "" : "s"}`;
  }

  function replacePage(html, url) {
    const answer = new DOMParser().parseFromString(html, "text/html");
    const main = answer.querySelector("main");
    if (!main || !answer.getElementById("upload-form")) {
      window.location.assign(url); // signed out, or another page: let the browser show it
      return false;
    }
    document.querySelector("main").innerHTML = main.innerHTML;
    return true;
  }

  function send(form) {
    const button = form.querySelector("button[type=submit]");
    const progress = form.querySelector("#upload-progress");
    const sizes = chosenFiles(form).map((file) => file.size);
    const request = new XMLHttpRequest();
    let last = { loaded: 0, total: 0 };

    button.disabled = true;
    button.textContent = "Uploading…";
    show(progress, 0, sizes.reduce((a, b) => a + b, 0), 0, sizes.length);
    request.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      last = { loaded: event.loaded, total: event.total };
      show(progress, event.loaded, event.total, filesSent(sizes, event.loaded, event.total), sizes.length);
    });
    request.upload.addEventListener("load", () => {
      progress.querySelector(".upload-sent").textContent += ": all sent, the server is checking them…";
    });
    request.addEventListener("load", () => {
      if (request.status >= 500) {
        failed(button, `The server failed (${request.status}). Look in the studies list before uploading again.`);
        return;
      }
      if (!replacePage(request.responseText, request.responseURL)) return;
      const again = document.querySelector("#upload-progress");
      if (again && last.total) show(again, last.total, last.total, sizes.length, sizes.length);
      const outcome = document.getElementById("upload-outcome");
      if (outcome) outcome.scrollIntoView({ block: "nearest" });
    });
    request.addEventListener("error", () => failed(button, "The connection failed before the server answered. Look in the studies list before uploading again."));
    request.open("POST", form.action || window.location.href);
    request.send(new FormData(form));
  }

  function failed(button, message) {
    const outcome = document.getElementById("upload-outcome");
    const box = document.createElement("div");
    box.className = "error";
    box.setAttribute("role", "alert");
    box.textContent = message;
    outcome.replaceChildren(box);
    button.disabled = false;
    button.textContent = "Upload";
  }

  // Delegated: the form is replaced by the server's answer after every upload.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.id !== "upload-form") return;
    event.preventDefault();
    send(form);
  });
})();
