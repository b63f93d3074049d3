/* The campaign dashboard's behaviour: confirmation dialogs, and live updates from /events.
   No inline script anywhere (the Content-Security-Policy forbids it); text from the server is
   only ever set with textContent, never parsed as HTML. */
(function () {
  "use strict";

  var ICONS = { running: "\u25b6", paused: "\u2016", cancelled: "\u2715", completed: "\u2713", draft: "\u270e" };
  var SVG = "http://www.w3.org/2000/svg";

  // --- Confirmation: a form with data-confirm asks in <dialog id="confirm"> first. ---------
  var dialog = document.getElementById("confirm");
  var pending = null;

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (!message || !dialog || form.getAttribute("data-confirmed") === "yes") {
      return;
    }
    event.preventDefault();
    pending = form;
    var text = document.getElementById("confirm-text");
    text.textContent = message;
    var countUrl = form.getAttribute("data-count-url");
    if (countUrl) {
      var count = document.createElement("strong");
      count.setAttribute("data-testid", "redial-count");
      count.textContent = "\u2026";
      text.appendChild(document.createElement("br"));
      text.appendChild(document.createTextNode("Contacts that will be dialled again: "));
      text.appendChild(count);
      fetch(countUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (body) {
          count.textContent = body.count !== undefined ? String(body.count) : String(body.error);
        })
        .catch(function () { count.textContent = "unknown"; });
    }
    dialog.showModal();
    document.getElementById("confirm-no").focus();
  });

  if (dialog) {
    document.getElementById("confirm-yes").addEventListener("click", function () {
      dialog.close();
      if (pending) {
        pending.setAttribute("data-confirmed", "yes");
        pending.submit();
      }
    });
    document.getElementById("confirm-no").addEventListener("click", function () {
      pending = null;
      dialog.close();
    });
  }

  // --- Live: /events snapshots update the page in place. ----------------------------------
  var root = document.querySelector("[data-live]");
  if (!root) {
    return;
  }
  var watched = root.getAttribute("data-live");
  var url = "/events" + (watched ? "?campaign=" + encodeURIComponent(watched) : "");

  function lookup(object, path) {
    return path.split(".").reduce(function (value, key) {
      return value === null || value === undefined ? undefined : value[key];
    }, object);
  }

  function when(value) {
    if (!value) { return "\u2014"; }
    var date = new Date(value);
    if (isNaN(date.getTime())) { return String(value); }
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function show(element, value) {
    var format = element.getAttribute("data-format");
    var text;
    if (format === "when") {
      text = when(value);
    } else if (format === "percent") {
      text = value === null || value === undefined ? "\u2014" : (Math.round(value * 1000) / 10) + " %";
    } else if (value === null || value === undefined) {
      text = element.getAttribute("data-field") === "status_reason" ? "" : "\u2014";
    } else {
      text = String(value);
    }
    if (element.textContent !== text) {
      element.textContent = text;
    }
  }

  function svgElement(name, attributes, text) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    if (text !== undefined) { element.textContent = text; }
    return element;
  }

  function clearChart(svg) {
    Array.prototype.slice.call(svg.childNodes).forEach(function (node) {
      if (node.nodeName !== "title") { svg.removeChild(node); }
    });
  }

  function columns(svg, values) {
    var peak = Math.max.apply(null, values.concat([1]));
    clearChart(svg);
    svg.appendChild(svgElement("line", { x1: 0, y1: 110, x2: 600, y2: 110, "class": "axis" }));
    values.forEach(function (value, index) {
      var height = Math.round(value / peak * 1000) / 10;
      var rect = svgElement("rect", { x: index * 10 + 1, y: 110 - height, width: 8, height: height, "class": "bar" });
      rect.appendChild(svgElement("title", {}, (60 - index) + " min ago: " + value + " calls"));
      svg.appendChild(rect);
    });
    svg.appendChild(svgElement("text", { x: 0, y: 10, "class": "label" }, "peak " + Math.max.apply(null, values.concat([0])) + " calls/min"));
  }

  function bars(svg, entries) {
    var keys = Object.keys(entries);
    var peak = Math.max.apply(null, keys.map(function (k) { return entries[k]; }).concat([1]));
    clearChart(svg);
    svg.setAttribute("viewBox", "0 0 400 " + Math.max(keys.length, 1) * 22);
    if (!keys.length) {
      svg.appendChild(svgElement("text", { x: 0, y: 15, "class": "label" }, "none yet"));
    }
    keys.forEach(function (key, index) {
      var width = Math.round(entries[key] / peak * 2000) / 10;
      var y = index * 22;
      svg.appendChild(svgElement("text", { x: 0, y: y + 15, "class": "label" }, key));
      svg.appendChild(svgElement("rect", { x: 140, y: y + 4, width: width, height: 14, "class": "bar" }));
      svg.appendChild(svgElement("text", { x: 145 + width, y: y + 15, "class": "label" }, String(entries[key])));
    });
  }

  function rows(tbody, items) {
    var names = tbody.getAttribute("data-columns").split(",");
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    if (!items.length) {
      var empty = document.createElement("tr");
      var cell = document.createElement("td");
      cell.colSpan = names.length;
      cell.textContent = "none";
      empty.appendChild(cell);
      tbody.appendChild(empty);
      return;
    }
    items.forEach(function (item) {
      var row = document.createElement("tr");
      names.forEach(function (name) {
        var td = document.createElement("td");
        var value = item[name];
        td.textContent = value === null || value === undefined ? "" :
          (name === "at" || name === "next_opening" ? when(value) : String(value));
        row.appendChild(td);
      });
      tbody.appendChild(row);
    });
  }

  function applyTo(scope, data) {
    scope.querySelectorAll("[data-field]").forEach(function (element) {
      show(element, lookup(data, element.getAttribute("data-field")));
    });
    scope.querySelectorAll("[data-field-icon]").forEach(function (element) {
      element.textContent = ICONS[data.status] || "\u2022";
      var holder = element.parentNode;
      if (holder && holder.className.indexOf("status") === 0) { holder.className = "status status-" + data.status; }
    });
    scope.querySelectorAll("progress[data-progress]").forEach(function (bar) {
      bar.max = Math.max(data.total, 1);
      bar.value = data.done;
    });
  }

  function apply(snapshot) {
    if (!snapshot) { return; }
    if (snapshot.campaigns) {
      snapshot.campaigns.forEach(function (item) {
        document.querySelectorAll("tr[data-campaign]").forEach(function (row) {
          if (row.getAttribute("data-campaign") === item.name) { applyTo(row, item); }
        });
      });
      return;
    }
    applyTo(root, snapshot);
    var perMinute = root.querySelector("[data-chart-for=calls_per_minute] svg");
    if (perMinute) { columns(perMinute, snapshot.calls_per_minute); }
    root.querySelectorAll("svg[data-chart-name]").forEach(function (svg) {
      bars(svg, snapshot[svg.getAttribute("data-chart-name")] || {});
    });
    root.querySelectorAll("tbody[data-rows]").forEach(function (tbody) {
      rows(tbody, snapshot[tbody.getAttribute("data-rows")] || []);
    });
  }

  var source = null;
  function open() {
    if (source) { return; }
    source = new EventSource(url);
    source.addEventListener("snapshot", function (event) {
      apply(JSON.parse(event.data));
    });
    source.addEventListener("error", function () {
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (the session ended): log in again, then come back here.
        source = null;
        window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname + window.location.search));
      }
    });
  }
  function close() {
    if (source) {
      source.close();
      source = null;
    }
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { close(); } else { open(); }
  });
  if (!document.hidden) { open(); }
})();
