// Injected into a copy of report.html by tests/test_report_screens.py: once the figures are
// drawn, find tick labels (and legend entries) whose boxes overlap, and write them into the
// page as JSON (a pre element, id raysim-overlaps), which `chromium --dump-dom` prints.
(function () {
  function boxes(nodes) {
    return Array.from(nodes)
      .map(function (n) { return { text: n.textContent, r: n.getBoundingClientRect() }; })
      .filter(function (b) { return b.text.trim() !== "" && b.r.width > 0 && b.r.height > 0; });
  }
  function overlap(a, b) {
    var dx = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
    var dy = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
    return dx > 1 && dy > 1;  // more than a pixel each way
  }
  function check() {
    var found = [];
    var legendHidden = [];
    document.querySelectorAll(".js-plotly-plot").forEach(function (plot) {
      var fig = plot.id || (plot.parentElement && plot.parentElement.id) || "?";
      // every axis: the labels of one axis must not overlap each other
      plot.querySelectorAll("g.xaxislayer-above, g.yaxislayer-above").forEach(function (layer) {
        var bs = boxes(layer.querySelectorAll("text"));
        for (var i = 0; i < bs.length; i++)
          for (var j = i + 1; j < bs.length; j++)
            if (overlap(bs[i], bs[j]))
              found.push({ figure: fig, what: "tick", a: bs[i].text, b: bs[j].text });
      });
      // a legend that needs a scroll bar hides entries
      plot.querySelectorAll("g.legend").forEach(function (legend) {
        if (legend.querySelector("rect.scrollbar") &&
            legend.querySelector("rect.scrollbar").getBoundingClientRect().height > 0)
          legendHidden.push(fig);
      });
    });
    var pre = document.createElement("pre");
    pre.id = "raysim-overlaps";
    pre.textContent = JSON.stringify({ plots: document.querySelectorAll(".js-plotly-plot").length,
                                       overlaps: found, scrolling_legends: legendHidden });
    document.body.appendChild(pre);
  }
  window.addEventListener("load", function () { setTimeout(check, 1500); });
})();
