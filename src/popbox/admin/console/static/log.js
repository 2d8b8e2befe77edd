// The live protocol log: the API's server-sent events, one list item per line.
// Lines are added as text (textContent), never as markup.
"use strict";
(function () {
  const list = document.getElementById("log");
  const state = document.getElementById("log-state");
  if (!list || !window.EventSource) {
    return;
  }
  const MAX_LINES = 2000;
  const source = new EventSource(list.dataset.source);
  source.onopen = function () {
    state.textContent = "Watching: new lines appear below.";
  };
  source.onerror = function () {
    // The browser retries a dropped stream by itself; a refused one (the login ended)
    // it closes for good.
    state.textContent = source.readyState === EventSource.CLOSED
      ? "Disconnected: reload the page (log in again if asked)."
      : "Disconnected; reconnecting…";
  };
  source.onmessage = function (event) {
    const line = JSON.parse(event.data);
    const item = document.createElement("li");
    item.className = line.direction === "in" ? "in" : "out";
    const at = new Date(line.at * 1000).toISOString().slice(11, 19);
    const arrow = line.direction === "in" ? "C:" : "S:";
    let text = at + " " + line.session + " " + arrow + " " + line.line;
    if (line.dropped) {
      text += "  (" + line.dropped + " lines dropped)";
    }
    item.textContent = text;
    list.appendChild(item);
    while (list.childElementCount > MAX_LINES) {
      list.removeChild(list.firstElementChild);
    }
  };
})();
