"""The docs site, checked in a real browser.

The site is built by `scripts/build_docs.py` (nbdev's processing + nbconvert: the offline stand-in for
`nbdev_docs`, see that script) unless `_docs/` is already up to date with the notebooks. The test serves `_docs/`
on 127.0.0.1 from a server it starts, and opens every page in headless Chromium (Debian's `chromium` and
`chromium-driver` packages, which `.ci/run` installs; no browser is ever downloaded) through selenium. On every
page: no console error, every image loaded, every internal link answers 200 (and its #fragment exists), nothing
loaded from outside the site, math typeset by MathJax, and each exported function/class of the page's module has
its `show_doc` entry with its documented parameters; every table renders as an HTML table in a box that scrolls sideways.
Screenshots of every page, whole (in parts past 12,000 px), go to artefacts/screenshots/.
Separately, per notebook: nbdev's processing ran every cell it runs (else `nbdev_docs` would stop on it).
"""
import base64, dataclasses, fcntl, functools, http.server, importlib, importlib.util, inspect, json, shutil, subprocess
import sys, tempfile, threading, urllib.error, urllib.parse, urllib.request
from html.parser import HTMLParser
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS, DOCS = ROOT/'nbs', ROOT/'_docs'
BUILD = ROOT/'scripts'/'build_docs.py'
SHOTS = ROOT/'artefacts'/'screenshots'
SHOT_PART = 12000   # px per screenshot part (Chromium captures at most 16,384 px in one image)
CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--disable-quic', '--window-size=1280,1000']
NOTEBOOKS = sorted(str(p.relative_to(NBS)) for p in NBS.rglob('*.ipynb')
                   if not any(part.startswith(('_', '.')) for part in p.relative_to(NBS).parts))


def _site_is_current():
    "The built site exists and was made from exactly today's notebooks, stylesheet, build script and library."
    manifest = DOCS/'site.json'
    if not manifest.exists(): return False
    spec = importlib.util.spec_from_file_location('build_docs', BUILD)
    build_docs = importlib.util.module_from_spec(spec); spec.loader.exec_module(build_docs)
    return json.loads(manifest.read_text()).get('inputs') == build_docs.inputs_digest()


@pytest.fixture(scope='session')
def site(tmp_path_factory):
    "A snapshot of the built site (built first if needed, once even with several pytest workers): its folder and pages."
    (ROOT/'artefacts').mkdir(exist_ok=True)
    snapshot = tmp_path_factory.mktemp('docs')/'site'
    with open(ROOT/'artefacts'/'.docs-build.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _site_is_current():
            res = subprocess.run([sys.executable, str(BUILD)], cwd=ROOT, capture_output=True, text=True, timeout=900)
            assert res.returncode == 0, f'docs build failed:\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}'
        shutil.copytree(DOCS, snapshot)   # a later rebuild (another worker, an edited notebook) cannot change it
    pages = {p['notebook']: p for p in json.loads((snapshot/'site.json').read_text())['pages']}
    return snapshot, pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


@pytest.fixture(scope='session')
def server(site):
    "Base URL of the site served on 127.0.0.1 by a server this test starts (and stops)."
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_QuietHandler, directory=str(site[0])))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_port}/'
    httpd.shutdown(); httpd.server_close()


@pytest.fixture(scope='session')
def browser():
    "Headless Debian chromium driven by Debian's chromedriver. Missing browser = failure, not a skip."
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f'{", ".join(missing)} not found: install Debian\'s browser with '
                    '`apt-get install chromium chromium-driver` (.ci/run does this)')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    with tempfile.TemporaryDirectory(prefix='docs-chromium-') as profile:
        for a in CHROMIUM_ARGS + [f'--user-data-dir={profile}']: opts.add_argument(a)
        opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
        driver.set_page_load_timeout(60); driver.set_script_timeout(60)
        try: yield driver
        finally: driver.quit()


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__(); self.ids = set()
    def handle_starttag(self, tag, attrs):
        self.ids.update(v for k, v in attrs if k in ('id', 'name') and v)


@functools.lru_cache(maxsize=None)
def _fetch(url):
    "HTTP status and body of an internal URL."
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status, r.read().decode('utf-8', 'replace')
    except urllib.error.HTTPError as e: return e.code, ''


def _ids(url):
    p = _Ids(); p.feed(_fetch(url)[1]); return p.ids


_MATH_JS = """
return {jax: MathJax.Hub.getAllJax().length,
        rendered: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_SVG').length,
        errors: Array.from(document.querySelectorAll('.merror, .MathJax_Error')).map(e => e.textContent.slice(0, 80))};
"""

