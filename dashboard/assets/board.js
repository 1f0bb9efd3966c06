// Cell renderers and formatters of the runs table (dash-ag-grid looks them up by name).
var dagcomponentfuncs = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});
var dagfuncs = (window.dashAgGridFunctions = window.dashAgGridFunctions || {});

// The run id as a link to the run's page.
dagcomponentfuncs.RunLink = function (props) {
  if (props.value === undefined || props.value === null) { return null; }
  return React.createElement("a", { href: "/run/" + encodeURIComponent(props.value), className: "run-link" },
                             String(props.value));
};

dagfuncs.formatTags = function (value) {
  return Array.isArray(value) ? value.join(", ") : value ? String(value) : "";
};

dagfuncs.formatTime = function (value) {
  return value ? String(value).replace("T", " ").slice(0, 19) : "";
};

dagfuncs.formatDuration = function (seconds) {
  if (seconds === null || seconds === undefined) { return ""; }
  var s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
};

dagfuncs.formatNumber = function (value) {
  if (value === null || value === undefined || value === "") { return ""; }
  if (typeof value !== "number") { return String(value); }
  return Number.isInteger(value) ? String(value) : Number(value.toPrecision(5)).toString();
};

dagfuncs.formatValue = function (value) {
  if (value === null || value === undefined) { return ""; }
  if (typeof value === "number") { return dagfuncs.formatNumber(value); }
  return typeof value === "object" ? JSON.stringify(value) : String(value);
};

dagfuncs.statusClass = function (status) {
  return status ? "status status-" + status : "";
};
