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

  // Answer forms (data-evidence): what a person does before pressing, for the server to tell them from a
  // mail gateway's scanner, which opens every link and presses at once (invites/domain/evidence.py). The counts
  // travel in the form's hidden "evidence" field; without this script the server asks for one more press.
  var forms = document.querySelectorAll("form[data-evidence]");
  if (forms.length) {
    var seen = { m: 0, k: 0, w: 0, t: 0 };
    var press = null;
    function count(key, weight) {
      return function (event) { if (event.isTrusted) seen[key] += weight ? weight(event) : 1; };
    }
    window.addEventListener("pointermove", count("m", function (event) {
      return event.getCoalescedEvents ? Math.max(1, event.getCoalescedEvents().length) : 1;
    }), { passive: true });
    window.addEventListener("keydown", count("k"), true);
    window.addEventListener("wheel", count("w"), { passive: true });
    window.addEventListener("touchstart", count("t"), { passive: true });
    window.addEventListener("touchmove", count("t"), { passive: true });
    // element.click() makes an untrusted click, and requestSubmit() makes none: only a person's press is both
    // trusted and on the button that submits.
    document.addEventListener("click", function (event) {
      var button = event.target instanceof Element ? event.target.closest("button[type=submit]") : null;
      if (button) press = { button: button, trusted: event.isTrusted };
    }, true);
    forms.forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var trusted = press !== null && press.trusted && press.button === event.submitter;
        press = null;
        var field = form.querySelector("input[name=evidence]");
        if (field) {
          field.value = "js;m=" + seen.m + ";k=" + seen.k + ";w=" + seen.w + ";t=" + seen.t +
            ";p=" + (trusted ? 1 : 0);
        }
      });
    });
  }

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
