// Wait for MathJax's typesetting and plotly's drawing (both asynchronous). arguments[0]: timeout, s.
const done = arguments[arguments.length - 1];
const deadline = Date.now() + arguments[0] * 1000;
async function settle() {
  try { if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise; } catch (e) {}
  while (Date.now() < deadline) {
    const plots = document.querySelectorAll('.plotly-graph-div');
    const drawn = Array.from(plots).every(d => d.classList.contains('js-plotly-plot') || !window.Plotly);
    const mathPending = window.MathJax && MathJax.startup && document.querySelectorAll('.math:not(:has(mjx-container))').length > 0;
    if (drawn && !mathPending) break;
    await new Promise(r => setTimeout(r, 200));
  }
  await new Promise(r => setTimeout(r, 500));  // let widget managers and relayouts finish
  done(true);
}
settle();
