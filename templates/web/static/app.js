// invites: progressive enhancement only. Every page works without this file.
(function () {
  "use strict";

  // Drag and drop onto a file field's label: the dropped file becomes the field's value.
  document.querySelectorAll(".dropzone").forEach(function (zone) {
    var input = zone.querySelector("input[type=file]");
    var label = zone.querySelector("[data-filename]");
    if (!input) return;
    function show() {
      if (label && input.files && input.files.length) label.textContent = input.files[0].name;
    }
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        show();
      }
    });
  });

  // Live parts of a page: an element with data-poll="URL" is replaced by the HTML that URL returns, every
  // two seconds, until the new element no longer has data-poll (the work is done).
  function poll(element) {
    var url = element.getAttribute("data-poll");
    if (!url) return;
    window.setTimeout(function () {
      fetch(url, { headers: { "Accept": "text/html", "X-Requested-With": "fetch" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
        .then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html.trim();
          var fresh = holder.firstElementChild;
          if (!fresh) return;
          element.replaceWith(fresh);
          if (fresh.hasAttribute("data-poll")) poll(fresh);
        })
        .catch(function () { poll(element); });
    }, 2000);
  }
  document.querySelectorAll("[data-poll]").forEach(poll);

  // Preview width: buttons with data-width switch the frame between desktop and mobile.
  document.querySelectorAll("[data-width]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      var frame = document.getElementById(button.getAttribute("aria-controls"));
      if (!frame) return;
      event.preventDefault();
      frame.classList.toggle("mobile", button.getAttribute("data-width") === "mobile");
      document.querySelectorAll("[data-width]").forEach(function (other) {
        other.setAttribute("aria-pressed", String(other === button));
      });
    });
  });
})();
