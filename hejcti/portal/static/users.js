// The users page: a filter over the table's rows (name, email, extension, id). Without JavaScript the filter
// stays hidden and every row shows.
(function () {
  "use strict";
  var box = document.querySelector("p.filter");
  var input = document.getElementById("filter");
  var table = document.getElementById("users");
  if (!box || !input || !table) { return; }
  box.hidden = false;
  function fold(text) {
    return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }
  input.addEventListener("input", function () {
    var wanted = fold(input.value.trim());
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var cells = Array.prototype.slice.call(row.cells, 0, 3).map(function (c) { return c.textContent; });
      row.hidden = wanted !== "" && fold(cells.join(" ")).indexOf(wanted) === -1;
    });
  });
}());
