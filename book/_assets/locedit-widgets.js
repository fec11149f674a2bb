// Loaded between require.js and embed-amd.js (nb_ipywidgets_js in _config.yml) on pages with widgets.
(function () {
  "use strict";
  // 1. The widget manager computes the URL of its fonts from the URL requirejs gives its module, relative to
  //    the page ("chapters/@jupyter-widgets/html-manager/dist/…woff2": 404). Point that module at _static/widgets/,
  //    where scripts/fetch_web_assets.sh puts the fonts.
  var root = document.documentElement.getAttribute("data-content_root") || "./";
  var assets = new URL(root + "_static/widgets/", document.baseURI).href;
  if (window.require && window.require.config) {
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": assets.replace(/\/$/, "") } });
  }
  window.__jupyter_widgets_assets_path__ = assets;

  // 2. The widgets typeset maths with MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3 ("Cannot read
  //    properties of undefined (reading 'Queue')"). A small MathJax 2 face over MathJax 3.
  function hub() {
    return {
      Queue: function (job) {
        var mj = window.MathJax, el = job && job[2];
        if (!mj || !mj.typesetPromise) return;  // not loaded yet: its start-up typesets the whole page
        var ready = (mj.startup && mj.startup.promise) || Promise.resolve();
        ready.then(function () { return mj.typesetPromise(el ? [el] : undefined); }).catch(function () {});
      },
    };
  }
  var cfg = (window.MathJax = window.MathJax || {});
  if (cfg.version) {  // MathJax 3 already loaded
    cfg.Hub = cfg.Hub || hub();
  } else {  // still its configuration: MathJax 3 replaces the object at start-up, so add the face then too
    cfg.Hub = hub();
    cfg.startup = cfg.startup || {};
    var ready = cfg.startup.ready;
    cfg.startup.ready = function () {
      if (ready) ready(); else window.MathJax.startup.defaultReady();
      window.MathJax.Hub = window.MathJax.Hub || hub();
    };
  }
})();