_TABLES_JS = r"""
const sep = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$/;
const raw = [];
for (const el of document.querySelectorAll('.jp-RenderedMarkdown, .jp-OutputArea-output')) {
  const lines = el.innerText.split('\n');
  lines.forEach((l, i) => { if (sep.test(l) && i > 0 && lines[i - 1].includes('|')) raw.push(lines.slice(Math.max(0, i - 1), i + 3).join('\n').slice(0, 300)); });
}
const ragged = [], unboxed = [], clipped = [];
document.querySelectorAll('main table').forEach((t, k) => {
  const head = t.querySelector('tr');
  const n = head ? Array.from(head.cells).reduce((a, c) => a + c.colSpan, 0) : 0;
  t.querySelectorAll('tr').forEach((r, i) => { const m = Array.from(r.cells).reduce((a, c) => a + c.colSpan, 0); if (m !== n) ragged.push(`table ${k} row ${i}: ${m} cells, header ${n}`); });
  const box = t.parentElement;
  if (!box.classList.contains('table-scroll')) { unboxed.push(`table ${k}`); return; }
  const ox = getComputedStyle(box).overflowX;
  if (box.scrollWidth > box.clientWidth + 1 && !['auto', 'scroll'].includes(ox)) clipped.push(`table ${k}`);
  if (box.getBoundingClientRect().right > document.querySelector('main').getBoundingClientRect().right + 1) clipped.push(`table ${k} (box wider than the page column)`);
});
return {raw, ragged, unboxed, clipped};
"""

_SHOWDOC_JS = """
const h = Array.from(document.querySelectorAll('h3')).find(h => h.id === arguments[0] && h.closest('.jp-OutputArea-output'));
return h ? {tag: h.tagName, text: h.closest('.jp-OutputArea-output').innerText, top: h.getBoundingClientRect().top + window.scrollY} : null;
"""


def _api(module_name):
    "Public functions and classes a module exports (its `__all__`), each with its parameters' docments."
    from fastcore.docments import docments
    mod = importlib.import_module(module_name)
    res = {}
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or getattr(obj, '__name__', None) != name: continue
        if getattr(obj, '__module__', None) != module_name: continue
        try: params = {k: v for k, v in docments(obj, full=True).items() if k not in ('self', 'return')}
        except (TypeError, ValueError): params = {}
        res[name] = (obj, params)
    return res


def _own_doc(obj):
    "The docstring `obj` itself has (not one inherited, nor the signature a dataclass makes up)."
    doc = obj.__dict__.get('__doc__') if inspect.isclass(obj) else obj.__doc__
    if dataclasses.is_dataclass(obj) and doc and doc.startswith(obj.__name__ + '('): doc = None
    return (doc or '').strip()


