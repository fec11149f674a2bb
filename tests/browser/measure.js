// What sitecheck.check_page reads from a page. arguments[0]: {banner: draft banner id, note: live-kernel class}.
const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const colRect = col.getBoundingClientRect();
function visible(el) {
  const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
  return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none' && parseFloat(s.opacity || '1') > 0;
}
function describe(el) {
  let d = el.tagName.toLowerCase();
  if (el.id) d += '#' + el.id;
  if (el.classList.length) d += '.' + Array.from(el.classList).slice(0, 3).join('.');
  return d;
}
function scrollBoxInColumn(el) {  // a horizontally scrollable ancestor that itself fits the column
  for (let a = el.parentElement; a && a !== col; a = a.parentElement) {
    const ox = getComputedStyle(a).overflowX;
    if (ox === 'auto' || ox === 'scroll') return a.getBoundingClientRect().right <= colRect.right + 1;
  }
  return false;
}
function size(v) {  // number of values in a plotly data array: a list, nested lists, or a typed-array spec
  if (!v || typeof v !== 'object') return 0;
  if (v.bdata !== undefined) {  // {dtype, bdata[, shape]}: plotly.py 6 binary arrays (1-D ones have no shape)
    if (v.shape !== undefined) return String(v.shape).split(',').map(Number).reduce((a, b) => a * b, 1);
    if (v._inputArray && typeof v._inputArray.length === 'number') return v._inputArray.length;
    const bytes = Math.floor(v.bdata.length * 3 / 4) - (v.bdata.match(/=*$/)[0].length);
    const width = {i1: 1, u1: 1, i2: 2, u2: 2, i4: 4, u4: 4, f4: 4, f8: 8}[v.dtype] || 8;
    return Math.floor(bytes / width);
  }
  if (typeof v.length !== 'number') return 0;
  return Array.from(v).reduce((s, row) => s + (row && typeof row === 'object' && typeof row.length === 'number' ? row.length : 1), 0);
}
function countPoints(trace) {
  let n = 0;
  for (const key of ['x', 'y', 'z', 'values', 'r', 'lat', 'a']) n = Math.max(n, size(trace[key]));
  return n;
}
const plots = Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => {
  const r = d.getBoundingClientRect();
  const svg = d.querySelector('.main-svg');
  const box = d.parentElement.getBoundingClientRect();
  const title = d.querySelector('.gtitle');
  const bar = d.querySelector('.modebar');
  let titleUnderToolbar = false;
  if (title && bar) {
    const t = title.getBoundingClientRect(), b = bar.getBoundingClientRect();
    titleUnderToolbar = b.width > 0 && t.left < b.right && b.left < t.right && t.top < b.bottom && b.top < t.bottom;
  }
  return {
    id: d.id,
    traces: (d.data || []).length,
    points: (d.data || []).map(countPoints),
    width: r.width, height: r.height,
    svgWidth: svg ? svg.getBoundingClientRect().width : 0,
    boxWidth: box.width,
    right: r.right,
    title: title ? title.textContent : '',
    titleOutside: title ? (title.getBoundingClientRect().right > r.right + 1 || title.getBoundingClientRect().left < r.left - 1) : false,
    titleUnderToolbar,
  };
});
// plotly outputs that never became a figure
const undrawn = Array.from(document.querySelectorAll('.plotly-graph-div:not(.js-plotly-plot)')).map(describe);

const mathNodes = Array.from(document.querySelectorAll('.math'));
const untypeset = mathNodes.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
const mjx = document.querySelectorAll('mjx-container').length;

// text outside code, scripts and typeset maths
const walker = document.createTreeWalker(col, NodeFilter.SHOW_TEXT, {
  acceptNode(node) {
    for (let a = node.parentElement; a && a !== col; a = a.parentElement) {
      if (['PRE', 'CODE', 'SCRIPT', 'STYLE', 'MJX-CONTAINER', 'TEXTAREA', 'svg'].includes(a.tagName) || a.classList.contains('highlight')) return NodeFilter.FILTER_REJECT;
    }
    return NodeFilter.FILTER_ACCEPT;
  }
});
let text = '';
for (let n = walker.nextNode(); n; n = walker.nextNode()) text += n.textContent + ' ';

const wide = [];
for (const el of col.querySelectorAll('*')) {
  if (['SCRIPT', 'STYLE'].includes(el.tagName) || el.closest('mjx-container, .js-plotly-plot svg')) continue;
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if (r.right > colRect.right + 1 && !scrollBoxInColumn(el)) wide.push(describe(el) + ` (right edge ${Math.round(r.right)} > column ${Math.round(colRect.right)})`);
  if (wide.length > 5) break;
}
const cutCode = Array.from(col.querySelectorAll("pre")).filter(p => !p.closest(".cell_output"))
  .filter(p => p.scrollWidth > p.clientWidth + 1)
  .map(p => (p.textContent.split('\n').find(l => l.length > 0 && p.scrollWidth > p.clientWidth) || '').slice(0, 60));

const widgetViews = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')).map(s => {
  const out = s.closest('.cell') || s.parentElement;
  const rendered = Array.from(out.querySelectorAll('.jupyter-widgets, .widget-box, .lm-Widget')).some(visible);
  const note = Array.from(out.querySelectorAll('.' + arguments[0].note)).some(visible);
  return {rendered, note};
});
const notes = Array.from(document.querySelectorAll('.' + arguments[0].note));
const banner = document.getElementById(arguments[0].banner);
const images = Array.from(col.querySelectorAll('img')).map(i => ({src: i.getAttribute('src') || '', ok: i.complete && i.naturalWidth > 0}));

return {
  column: {left: colRect.left, right: colRect.right, width: colRect.width},
  plots, undrawn, untypeset, mjx, text, wide, cutCode, widgetViews,
  notesVisible: notes.filter(visible).length, notes: notes.length,
  banner: banner ? visible(banner) : null,
  images,
};
