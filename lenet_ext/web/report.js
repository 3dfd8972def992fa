"use strict";
// The interactive parts of report.html: the t-SNE scatter with a tooltip per point, the
// confusion matrix whose cells list their test digits, and the sortable grid of failures.
// Everything comes from the JSON in <script id="report-data">; nothing is fetched.
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const raw = atob(data.pixels);
  const pixels = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) pixels[i] = raw.charCodeAt(i);
  const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"];
  const it = data.items;

  function thumb(slot, scale) {
    const c = document.createElement("canvas");
    c.width = 28; c.height = 28;
    c.style.width = c.style.height = (28 * (scale || 2)) + "px";
    c.className = "digit";
    const g = c.getContext("2d"), img = g.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = 255 - pixels[slot * 784 + i];
      img.data.set([v, v, v, 255], 4 * i);
    }
    g.putImageData(img, 0, 0);
    return c;
  }

  function describe(slot) {
    return "test #" + it.index[slot] + " · true " + data.classes[it.true[slot]] + " · predicted " +
           data.classes[it.pred[slot]] + " · confidence " + it.conf[slot].toFixed(3);
  }

  function card(slot) {
    const d = document.createElement("div");
    d.className = "card" + (it.true[slot] !== it.pred[slot] ? " wrong" : "");
    d.dataset.slot = slot; d.dataset.conf = it.conf[slot];
    d.dataset.true = it.true[slot]; d.dataset.pred = it.pred[slot];
    d.appendChild(thumb(slot, 2));
    const t = document.createElement("div");
    t.textContent = data.classes[it.true[slot]] + "→" + data.classes[it.pred[slot]] + " " + it.conf[slot].toFixed(2);
    t.title = describe(slot);
    d.appendChild(t);
    return d;
  }

  // ---------------------------------------------------------------- t-SNE
  const canvas = document.getElementById("tsne-canvas"), tip = document.getElementById("tsne-tip");
  const g = canvas.getContext("2d");
  const pad = 14;
  const xs = data.tsne.map(p => p[0]), ys = data.tsne.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const screen = data.tsne.map(([x, y, slot]) => [pad + (x - x0) / (x1 - x0 || 1) * (canvas.width - 2 * pad),
                                                  pad + (y1 - y) / (y1 - y0 || 1) * (canvas.height - 2 * pad), slot]);
  function drawTsne() {
    g.clearRect(0, 0, canvas.width, canvas.height);
    for (const [x, y, slot] of screen) {
      g.fillStyle = colors[it.true[slot] % 10];
      g.globalAlpha = 0.75;
      g.beginPath(); g.arc(x, y, 2.2, 0, 2 * Math.PI); g.fill();
    }
    g.globalAlpha = 1; g.strokeStyle = "#000"; g.lineWidth = 1;
    for (const [x, y, slot] of screen) {
      if (it.true[slot] !== it.pred[slot]) { g.beginPath(); g.arc(x, y, 5, 0, 2 * Math.PI); g.stroke(); }
    }
  }
  function nearest(mx, my) {
    let best = -1, dist = 64;  // within 8 px
    screen.forEach(([x, y], k) => { const d = (x - mx) ** 2 + (y - my) ** 2; if (d < dist) { dist = d; best = k; } });
    return best;
  }
  canvas.addEventListener("mousemove", e => {
    const r = canvas.getBoundingClientRect();
    const k = nearest((e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height);
    if (k < 0) { tip.hidden = true; tip.dataset.slot = ""; return; }
    const slot = screen[k][2];
    tip.innerHTML = "";
    tip.appendChild(thumb(slot, 3));
    const text = document.createElement("div"); text.textContent = describe(slot); tip.appendChild(text);
    tip.dataset.slot = slot;
    tip.style.left = (e.pageX + 14) + "px"; tip.style.top = (e.pageY + 14) + "px";
    tip.hidden = false;
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  drawTsne();

  // ---------------------------------------------------------------- confusion matrix
  const table = document.getElementById("confusion"), list = document.getElementById("cell-list");
  const most = Math.max(...data.matrix.flat().map(v => Math.log1p(v)));
  let html = "<tr><th>true ↓ predicted →</th>" + data.classes.map(c => "<th>" + c + "</th>").join("") + "</tr>";
  data.matrix.forEach((row, t) => {
    html += "<tr><th>" + data.classes[t] + "</th>" + row.map((v, p) => {
      const shade = v ? Math.round(235 - 175 * Math.log1p(v) / most) : 255;
      const style = "background: rgb(" + shade + "," + shade + ",255)" + (shade < 140 ? "; color: #fff" : "");
      return '<td class="cell" data-true="' + t + '" data-pred="' + p + '" data-count="' + v + '" style="' + style +
             '">' + (v || "") + "</td>";
    }).join("") + "</tr>";
  });
  table.innerHTML = html;
  table.addEventListener("click", e => {
    const cell = e.target.closest("td.cell");
    if (!cell) return;
    for (const c of table.querySelectorAll("td.selected")) c.classList.remove("selected");
    cell.classList.add("selected");
    const t = +cell.dataset.true, p = +cell.dataset.pred, count = +cell.dataset.count;
    const slots = data.cells[t + "," + p] || [];
    list.innerHTML = "";
    const h = document.createElement("h3");
    h.textContent = "true " + data.classes[t] + ", predicted " + data.classes[p] + ": " + count + " test digit" +
                    (count === 1 ? "" : "s") + (slots.length < count ? " (the first " + slots.length + " shown)" : "");
    list.appendChild(h);
    const grid = document.createElement("div"); grid.className = "grid";
    slots.forEach(s => grid.appendChild(card(s)));
    list.appendChild(grid);
    list.dataset.count = count; list.dataset.shown = slots.length;
  });

  // ---------------------------------------------------------------- failures, sortable
  const sorter = document.getElementById("sort"), failures = document.getElementById("failures-grid");
  const orders = {
    "confidence-desc": (a, b) => it.conf[b] - it.conf[a],
    "confidence-asc": (a, b) => it.conf[a] - it.conf[b],
    "true": (a, b) => it.true[a] - it.true[b] || it.conf[b] - it.conf[a],
    "predicted": (a, b) => it.pred[a] - it.pred[b] || it.conf[b] - it.conf[a],
  };
  function drawFailures() {
    failures.innerHTML = "";
    [...data.failures].sort(orders[sorter.value]).forEach(s => failures.appendChild(card(s)));
    failures.dataset.order = sorter.value;
  }
  sorter.addEventListener("change", drawFailures);
  drawFailures();

  window.lenetReport = {  // for tests and the curious: where point k of the t-SNE is, in CSS pixels
    tsnePoint(k) {
      const r = canvas.getBoundingClientRect();
      return [screen[k][0] * r.width / canvas.width, screen[k][1] * r.height / canvas.height, screen[k][2]];
    },
    points: screen.length,
  };
})();
