// Draws the overview chart from the JSON the page embeds (no inline script: the CSP allows only 'self').
(function () {
  function draw() {
    var holder = document.getElementById("chart");
    var source = document.getElementById("chart-data");
    if (!holder || !source || typeof uPlot === "undefined" || holder.dataset.drawn) return;
    var data = JSON.parse(source.textContent);
    var colours = {qpu: "#7b3fe4", sim: "#1f77b4", heuristic: "#2ca02c"};
    var series = [{}], columns = [data.t];
    Object.keys(data.lanes).forEach(function (lane) {
      series.push({label: lane + " finished", stroke: colours[lane] || "#333", width: 2});
      columns.push(data.lanes[lane]);
    });
    series.push({label: "fallbacks", stroke: "#d62728", dash: [4, 4], width: 1});
    columns.push(data.fallbacks);
    holder.dataset.drawn = "1";
    new uPlot({width: Math.min(1100, holder.clientWidth || 900), height: 240, series: series}, columns, holder);
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
})();
