// The widget html-manager typesets with the MathJax 2 API (MathJax.Hub.Queue); the book loads MathJax 3.
// Provide that one call on whichever MathJax object is current: the configuration object before MathJax 3 loads,
// and MathJax 3 itself afterwards (it replaces window.MathJax when its deferred script runs).
(function () {
  function queue(job) {
    var element = Array.isArray(job) ? job[2] : null;
    var mj = window.MathJax;
    if (element && mj && mj.startup && mj.startup.promise && mj.typesetPromise) {
      mj.startup.promise.then(function () { return mj.typesetPromise([element]); }).catch(function () {});
    }
  }
  function ensureHub() {
    window.MathJax = window.MathJax || {};
    if (!window.MathJax.Hub) window.MathJax.Hub = { Queue: queue };
  }
  ensureHub();
  document.addEventListener("DOMContentLoaded", ensureHub);  // registered before the html-manager's own listener
})();
