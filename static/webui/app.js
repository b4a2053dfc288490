// Draw plotly charts from json_script figures; re-run after every htmx swap.
(function () {
  "use strict";

  function themed(layout) {
    var style = getComputedStyle(document.body);
    var text = style.getPropertyValue("color") || "#1f2328";
    layout.font = Object.assign({}, layout.font || {}, { color: text });
    return layout;
  }

  var drawn = new WeakMap(); // chart element → the figure JSON it shows

  function drawCharts(root) {
    if (!window.Plotly) return;
    (root || document).querySelectorAll("[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      // still settling: its own afterSettle draws it once htmx has restored its attributes
      if (!source || el.closest(".htmx-settling") || drawn.get(el) === source.textContent) return;
      drawn.set(el, source.textContent);
      var figure = JSON.parse(source.textContent);
      window.Plotly.react(el, figure.data, themed(figure.layout), { displayModeBar: false, responsive: true });
    });
  }

  // A range input beside a number input (temperature, top_p): keep both in step.
  function bindSliders(root) {
    (root || document).querySelectorAll("input[data-slider]").forEach(function (input) {
      if (input.dataset.bound) return;
      input.dataset.bound = "1";
      var range = document.createElement("input");
      range.type = "range";
      range.min = input.min; range.max = input.max; range.step = input.step || "0.01";
      range.value = input.value || input.min;
      range.setAttribute("aria-label", (input.name || "value") + " slider");
      range.tabIndex = -1; // the number input is the keyboard control
      range.addEventListener("input", function () {
        input.value = range.value;
        input.dispatchEvent(new Event("input", { bubbles: true })); // an edit of the field like any other
      });
      input.addEventListener("input", function () { range.value = input.value; });
      input.insertAdjacentElement("afterend", range);
    });
  }

  function copyButtons(root) {
    (root || document).querySelectorAll("[data-copy]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () {
        var target = document.getElementById(button.dataset.copy);
        if (!target || !navigator.clipboard) return;
        navigator.clipboard.writeText(target.textContent.trim()).then(function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 1500);
        });
      });
    });
  }

  function init(root) { drawCharts(root); bindSliders(root); copyButtons(root); }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  // A chart about to be swapped out lets go of plotly (its resize listener, its pending redraws).
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!window.Plotly || !target) return;
    target.querySelectorAll("[data-figure]").forEach(function (el) { window.Plotly.purge(el); });
  });
  // Draw after the settle, not after the swap: when htmx settles, it gives an element whose id
  // matched an old one back the attributes of the response, removing the classes plotly adds
  // (js-plotly-plot); a chart drawn before that loses its layout, and its title, axis and
  // lines show up over the next chart.
  document.addEventListener("htmx:afterSettle", function () { init(document); });
  // A message describes the moment it was shown ("Baseline run started.", "Completed."):
  // once the experiment changes or its run ends, the page shows the new state and the
  // message would contradict it.
  ["run-finished", "experiment-changed"].forEach(function (name) {
    document.addEventListener(name, function () {
      var flash = document.getElementById("flash");
      if (flash) flash.innerHTML = "";
    });
  });

  // The setup page's one save form: say "Unsaved changes" as soon as a field of it changes,
  // and ask before leaving the page with them (a save answered with errors keeps them too).
  var leaving = false;
  function markUnsaved(event) {
    var form = event.target.form;
    var state = document.getElementById("save-state");
    if (form && state && form.id === "setup-form") state.classList.add("dirty");
  }
  document.addEventListener("input", markUnsaved);
  document.addEventListener("change", markUnsaved);
  document.addEventListener("submit", function (event) { if (event.target.id === "setup-form") leaving = true; });
  document.addEventListener("htmx:beforeRequest", function (event) { if (event.detail.elt.id === "setup-form") leaving = true; });
  document.addEventListener("htmx:afterRequest", function (event) { if (event.detail.elt.id === "setup-form") leaving = false; });
  window.addEventListener("beforeunload", function (event) {
    if (leaving || !document.querySelector("#save-state.dirty, #save-state[data-unsaved]")) return;
    event.preventDefault();
    event.returnValue = "";
  });

  // The branch form opened in place by "+ branch": focus moves into it, Escape or Close
  // closes it, and focus goes back to the link that opened it.
  var branchOpener = null;
  function closeBranch() {
    var holder = document.getElementById("branch-form");
    if (!holder || !holder.firstElementChild) return;
    holder.innerHTML = "";
    var opener = branchOpener;
    if (opener && !document.documentElement.contains(opener)) {
      // the tree was refreshed meanwhile: the same parent's new link
      opener = document.querySelector('a[hx-target="#branch-form"][href="' + opener.getAttribute("href") + '"]');
    }
    if (opener) opener.focus();
  }
  document.addEventListener("htmx:afterSettle", function (event) {
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!elt || elt.tagName !== "A" || elt.getAttribute("hx-target") !== "#branch-form") return;
    branchOpener = elt;
    var first = document.querySelector("#branch select, #branch input:not([type=hidden]), #branch textarea");
    if (first) first.focus();
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.activeElement && document.activeElement.closest("#branch-form")) closeBranch();
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-close-branch]")) closeBranch();
  });

  function say(text) {
    var flash = document.getElementById("flash");
    if (!flash) return;
    flash.innerHTML = '<div class="flash error" role="alert"></div>';
    flash.firstChild.textContent = text;
  }

  // Errors htmx does not swap (403, 404, 5xx): say so instead of failing silently.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : "";
    say(status === 403 ? "You do not have the role this needs." : status === 404 ? "Not found." : "The request failed (" + status + ").");
  });

  // A refusal (409) or a form error (400) answering an element that a refresh swapped out
  // meanwhile: htmx can no longer place it (its events no longer reach the document), so
  // show the message the answer carries in #flash.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt, xhr = event.detail.xhr;
    if (!xhr) return;
    xhr.addEventListener("loadend", function () {
      if ((xhr.status !== 409 && xhr.status !== 400) || document.documentElement.contains(elt)) return;
      var holder = document.createElement("div");
      holder.innerHTML = xhr.responseText;
      var message = holder.querySelector(".flash, .errorlist");
      say(message ? message.textContent.trim() : "The change was refused (" + xhr.status + "). Reload to see the current state.");
    });
  });

  // A plain form (no htmx) is sent once: a second click while the page is leaving would
  // post again and answer with a refusal instead of the first answer.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.hasAttribute("hx-post") || form.hasAttribute("hx-get") || (form.method || "").toLowerCase() !== "post") return;
    if (form.dataset.sent) { event.preventDefault(); return; }
    form.dataset.sent = "1";
  });
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-sent]").forEach(function (form) { delete form.dataset.sent; });
  });
})();
