// The runs table's work in the browser: reloads and refreshes of the infinite row model, columns that fit their
// content (AG Grid's own autoSizeColumns, header included) unless a person sized them, completion of the query.
window.runsTable = (function () {
  var noUpdate = function () { return window.dash_clientside.no_update; };
  // ``page`` tells this page's layouts from other pages'; ``seq`` orders them (see ``save``).
  var state = {sized: new Set(), vocabulary: [], maxWidth: 480, seq: 0,
               page: Date.now().toString(36) + Math.random().toString(36).slice(2)};
  // A column size a person made (dragging its edge); the grid's own sizing, and sizes applied by code, are not.
  var PERSON_SIZED = {uiColumnResized: true};
  var STATUSES = ["RUNNING", "PROBABLY_DEAD", "COMPLETED", "FAILED", "INTERRUPTED", "TIMEOUT", "QUEUED"];

  function fit(api) {
    var ids = (api.getColumns() || [])
      .filter(function (column) { return !(column.getColDef().context || {}).sized; })
      .map(function (column) { return column.getColId(); })
      .filter(function (id) { return !state.sized.has(id) && id.indexOf("ag-Grid-") !== 0; });
    if (ids.length) { api.autoSizeColumns({colIds: ids, skipHeader: false, defaultMaxWidth: state.maxWidth}); }
  }

  // The grid's ``columnState`` prop set at once to what the grid shows. dash-ag-grid copies the grid's state into it
  // 500 ms after a change, and a callback updating the grid in between (a refresh's rows) applies the older copy
  // back: a person's resize was undone that way (and, applied by code, taken for the person's).
  function follow(api, gridId) {
    var columnState = api.getColumnState();
    window.dash_clientside.set_props(gridId, {columnState: columnState});
    return columnState;
  }

  // The layout to save, with what a person sized, as one value: saved from two inputs, a width reached the server
  // with the state from before it. ``seq`` lets the server drop a save that a later one of this page overtook.
  function save(api, gridId, layoutId) {
    state.seq += 1;
    window.dash_clientside.set_props(layoutId, {data: {
      columns: follow(api, gridId), sized: Array.from(state.sized), page: state.page, seq: state.seq}});
  }

  // The query's last word completed from the names a filter can use (a status after "status ==").
  function suggestions(text) {
    var partial = (text.match(/[\w.$\/-]*$/) || [""])[0], head = text.slice(0, text.length - partial.length);
    var statuses = /\bstatus\s*(==|!=|(not\s+)?in\s*\[([^\]]*,)?)\s*$/i.test(head);
    if (!partial && !statuses) { return []; }
    var lower = partial.toLowerCase();
    return (statuses ? STATUSES : state.vocabulary).filter(function (name) {
      return name !== partial && name.toLowerCase().indexOf(lower) === 0;
    }).slice(0, 40).map(function (name) { return head + name; });
  }

  function complete(input) {
    var list = document.getElementById(input.getAttribute("list"));
    if (!list) { return; }
    list.replaceChildren.apply(list, suggestions(input.value).map(function (value) {
      var option = document.createElement("option");
      option.value = value;
      return option;
    }));
  }

  return {
    purge: async function (gridId) {
      (await dash_ag_grid.getApiAsync(gridId)).purgeInfiniteCache();
      return noUpdate();
    },
    refresh: async function (gridId) {
      var api = await dash_ag_grid.getApiAsync(gridId);
      if (!api.getEditingCells().length) { api.refreshInfiniteCache(); }
      return noUpdate();
    },
    suggestions: suggestions,
    // Listeners added once per grid and query box; ``sized`` and ``vocabulary`` come from the page's load. A
    // person's resize, a move and a hide are saved (``layoutId``); every other change of the columns is followed.
    attach: async function (gridId, queryId, layoutId, sized, vocabulary, maxWidth) {
      (sized || []).forEach(function (id) { state.sized.add(id); });  // a person's sizing here is kept
      state.vocabulary = vocabulary || [];
      state.maxWidth = maxWidth;
      var api = await dash_ag_grid.getApiAsync(gridId);
      if (!api.__runsTable) {
        api.__runsTable = true;
        api.addEventListener("modelUpdated", function () { fit(api); });
        api.addEventListener("columnResized", function (event) {
          if (!event.finished) { return; }
          if (!PERSON_SIZED[event.source] || !event.columns) { follow(api, gridId); return; }
          event.columns.forEach(function (column) { state.sized.add(column.getColId()); });
          save(api, gridId, layoutId);
        });
        api.addEventListener("columnMoved", function (event) { if (event.finished) { save(api, gridId, layoutId); } });
        api.addEventListener("columnVisible", function () { save(api, gridId, layoutId); });
        api.addEventListener("displayedColumnsChanged", function () { follow(api, gridId); });
        fit(api);
      }
      var input = document.getElementById(queryId);
      if (input && !input.__runsTable) {
        input.__runsTable = true;
        input.addEventListener("input", function () { complete(input); });
      }
      return noUpdate();
    },
  };
})();

// A sparkline cell: the row's points ([[step, value], ...], at most 50, read for the page's rows only) as one inline
// SVG path, x by step, y by value (lowest at the bottom); the tooltip says how many points and their range.
(function () {
  var funcs = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});
  var WIDTH = 120, HEIGHT = 24, PAD = 2;

  function path(points) {
    var xs = points.map(function (p) { return p[0]; }), ys = points.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    var sx = x1 > x0 ? (WIDTH - 2 * PAD) / (x1 - x0) : 0, sy = y1 > y0 ? (HEIGHT - 2 * PAD) / (y1 - y0) : 0;
    return points.map(function (p, i) {
      var x = x1 > x0 ? PAD + (p[0] - x0) * sx : WIDTH / 2, y = y1 > y0 ? HEIGHT - PAD - (p[1] - y0) * sy : HEIGHT / 2;
      return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
    }).join(" ");
  }

  funcs.Sparkline = function (props) {
    var points = (Array.isArray(props.value) ? props.value : []).filter(function (p) {
      return Array.isArray(p) && typeof p[0] === "number" && typeof p[1] === "number" && isFinite(p[1]);
    });
    if (!points.length) { return null; }
    var ys = points.map(function (p) { return p[1]; });
    var last = points[points.length - 1];
    var text = points.length + " points: last " + last[1].toPrecision(4) + " at step " + last[0] + ", min " +
      Math.min.apply(null, ys).toPrecision(4) + ", max " + Math.max.apply(null, ys).toPrecision(4);
    var h = React.createElement;
    var line = points.length > 1 ?
      h("path", {d: path(points), fill: "none", stroke: "currentColor", strokeWidth: 1.3, vectorEffect: "non-scaling-stroke"}) :
      h("circle", {cx: WIDTH / 2, cy: HEIGHT / 2, r: 2, fill: "currentColor"});
    return h("svg", {className: "sparkline", width: WIDTH, height: HEIGHT, viewBox: "0 0 " + WIDTH + " " + HEIGHT,
                     role: "img", "aria-label": text}, h("title", null, text), line);
  };
})();
