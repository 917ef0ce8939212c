/* gradaudit HTML report: draws the gradient-flow chart as inline SVG from the embedded JSON.
   Vanilla JS, no library, no network. Model-supplied names only ever reach the page through
   textContent, never as HTML, so a hostile layer name stays text. */
(function () {
  "use strict";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var WIDTH = 900, HEIGHT = 400, LEFT = 64, RIGHT = 16, TOP = 16, BOTTOM = 140;
  var MAX_LABELS = 40, LABEL_CHARS = 20, MAX_TICKS = 8;

  function svg(tag, attrs, parent) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function tooltip(node, text) {
    svg("title", {}, node).textContent = text;
  }

  function fmt(value) {
    return value === null ? "n/a" : "10^" + value.toFixed(2);
  }

  /* Cut long names in the middle: layer paths differ most at their ends. */
  function shorten(name) {
    if (name.length <= LABEL_CHARS) { return name; }
    var head = Math.floor((LABEL_CHARS - 1) / 3);
    return name.slice(0, head) + "\u2026" + name.slice(name.length - (LABEL_CHARS - 1 - head));
  }

  /* Extent of the log10 values, widened to whole decades and at least one decade tall. */
  function extent(layers) {
    var values = [];
    layers.forEach(function (row) {
      if (row.predicted_log10 !== null) { values.push(row.predicted_log10); }
      if (row.measured_log10 !== null) { values.push(row.measured_log10); }
    });
    if (values.length === 0) { return null; }
    var low = Math.floor(Math.min.apply(null, values));
    var high = Math.ceil(Math.max.apply(null, values));
    return high > low ? [low, high] : [low - 1, high + 1];
  }

  /* A path through the non-null points; a gap in the data breaks the line. */
  function seriesPath(layers, key, x, y) {
    var d = "", pen = "M";
    layers.forEach(function (row, i) {
      var value = row[key];
      if (value === null) { pen = "M"; return; }
      d += pen + x(i).toFixed(1) + " " + y(value).toFixed(1) + " ";
      pen = "L";
    });
    return d.trim();
  }

  function drawAxes(chart, layers, range, x, y) {
    var step = Math.max(1, Math.ceil((range[1] - range[0]) / MAX_TICKS));
    for (var v = range[0]; v <= range[1]; v += step) {
      svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(v), y2: y(v), "class": "grid" }, chart);
      svg("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end", "class": "label" }, chart).textContent = "1e" + v;
    }
    svg("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: HEIGHT - BOTTOM, "class": "axis" }, chart);
    svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: HEIGHT - BOTTOM, y2: HEIGHT - BOTTOM, "class": "axis" }, chart);
    var every = Math.ceil(layers.length / MAX_LABELS);
    layers.forEach(function (row, i) {
      if (i % every !== 0) { return; }
      var px = x(i), py = HEIGHT - BOTTOM + 12;
      var label = svg("text", { x: px, y: py, "text-anchor": "end", "class": "label layer-label",
                                transform: "rotate(-55 " + px + " " + py + ")" }, chart);
      label.textContent = shorten(row.name);
      tooltip(label, row.name);
    });
    var title = svg("text", { x: 14, y: TOP + (HEIGHT - BOTTOM - TOP) / 2, "class": "label",
                              transform: "rotate(-90 14 " + (TOP + (HEIGHT - BOTTOM - TOP) / 2) + ")",
                              "text-anchor": "middle" }, chart);
    title.textContent = "weight grad RMS (log scale)";
  }

  function drawPoints(chart, layers, x, y, range) {
    layers.forEach(function (row, i) {
      var text = row.name + " (" + row.op + ")\npredicted " + fmt(row.predicted_log10) +
                 "\nmeasured " + (row.nonfinite ? "non-finite" : fmt(row.measured_log10));
      var group = svg("g", { "class": "point", "data-layer": i }, chart);
      tooltip(group, text);
      if (row.predicted_log10 !== null) {
        svg("circle", { cx: x(i), cy: y(row.predicted_log10), r: 3.5, "class": "dot-predicted hit" }, group);
      }
      if (row.nonfinite) {
        svg("circle", { cx: x(i), cy: y(range[1]), r: 5, "class": "dot-nonfinite hit" }, group);
      } else if (row.measured_log10 !== null) {
        svg("circle", { cx: x(i), cy: y(row.measured_log10), r: 3.5, "class": "dot-measured hit" }, group);
      }
    });
  }

  function drawChart(host, layers) {
    var range = extent(layers);
    if (range === null) { return; }
    var plotWidth = WIDTH - LEFT - RIGHT, plotHeight = HEIGHT - TOP - BOTTOM;
    var x = function (i) { return LEFT + (layers.length === 1 ? plotWidth / 2 : i * plotWidth / (layers.length - 1)); };
    var y = function (v) { return TOP + (range[1] - v) / (range[1] - range[0]) * plotHeight; };
    var chart = svg("svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img", "class": "flow-svg",
                             "aria-label": "Per-layer weight gradient RMS, predicted and measured" });
    drawAxes(chart, layers, range, x, y);
    ["predicted", "measured"].forEach(function (series) {
      var d = seriesPath(layers, series + "_log10", x, y);
      if (d) { svg("path", { d: d, "class": series + " series" }, chart); }
    });
    drawPoints(chart, layers, x, y, range);
    host.appendChild(chart);
  }

  var pages = JSON.parse(document.getElementById("gradaudit-data").textContent);
  pages.forEach(function (page, index) {
    var host = document.querySelector('.flow-chart[data-report="' + index + '"]');
    if (host) { drawChart(host, page.layers); }
  });
})();