def test_site_lists_every_notebook(site):
    pages = site[1]
    assert sorted(pages) == NOTEBOOKS, f'site pages {sorted(pages)} != notebooks {NOTEBOOKS}'
    assert pages['index.ipynb']['href'] == 'index.html'


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_nbdev_processing(nb, site):
    "nbdev's processing ran every cell it runs (so `nbdev_docs` with Quarto does not stop on this notebook)."
    failed = site[1][nb]['failed_cells']
    assert not failed, (f'{nb}: nbdev_docs stops on these cells: nbdev runs every cell that contains an import (without '
                        'the cells before it) to build the show_doc entries. Keep imports in cells of their own '
                        '(nbdev FAQ).\n' + '\n'.join(f'cell {f["cell"]}: {f["error"]}\n{f["code"]}' for f in failed))


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_page(nb, site, server, browser):
    pages = site[1]
    page = pages[nb]
    url = urllib.parse.urljoin(server, page['href'])
    browser.get_log('browser')                                  # drop what earlier pages logged
    browser.get(url)
    title = browser.find_element('id', 'page-title').text
    assert title == page['title'], (title, page['title'])

    # math: MathJax typeset every formula, without a TeX error, and left no raw $$ visible
    from selenium.webdriver.support.ui import WebDriverWait
    assert browser.execute_script('return typeof MathJax !== "undefined" && !!MathJax.Hub'), f'{url}: MathJax did not load'
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script('return document.documentElement.getAttribute("data-mathjax")') == 'done',
        f'{url}: MathJax did not finish typesetting')
    math = browser.execute_script(_MATH_JS)

    # screenshots of the whole page, for people to look at (taken before the checks, so failing pages have them too):
    # Chromium captures at most 16,384 px at once, so a long page comes in parts of SHOT_PART px, top to bottom
    SHOTS.mkdir(parents=True, exist_ok=True)
    stem = Path(page['href']).stem
    for old in SHOTS.glob(f'{stem}*.png'):
        if old.stem == stem or old.stem.startswith(stem + '-part'): old.unlink()
    height = browser.execute_script('return document.documentElement.scrollHeight')
    parts = range(0, height, SHOT_PART)
    for k, top in enumerate(parts, 1):
        shot = browser.execute_cdp_cmd('Page.captureScreenshot', {'format': 'png', 'captureBeyondViewport': True,
                                       'clip': {'x': 0, 'y': top, 'width': 1280, 'height': min(SHOT_PART, height - top), 'scale': 1}})
        name = stem if len(parts) == 1 else f'{stem}-part{k}of{len(parts)}'
        (SHOTS/f'{name}.png').write_bytes(base64.b64decode(shot['data']))

    # tables: every Markdown table rendered as an HTML table (no raw |---| pipe text left in the text or outputs), its
    # rows as wide as its header, inside a box that scrolls sideways when the table is wider than the text column
    tables = browser.execute_script(_TABLES_JS)
    assert not tables['raw'], f'{url}: tables left as raw pipe text:\n' + '\n---\n'.join(tables['raw'])
    assert not tables['ragged'], f'{url}: table rows with more or fewer cells than the header: {tables["ragged"]}'
    assert not page.get('ragged_tables'), (f'{url}: Markdown table rows with more or fewer cells than their header (escape a `|` '
                                           f'inside a cell as `\\|`):\n' + '\n'.join(page['ragged_tables']))
    assert not tables['unboxed'], f'{url}: tables not in a sideways-scrolling box: {tables["unboxed"]}'
    assert not tables['clipped'], f'{url}: tables wider than their box that cannot scroll: {tables["clipped"]}'

    assert not math['errors'], f'{url}: TeX errors {math["errors"]}'
    if page['math']:
        assert math['jax'] > 0 and math['rendered'] > 0, f'{url} has math but MathJax rendered none: {math}'
        assert '$$' not in browser.execute_script('return document.body.innerText'), f'{url}: raw $$ left in the text'

    # images: every <img> loaded, and at least the figures the notebook stores are on the page
    imgs = browser.execute_script(
        'return Array.from(document.images).map(i => [i.src.slice(0, 80), i.complete && i.naturalWidth > 0])')
    broken = [src for src, ok in imgs if not ok]
    assert not broken, f'{url}: images that did not load: {broken}'
    assert len(imgs) >= page['figures'], f'{url}: {len(imgs)} <img> for {page["figures"]} figures in the notebook'

    # nothing from outside: every resource the page loaded came from the local server (or a data: URL)
    ext = [r for r in browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
           if not r.startswith(server) and not r.startswith('data:')]
    assert not ext, f'{url} loaded resources from outside the site: {ext}'

    # links: every internal link answers 200 and its #fragment exists on the target page
    hrefs = browser.execute_script('return Array.from(document.querySelectorAll("a[href]")).map(a => a.href)')
    internal = sorted({h for h in hrefs if h.startswith(server)})
    bad = []
    for h in internal:
        target, _, frag = h.partition('#')
        status = _fetch(target)[0]
        if status != 200: bad.append(f'{h} -> HTTP {status}')
        elif frag and not {frag, urllib.parse.unquote(frag)} & _ids(target): bad.append(f'{h}: no id {frag!r} on the page')
    assert not bad, f'{url}: broken internal links:\n' + '\n'.join(bad)
    nav = browser.execute_script('return Array.from(document.querySelectorAll("nav.site-sidebar a")).map(a => a.href)')
    assert sorted(urllib.parse.urljoin(server, p['href']) for p in pages.values()) == sorted(nav), 'sidebar must link every page'

    # API: each exported public function/class has a docstring and a show_doc entry listing its parameters
    # ... shown as written (its first line verbatim: no `*` or `<...>` eaten by Markdown), a class as `class X(`, and the
    # entries in the order of the source
    missing, order = [], []
    if page['module']:
        for name, (obj, params) in _api(page['module']).items():
            if not _own_doc(obj): missing.append(f'{name}: no docstring')
            entry = browser.execute_script(_SHOWDOC_JS, name.lower())
            if not entry or entry['tag'] != 'H3': missing.append(f'{name}: no show_doc entry (#{name.lower()})'); continue
            order.append((entry['top'], inspect.getsourcelines(obj)[1], name))
            first = ' '.join(_own_doc(obj).splitlines()[0].replace('`', '').split()) if _own_doc(obj) else ''
            if first and first not in ' '.join(entry['text'].split()): missing.append(f'{name}: docstring shown mangled (want {first!r})')
            if inspect.isclass(obj) and f'class {name}(' not in entry['text']: missing.append(f'{name}: a class shown without `class {name}(`')
            for p, d in params.items():
                if p not in entry['text']: missing.append(f'{name}: parameter {p} not shown')
                doc = (d.get('docment') or '').splitlines()
                # nbdev's show_doc renders a dataclass from its generated __init__, without the fields' comments
                if doc and doc[0].strip() not in entry['text'] and not dataclasses.is_dataclass(obj):
                    missing.append(f'{name}: docment of {p} not shown')
    assert not missing, f'{url}: API docs incomplete:\n' + '\n'.join(missing)
    by_page, by_source = [n for _, _, n in sorted(order)], [n for _, _, n in sorted(order, key=lambda o: o[1])]
    assert by_page == by_source, f'{url}: API entries not in source order:\n page:   {by_page}\n source: {by_source}'


    # console: no error logged while the page loaded and rendered
    errors = [e['message'] for e in browser.get_log('browser') if e['level'] == 'SEVERE']
    assert not errors, f'{url}: console errors:\n' + '\n'.join(errors)
