// The script inside the HTML report (plain browser JavaScript, kept as a string so the page needs
// no bundler and no network). It draws the orchestrator's steps, an occupancy chart (how many
// tasks were busy in each stage over time, which is what stays readable at 10,000 tasks) and a
// virtualised task timeline: only the rows in view are drawn, on one canvas, as the user scrolls.
// ERROR_HOOK goes first in <head> so any error, even while parsing, lands in the DOM where the
// headless test (and a person) can see it.

export const ERROR_HOOK = `
window.__traceErrors = [];
function __noteTraceError(text) {
  window.__traceErrors.push(text);
  var out = document.getElementById('errors');
  if (out) { out.textContent = window.__traceErrors.join('\\n'); out.hidden = false; }
  document.documentElement.setAttribute('data-errors', String(window.__traceErrors.length));
}
window.addEventListener('error', function (e) { __noteTraceError('error: ' + e.message + ' at ' + e.filename + ':' + e.lineno); });
window.addEventListener('unhandledrejection', function (e) { __noteTraceError('unhandled rejection: ' + e.reason); });
var __consoleError = console.error;
console.error = function () { __noteTraceError('console.error: ' + Array.prototype.join.call(arguments, ' ')); __consoleError.apply(console, arguments); };
`;

export const CLIENT = `
(function () {
  var data = JSON.parse(document.getElementById('trace-data').textContent);
  var COLORS = ['#4285f4', '#a142f4', '#24c1e0', '#9e6a03', '#f9ab00', '#e8710a', '#e52592', '#1e8e3e', '#d93025', '#7f8c8d'];
  var WAIT = '#e3e6ea';
  var ROW_H = 16, LABEL_W = 170;
  var view = { t0: 0, t1: Math.max(data.total, 1e-6) };
  var order = data.rows.map(function (_, i) { return i; });
  var critical = {};
  data.critical.forEach(function (c) { (critical[c[0]] = critical[c[0]] || []).push(c); });

  function fmt(ms) { return ms >= 1000 ? (ms / 1000).toFixed(2) + ' s' : ms.toFixed(ms < 10 ? 2 : 1) + ' ms'; }
  function setupCanvas(canvas, cssW, cssH) {
    var ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * ratio); canvas.height = Math.round(cssH * ratio);
    canvas.style.width = cssW + 'px'; canvas.style.height = cssH + 'px';
    var ctx = canvas.getContext('2d'); ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }
  function xOf(t, width) { return LABEL_W + (t - view.t0) / (view.t1 - view.t0) * (width - LABEL_W); }

  var legend = document.getElementById('legend');
  data.stages.forEach(function (s, i) {
    var item = document.createElement('span');
    item.className = 'swatch'; item.innerHTML = '<i style="background:' + COLORS[i % COLORS.length] + '"></i>' + s;
    legend.appendChild(item);
  });

  function drawAxis(ctx, width, y) {
    ctx.fillStyle = '#555'; ctx.font = '11px sans-serif'; ctx.textBaseline = 'top';
    var span = view.t1 - view.t0, step = Math.pow(10, Math.floor(Math.log10(span / 6)));
    if (span / step > 12) step *= 5; else if (span / step > 6) step *= 2;
    for (var t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
      var x = xOf(t, width);
      ctx.fillRect(x, y, 1, 5); ctx.fillText(fmt(t), x + 2, y + 5);
    }
  }

  function drawSteps() {
    var canvas = document.getElementById('steps'), width = canvas.parentElement.clientWidth;
    var ctx = setupCanvas(canvas, width, 44);
    ctx.clearRect(0, 0, width, 44);
    ctx.font = '12px sans-serif'; ctx.textBaseline = 'middle';
    ctx.fillStyle = '#333'; ctx.fillText('restore machine', 4, 12);
    data.steps.forEach(function (s, i) {
      var x0 = xOf(s[1], width), x1 = Math.max(x0 + 1, xOf(s[2], width));
      ctx.fillStyle = i % 2 ? '#5f6368' : '#80868b'; ctx.fillRect(x0, 2, x1 - x0, 20);
      ctx.save(); ctx.beginPath(); ctx.rect(x0, 2, x1 - x0, 20); ctx.clip();
      ctx.fillStyle = '#fff'; ctx.fillText(s[0], x0 + 3, 12); ctx.restore();
    });
    drawAxis(ctx, width, 26);
  }

  function drawOccupancy() {
    var canvas = document.getElementById('occupancy'), width = canvas.parentElement.clientWidth, height = 110;
    var ctx = setupCanvas(canvas, width, height);
    var cols = Math.max(1, Math.floor(width - LABEL_W)), n = data.stages.length;
    var diff = []; for (var s = 0; s < n; s++) diff.push(new Float64Array(cols + 2));
    var scale = cols / (view.t1 - view.t0);
    data.rows.forEach(function (row) {
      var seg = row[2];
      for (var k = 0; k < seg.length; k += 4) {
        var a = Math.floor((seg[k + 1] - view.t0) * scale), b = Math.floor((seg[k + 2] - view.t0) * scale);
        if (b < 0 || a >= cols) continue;
        // End exclusive, so a stage ending in the column where the next begins is counted once.
        a = Math.max(0, a); b = Math.min(cols, Math.max(a + 1, b));
        diff[seg[k]][a] += 1; diff[seg[k]][b] -= 1;
      }
    });
    var counts = diff.map(function (d) { var out = new Float64Array(cols), run = 0; for (var c = 0; c < cols; c++) { run += d[c]; out[c] = run; } return out; });
    var peak = 1; for (var c = 0; c < cols; c++) { var sum = 0; for (s = 0; s < n; s++) sum += counts[s][c]; peak = Math.max(peak, sum); }
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = '#333'; ctx.font = '12px sans-serif'; ctx.textBaseline = 'top';
    ctx.fillText('tasks busy', 4, 4); ctx.fillText('(peak ' + peak + ')', 4, 20);
    for (c = 0; c < cols; c++) {
      var y = height;
      for (s = 0; s < n; s++) {
        var h = counts[s][c] / peak * (height - 4);
        if (h <= 0) continue;
        ctx.fillStyle = COLORS[s % COLORS.length]; ctx.fillRect(LABEL_W + c, y - h, 1, h); y -= h;
      }
    }
  }

  var rowsBox = document.getElementById('rows'), spacer = document.getElementById('rows-spacer'), rowsCanvas = document.getElementById('rows-canvas');
  spacer.style.height = (data.rows.length * ROW_H) + 'px';
  rowsBox.style.height = Math.min(480, data.rows.length * ROW_H + 4) + 'px';
  function drawRows() {
    var width = rowsBox.clientWidth, height = rowsBox.clientHeight;
    var ctx = setupCanvas(rowsCanvas, width, height);
    ctx.clearRect(0, 0, width, height);
    var first = Math.floor(rowsBox.scrollTop / ROW_H), last = Math.min(order.length, first + Math.ceil(height / ROW_H) + 1);
    ctx.font = '11px sans-serif'; ctx.textBaseline = 'middle';
    for (var i = first; i < last; i++) {
      var row = data.rows[order[i]], y = i * ROW_H - rowsBox.scrollTop, seg = row[2];
      ctx.fillStyle = i % 2 ? '#fafafa' : '#fff'; ctx.fillRect(0, y, width, ROW_H);
      for (var k = 0; k < seg.length; k += 4) {
        var x0 = xOf(seg[k + 1], width), xb = xOf(seg[k + 2], width), x1 = xOf(seg[k + 3], width);
        if (x1 < LABEL_W || x0 > width) continue;
        ctx.fillStyle = WAIT; ctx.fillRect(Math.max(LABEL_W, xb), y + 4, Math.max(0, x1 - Math.max(LABEL_W, xb)), ROW_H - 8);
        ctx.fillStyle = COLORS[seg[k] % COLORS.length]; ctx.fillRect(Math.max(LABEL_W, x0), y + 2, Math.max(1, xb - Math.max(LABEL_W, x0)), ROW_H - 4);
      }
      (critical[row[0]] || []).forEach(function (c) {
        var a = xOf(c[2], width), b = xOf(c[3], width);
        ctx.strokeStyle = '#000'; ctx.lineWidth = 1.5; ctx.strokeRect(Math.max(LABEL_W, a), y + 1.5, Math.max(1, b - Math.max(LABEL_W, a)), ROW_H - 3);
      });
      ctx.fillStyle = '#fff'; ctx.fillRect(0, y, LABEL_W - 4, ROW_H);
      ctx.fillStyle = '#222'; ctx.fillText(row[1], 4, y + ROW_H / 2);
    }
    document.body.setAttribute('data-rows-drawn', String(last - first));
  }

  function redraw() { drawSteps(); drawOccupancy(); drawRows(); document.getElementById('view').textContent = fmt(view.t0) + ' – ' + fmt(view.t1); }
  function zoom(factor, centre) {
    var c = centre === undefined ? (view.t0 + view.t1) / 2 : centre, half = (view.t1 - view.t0) * factor / 2;
    view.t0 = Math.max(0, c - half); view.t1 = Math.min(data.total, c + half);
    if (view.t1 - view.t0 < 1e-3) view.t1 = view.t0 + 1e-3;
    redraw();
  }
  document.getElementById('zoom-in').onclick = function () { zoom(0.5); };
  document.getElementById('zoom-out').onclick = function () { zoom(2); };
  document.getElementById('zoom-fit').onclick = function () { view.t0 = 0; view.t1 = Math.max(data.total, 1e-6); redraw(); };
  document.getElementById('sort').onchange = function (e) {
    var by = e.target.value;
    order = data.rows.map(function (_, i) { return i; });
    if (by === 'busy') order.sort(function (a, b) { return data.rows[b][3] - data.rows[a][3]; });
    drawRows();
  };
  rowsBox.addEventListener('scroll', function () { window.requestAnimationFrame(drawRows); });
  rowsBox.addEventListener('wheel', function (e) {
    if (!e.ctrlKey && !e.altKey) return;
    e.preventDefault();
    var width = rowsBox.clientWidth, t = view.t0 + (e.offsetX - LABEL_W) / (width - LABEL_W) * (view.t1 - view.t0);
    zoom(e.deltaY < 0 ? 0.8 : 1.25, t);
  }, { passive: false });
  var tip = document.getElementById('tip');
  rowsBox.addEventListener('mousemove', function (e) {
    var rect = rowsBox.getBoundingClientRect(), y = e.clientY - rect.top + rowsBox.scrollTop, x = e.clientX - rect.left;
    var row = data.rows[order[Math.floor(y / ROW_H)]];
    tip.hidden = true;
    if (!row || x < LABEL_W) return;
    var t = view.t0 + (x - LABEL_W) / (rowsBox.clientWidth - LABEL_W) * (view.t1 - view.t0), seg = row[2];
    for (var k = 0; k < seg.length; k += 4) {
      if (t < seg[k + 1] || t > seg[k + 3]) continue;
      tip.textContent = row[1] + ' · ' + data.stages[seg[k]] + ': work ' + fmt(seg[k + 2] - seg[k + 1]) + ', waited ' + fmt(seg[k + 3] - seg[k + 2]);
      tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px'; tip.hidden = false;
      return;
    }
  });
  rowsBox.addEventListener('mouseleave', function () { tip.hidden = true; });
  window.addEventListener('resize', redraw);
  redraw();
  document.body.setAttribute('data-rendered', 'ok');
})();
`;
