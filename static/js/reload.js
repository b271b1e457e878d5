// Reload the page every data-seconds seconds (the admins' AI queue), from a file: the
// Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  const seconds = Number(document.currentScript.dataset.seconds) || 10;
  setTimeout(() => window.location.reload(), seconds * 1000);
})();
