/* gradaudit HTML report: draws the gradient-flow charts as inline SVG from the embedded JSON and
   enhances what already reads without it (table sort and filter, copy buttons, print).
   Vanilla JS, no library, no network. Model-supplied names only ever reach the page through
   textContent, never as HTML, so a hostile layer name stays text. Only elements inside a
   .gradaudit-report wrapper are touched, each wrapper once, so a notebook may hold several. */
(function () {
  "use strict";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var WIDTH = 900, HEIGHT = 400, LEFT = 64, RIGHT = 16, TOP = 16, BOTTOM = 140;
  var MAX_LABELS = 40, LABEL_CHARS = 20, MAX_TICKS = 8;
  var MODEL_COLORS = ["#0969da", "#d1590f", "#1a7f37", "#8250df", "#cf222e", "#57606a"];
  /* The words this script writes, in the report's language (html_report.SCRIPT_WORDS); set per
     wrapper by enhance(), since a notebook may hold reports in several languages. */
  var WORDS = {};

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

  /* Extent of the values, widened to whole decades and at least one decade tall. */
  function extent(values) {
    var known = values.filter(function (v) { return v !== null; });
    if (known.length === 0) { return null; }
    var low = Math.floor(Math.min.apply(null, known));
    var high = Math.ceil(Math.max.apply(null, known));
    return high > low ? [low, high] : [low - 1, high + 1];
  }

  function layerValues(layers) {
    var values = [];
    layers.forEach(function (row) { values.push(row.predicted_log10, row.measured_log10); });
    return values;
  }

  /* A path through the non-null points; a gap in the data breaks the line. */
  function seriesPath(values, x, y) {
    var d = "", pen = "M";
    values.forEach(function (value, i) {
      if (value === null) { pen = "M"; return; }
      d += pen + x(i).toFixed(1) + " " + y(value).toFixed(1) + " ";
      pen = "L";
    });
    return d.trim();
  }

  function frame(range, count, cssClass, ariaLabel) {
    var plotWidth = WIDTH - LEFT - RIGHT, plotHeight = HEIGHT - TOP - BOTTOM;
    var chart = svg("svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img", "class": cssClass,
                             "aria-label": ariaLabel });
    return {
      chart: chart,
      x: function (i, n) { var total = n === undefined ? count : n;
                           return LEFT + (total === 1 ? plotWidth / 2 : i * plotWidth / (total - 1)); },
      y: function (v) { return TOP + (range[1] - v) / (range[1] - range[0]) * plotHeight; }
    };
  }

  function drawValueAxis(chart, range, y) {
    var step = Math.max(1, Math.ceil((range[1] - range[0]) / MAX_TICKS));
    for (var v = range[0]; v <= range[1]; v += step) {
      svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(v), y2: y(v), "class": "grid" }, chart);
      svg("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end", "class": "label" }, chart).textContent = "1e" + v;
    }
    svg("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: HEIGHT - BOTTOM, "class": "axis" }, chart);
    svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: HEIGHT - BOTTOM, y2: HEIGHT - BOTTOM, "class": "axis" }, chart);
    var middle = TOP + (HEIGHT - BOTTOM - TOP) / 2;
    svg("text", { x: 14, y: middle, "class": "label", transform: "rotate(-90 14 " + middle + ")",
                  "text-anchor": "middle" }, chart).textContent = WORDS.axis;
  }

  function drawLayerLabels(chart, layers, x) {
    var every = Math.ceil(layers.length / MAX_LABELS);
    layers.forEach(function (row, i) {
      if (i % every !== 0) { return; }
      var px = x(i), py = HEIGHT - BOTTOM + 12;
      var label = svg("text", { x: px, y: py, "text-anchor": "end", "class": "label layer-label",
                                transform: "rotate(-55 " + px + " " + py + ")" }, chart);
      label.textContent = shorten(row.name);
      tooltip(label, row.name);
    });
  }

  function drawBand(chart, band, y) {
    svg("rect", { x: LEFT, width: WIDTH - LEFT - RIGHT, y: y(band[1]), height: y(band[0]) - y(band[1]),
                  "class": "band" }, chart);
  }

  function shownValue(row, range) {
    if (row.nonfinite) { return range[1]; }
    return row.measured_log10 !== null ? row.measured_log10 : row.predicted_log10;
  }

  function drawPoints(chart, layers, x, y, range) {
    layers.forEach(function (row, i) {
      var text = row.name + " (" + row.op + ")\n" + WORDS.predicted + " " + fmt(row.predicted_log10) +
                 "\n" + WORDS.measured + " " + (row.nonfinite ? WORDS.non_finite : fmt(row.measured_log10));
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

  /* The worst layers named beside their point, away from the nearer edge of the plot. */
  function drawWorstLabels(chart, layers, worst, x, y, range) {
    worst.forEach(function (i) {
      var row = layers[i], value = shownValue(row, range);
      if (value === null) { return; }
      var px = x(i), py = Math.max(TOP + 10, y(value) - 8);
      var label = svg("text", { x: px, y: py, "text-anchor": px > WIDTH / 2 ? "end" : "start",
                                "class": "worst-label" }, chart);
      label.textContent = shorten(row.name);
      tooltip(label, row.name);
    });
  }

  function drawFlowChart(host, page) {
    var layers = page.layers;
    var range = extent(layerValues(layers).concat(page.band));
    if (layers.length === 0 || range === null) { return; }
    var f = frame(range, layers.length, "flow-svg", WORDS.flow_title);
    drawBand(f.chart, page.band, f.y);
    drawValueAxis(f.chart, range, f.y);
    drawLayerLabels(f.chart, layers, f.x);
    ["predicted", "measured"].forEach(function (series) {
      var d = seriesPath(layers.map(function (row) { return row[series + "_log10"]; }), f.x, f.y);
      if (d) { svg("path", { d: d, "class": series + " series" }, f.chart); }
    });
    drawPoints(f.chart, layers, f.x, f.y, range);
    drawWorstLabels(f.chart, layers, page.worst, f.x, f.y, range);
    host.appendChild(f.chart);
  }

  /* One model's curve for the comparison: measured where the probe ran, else predicted. */
  function curveOf(page) {
    var measured = page.layers.some(function (row) { return row.measured_log10 !== null; });
    var key = measured ? "measured_log10" : "predicted_log10";
    return { values: page.layers.map(function (row) { return row[key]; }),
             kind: measured ? WORDS.measured : WORDS.predicted };
  }

  function drawComparison(host, pages) {
    var curves = pages.map(curveOf);
    var range = extent([].concat.apply([], curves.map(function (c) { return c.values; })));
    if (range === null) { return; }
    var f = frame(range, 0, "compare-svg", WORDS.compare_title);
    drawValueAxis(f.chart, range, f.y);
    curves.forEach(function (curve, m) {
      var n = curve.values.length, color = MODEL_COLORS[m % MODEL_COLORS.length];
      var x = function (i) { return f.x(i, n); };
      var name = pages[m].report.model.source;
      var path = svg("path", { d: seriesPath(curve.values, x, f.y), "class": "model-curve", stroke: color,
                               "data-model": m }, f.chart);
      tooltip(path, name + " (" + curve.kind + ")");
      var ly = HEIGHT - BOTTOM + 28 + 18 * m;
      svg("line", { x1: LEFT, x2: LEFT + 24, y1: ly - 4, y2: ly - 4, stroke: color, "stroke-width": 3 }, f.chart);
      svg("text", { x: LEFT + 32, y: ly, "class": "label compare-legend" }, f.chart).textContent =
        name + " \u2014 " + curve.kind + ", " + WORDS.weight_layers.replace("{count}", n);
    });
    svg("text", { x: LEFT, y: HEIGHT - BOTTOM + 14, "class": "label" }, f.chart).textContent = WORDS.first_layer;
    svg("text", { x: WIDTH - RIGHT, y: HEIGHT - BOTTOM + 14, "text-anchor": "end", "class": "label" }, f.chart)
      .textContent = WORDS.last_layer;
    /* No rotated layer names here: the room below the axis only needs to hold the legend. */
    f.chart.setAttribute("viewBox", "0 0 " + WIDTH + " " + (HEIGHT - BOTTOM + 36 + 18 * curves.length));
    host.appendChild(f.chart);
  }

  /* A cell's sort key: its number ("+9.61", "12%", "1e-3"), non-finite above all, a dash last. */
  function sortKey(cell) {
    var text = cell.textContent.trim();
    if (text === WORDS.non_finite) { return Infinity; }
    var number = parseFloat(text);
    return isNaN(number) ? text.toLowerCase() : number;
  }

  function compareKeys(a, b) {
    var aText = typeof a === "string", bText = typeof b === "string";
    if (aText !== bText) { return aText ? 1 : -1; }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function makeSortable(table) {
    var headers = table.tHead.rows[0].cells, body = table.tBodies[0];
    Array.prototype.forEach.call(headers, function (th, column) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var order = compareKeys(sortKey(a.cells[column]), sortKey(b.cells[column]));
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  function addFilter(table) {
    var input = document.createElement("input");
    input.type = "search";
    input.className = "table-filter";
    input.placeholder = WORDS.filter_hint;
    input.setAttribute("aria-label", WORDS.filter);
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        row.hidden = needle !== "" && row.cells[1].textContent.toLowerCase().indexOf(needle) < 0 &&
                     row.cells[2].textContent.toLowerCase().indexOf(needle) < 0;
      });
    });
    table.parentNode.parentNode.insertBefore(input, table.parentNode);
  }

  /* A copy button on each snippet; where the clipboard is refused, the code is selected instead. */
  function addCopyButton(snippet) {
    var code = snippet.querySelector("code"), button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = WORDS.copy;
    button.addEventListener("click", function () {
      function select() {
        var range = document.createRange();
        range.selectNodeContents(code);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = WORDS.selected;
      }
      if (!navigator.clipboard) { select(); return; }
      navigator.clipboard.writeText(code.textContent).then(function () { button.textContent = WORDS.copied; }, select);
    });
    snippet.appendChild(button);
  }

  /* Printing shows every folded part; the folds a reader had closed close again afterwards. */
  function openFoldsForPrint() {
    var opened = [];
    window.addEventListener("beforeprint", function () {
      document.querySelectorAll(".gradaudit-report details:not([open])").forEach(function (d) {
        d.open = true;
        opened.push(d);
      });
    });
    window.addEventListener("afterprint", function () {
      opened.splice(0).forEach(function (d) { d.open = false; });
    });
  }

  function enhance(root) {
    root.setAttribute("data-enhanced", "");
    var pages = JSON.parse(root.querySelector("script.gradaudit-data").textContent);
    WORDS = JSON.parse(root.querySelector("script.gradaudit-words").textContent);
    pages.forEach(function (page, index) {
      var host = root.querySelector('.flow-chart[data-report="' + index + '"]');
      if (host) { drawFlowChart(host, page); }
    });
    var compare = root.querySelector(".compare-chart");
    if (compare) { drawComparison(compare, pages); }
    root.querySelectorAll("table.layer-table").forEach(function (table) { makeSortable(table); addFilter(table); });
    root.querySelectorAll(".snippet").forEach(addCopyButton);
  }

  document.querySelectorAll(".gradaudit-report:not([data-enhanced])").forEach(enhance);
  if (!window.gradauditPrintFolds) {
    window.gradauditPrintFolds = true;
    openFoldsForPrint();
  }
})();
