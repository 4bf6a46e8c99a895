// socorg portal: small enhancements; every page works without this script.
(function () {
  "use strict";

  // Move focus to an error summary or a fresh result, so keyboard and screen-reader users land on it.
  function focusFirst() {
    var target = document.querySelector("[data-focus]");
    if (target) { target.focus(); }
  }

  // "Add a council member": reveal the hidden button and clone the last row with the next index.
  function enableRowAdding() {
    document.querySelectorAll("fieldset[data-rows]").forEach(function (fieldset) {
      var button = fieldset.querySelector("[data-add-row]");
      if (!button) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        var rows = fieldset.querySelectorAll("[data-row]");
        var last = rows[rows.length - 1];
        var next = rows.length;
        var copy = last.cloneNode(true);
        copy.querySelectorAll("input, select, label, p").forEach(function (node) {
          ["id", "for", "name", "aria-describedby"].forEach(function (attr) {
            var value = node.getAttribute(attr);
            if (value) { node.setAttribute(attr, value.replace(/(council[.-])\d+/g, "$1" + next)); }
          });
          if (node.tagName === "LABEL") { node.textContent = node.textContent.replace(/\d+/, String(next + 1)); }
          if (node.tagName === "INPUT") { node.value = ""; node.removeAttribute("aria-invalid"); }
          if (node.tagName === "SELECT") { node.selectedIndex = 0; }
          if (node.classList.contains("error-message")) { node.remove(); }
        });
        last.after(copy);
        var input = copy.querySelector("input");
        if (input) { input.focus(); }
      });
    });
  }

  // A long action (the risk sweep): show a progress bar and the elapsed time while the server works.
  function enableProgress() {
    document.querySelectorAll("form[data-progress]").forEach(function (form) {
      form.addEventListener("submit", function () {
        var box = form.querySelector(".progress");
        var elapsed = form.querySelector("[data-elapsed]");
        var started = Date.now();
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
        if (box) { box.hidden = false; }
        if (elapsed) {
          setInterval(function () { elapsed.textContent = ((Date.now() - started) / 1000).toFixed(1) + " s"; }, 100);
        }
      });
    });
  }

  // Irreversible actions ask first.
  function enableConfirm() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    focusFirst();
    enableRowAdding();
    enableProgress();
    enableConfirm();
  });
})();
