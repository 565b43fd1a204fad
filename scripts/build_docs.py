"""Build the docs site and README.md WITHOUT Quarto: the offline path CI uses.

Where Quarto is installed, `nbdev_docs` builds the real nbdev site (and README.md) from the same notebooks.
Quarto cannot be installed on this project's machines, so this script does what nbdev_docs does with the two
parts available here:

1. nbdev's own processing (what `nbdev_proc_nbs` runs before Quarto, through nbdev's public pieces: `proc_nbs`,
   `serve_drv.main`, a `FilterDefaults` subclass, `show_doc`'s `renderer`) writes the processed notebooks to
   `_proc/`: `#| hide`/`#| export` cells removed, `show_doc` cells added and executed for every exported symbol,
   front matter (title, description, output file) taken from the first markdown cell.
2. nbconvert renders each processed notebook, with its stored outputs, to `_docs/<output-file>.html`, honouring
   the Quarto cell options nbdev leaves behind (`echo`, `output`, `include`), inside one page layout with a
   header and a sidebar linking every page. Math is typeset by a MathJax copied into `_docs/mathjax/` from the
   `jupyter-server-mathjax` package: the site loads nothing from outside.

README.md is index.ipynb after the same processing, converted to markdown by nbconvert.

    python scripts/build_docs.py                 # _docs/ and README.md
    python scripts/build_docs.py --check-readme  # _docs/, and fail if README.md is not what index.ipynb gives
"""
import argparse, copy, difflib, functools, html as htmllib, importlib, inspect, json, re, shutil, sys, urllib.parse
from pathlib import Path

import nbformat, yaml
from bs4 import BeautifulSoup
from jinja2 import DictLoader
from nbconvert import HTMLExporter, MarkdownExporter
from traitlets.config import Config
from nbdev.config import get_config
import nbdev.showdoc
from nbdev.process import Processor
from nbdev.processors import FilterDefaults, exec_show_docs, add_show_docs
from fastcore.docments import _ital_first   # what nbdev's renderer italicises the docstring with: SiteRenderer finds it by it

MATHJAX_CONFIG = 'TeX-AMS-MML_HTMLorMML-full,Safe'   # the combined configuration jupyter-server-mathjax ships
_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_fence_div = re.compile(r'^:::.*$\n?', re.MULTILINE)                 # Quarto fenced divs: keep the content
_re_link_attrs = re.compile(r'(\]\([^)\s]*\))\{[^}\n]*\}')              # [txt](url){target="_blank" ...}
_re_heading_attrs = re.compile(r'^(#{1,6} .*?)\s*\{[#.][^}\n]*\}\s*$', re.MULTILINE)  # ## Head {#sec-x}
_re_math = re.compile(r'\$[^$\s][^$]*\$|\\\(|\\\[|\\begin\{')

PAGE_TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<link rel="icon" href="data:,">
<meta name="description" content="{{ resources.site.description | e }}">
{%- endblock extra_css -%}
{%- block html_head_css -%}
<link rel="stylesheet" href="styles.css">
{%- endblock html_head_css -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [['$','$'], ['\\(','\\)']], displayMath: [['$$','$$'], ['\\[','\\]']],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}, noErrors: {disabled: true}},
  "HTML-CSS": {availableFonts: [], webFont: "STIX-Web", imageFont: null, preferredFont: null,
    // MathJax 2 declares its blank fallback font as url('about:blank'), which Chromium refuses with a console error
    styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank_Not_Installed')"}}},
  "fast-preview": {disabled: true},   // one typesetting pass (HTML-CSS), not a preview first
  displayAlign: "center", messageStyle: "none", showMathMenu: false, skipStartupTypeset: true
});
</script>
<script src="mathjax/MathJax.js?config={{ resources.site.mathjax_config }}"></script>
<script>
// typeset once MathJax has started, then mark the page (the browser test waits for this mark)
MathJax.Hub.Queue(["Typeset", MathJax.Hub], function () { document.documentElement.setAttribute("data-mathjax", "done"); });
</script>
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
<body class="jp-Notebook offline-site" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<header class="site-header">
  <a class="site-title" href="index.html">{{ resources.site.site_title | e }}</a>
  <span class="site-tagline">{{ resources.site.site_description | e }}</span>
</header>
<div class="site-layout">
<nav class="site-sidebar" aria-label="pages"><ul>
{%- for p in resources.site.pages %}
  <li><a href="{{ p.href }}"{% if p.current %} class="active" aria-current="page"{% endif %}>{{ p.title | e }}</a></li>
{%- endfor %}
</ul></nav>
<main class="site-main">
<h1 class="title" id="page-title">{{ resources.site.title | e }}</h1>
{%- if resources.site.description %}
<div class="description">{{ resources.site.description_html }}</div>
{%- endif %}
{%- endblock body_header -%}
{%- block body_footer -%}
<nav class="page-nav" aria-label="previous and next page">
{%- if resources.site.prev %}<a class="page-prev" href="{{ resources.site.prev.href }}">&larr; {{ resources.site.prev.title | e }}</a>{% endif %}
{%- if resources.site.next %}<a class="page-next" href="{{ resources.site.next.href }}">{{ resources.site.next.title | e }} &rarr;</a>{% endif %}
</nav>
<footer class="site-footer">Rendered from <code>{{ resources.site.source }}</code> by nbdev's processing and nbconvert
(the offline build, <code>scripts/build_docs.py</code>); with Quarto, <code>nbdev_docs</code> builds the same pages.</footer>
</main>
</div>
</body>
{%- endblock body_footer -%}
"""


def inputs_digest():
    "A hash of everything the site is made from (notebooks, stylesheet, this script, settings, library code)."
    import hashlib
    cfg = get_config()
    files = sorted([*Path(cfg.nbs_path).rglob('*.ipynb'), Path(cfg.nbs_path)/'styles.css', Path(__file__).resolve(),
                    cfg.config_file, *Path(cfg.lib_path).rglob('*.py')])
    h = hashlib.sha256()
    for f in files:
        if f.is_file() and '.ipynb_checkpoints' not in f.parts: h.update(str(f).encode() + b'\0' + f.read_bytes())
    return h.hexdigest()


_re_code_span = re.compile(r'(`+)(.+?)\1', re.DOTALL)


def escape_markdown(text):
    "Text shown as Markdown literally: `*`, `_`, `<grid>` etc. escaped outside `code spans` (which stay code)."
    def esc(t):
        t = re.sub(r'([\\*_\[\]|#~])', r'\\\1', t)
        return t.replace('<', '&lt;').replace('>', '&gt;')
    parts = _re_code_span.split(text)          # [text, ticks, code, ticks, code, ..., text]
    out, i = [], 0
    while i < len(parts):
        out.append(esc(parts[i]))
        if i + 2 < len(parts): out.append(parts[i + 1] + parts[i + 2] + parts[i + 1])
        i += 3
    return ''.join(out)


class SiteRenderer(nbdev.showdoc.BasicMarkdownRenderer):
    """nbdev's `show_doc` Markdown, with the docstring escaped (a formula's `*` no longer starts italics, `<grid>` is
    no longer swallowed as an HTML tag) and a class shown as `class X(`, not `def X(`."""
    def _repr_markdown_(self):
        md = super()._repr_markdown_()
        if self.docs:
            tail = '\n\n' + _ital_first(self.docs)
            if md.endswith(tail): md = md[:-len(tail)] + '\n\n' + _ital_first(escape_markdown(self.docs))
        if inspect.isclass(self.sym): md = md.replace('```python\ndef ', '```python\nclass ', 1)
        return md


class show_docs_in_order(Processor):
    """Put the `show_doc` cells nbdev's `add_show_docs` added after an exported cell in source order (it inserts each
    at the cell's index + 1, which reverses them). Runs right after it: the cells it added are marked `has_sd`."""
    def begin(self):
        cells, added = [], []
        for cell in self.nb.cells:
            if cell.get('has_sd'):
                added.append(cell)
                continue
            cells += reversed(added)
            added = []
            cells.append(cell)
        self.nb.cells = cells + added[::-1]


_re_show_doc_cell = re.compile(r'^show_doc\(', re.MULTILINE)   # a cell that renders API docs (nbdev's test is private)


class exec_show_docs_noted(exec_show_docs):
    """nbdev's `exec_show_docs`, except that a failing cell which is not a `show_doc` is noted in the notebook's
    metadata (and keeps its stored outputs) instead of stopping the build. nbdev runs every cell that contains an
    import, without the cells before it; a cell that mixes an import with other code then fails, and `nbdev_docs`
    stops there. The pages still build and get checked; tests/test_docs.py fails on the note, naming the cell.
    Its `show_doc` renders with `SiteRenderer`, through show_doc's own `renderer` parameter."""
    def begin(self):
        super().begin()
        if hasattr(self, 'k'): self.k.user_ns['show_doc'] = functools.partial(nbdev.showdoc.show_doc, renderer=SiteRenderer)

    def __call__(self, cell):
        outputs = copy.deepcopy(cell.get('outputs'))
        try: return super().__call__(cell)
        except Exception:
            if _re_show_doc_cell.search(cell.source or ''): raise
            if outputs is not None: cell['outputs'] = outputs
            err = f'{type(self.k.exc).__name__}: {self.k.exc}'
            self.k.exc = None                      # nbdev re-raises a stored error at every later cell
            self.nb.metadata.setdefault('docs_build', {}).setdefault('failed_cells', []).append(
                dict(cell=cell.idx_, error=err, code=cell.source[:400]))
            print(f'WARNING: nbdev_docs would stop here: cell {cell.idx_} failed in processing ({err}):\n{cell.source[:400]}',
                  file=sys.stderr)


class FilterNoted(FilterDefaults):
    """nbdev's processors (subclassing FilterDefaults is nbdev's documented way to change them), with `exec_show_docs`
    replaced by the version above and `show_docs_in_order` right after `add_show_docs`. The `procs`/`skip_procs`
    settings cannot do this: `procs` only appends processors at the end, after the exported cells are gone."""
    def base_procs(self):
        procs = []
        for p in super().base_procs():
            procs.append(exec_show_docs_noted if p is exec_show_docs else p)
            if p is add_show_docs: procs.append(show_docs_in_order)
        return procs


def process_notebooks(force=False, only=None):
    """Run nbdev's processing (what `nbdev_proc_nbs` does before Quarto) into `_proc/`; return that folder.
    `nbdev.serve.proc_nbs` takes no processors (it reads the module's `FilterDefaults`), so it only copies the other
    files here, and each notebook goes through `nbdev.serve_drv.main` with `FilterNoted`: the call proc_nbs makes
    for each notebook, in this process (no pool), skipped (as proc_nbs does) when `_proc/` holds it newer than its
    source; `only` (README.md alone) is always processed."""
    import nbdev.serve, nbdev.serve_drv
    cfg = get_config()
    proc = cfg.config_path/'_proc'
    if proc.exists() and Path(__file__).stat().st_mtime > proc.stat().st_mtime: force = True   # processors changed
    if only is None: nbdev.serve.proc_nbs(force=force, n_workers=0, skip_file_glob='*.ipynb')
    for src in ([cfg.nbs_path/only] if only else source_notebooks(cfg.nbs_path)):
        dst = proc/Path(src).relative_to(cfg.nbs_path)
        if force or only or not dst.exists() or dst.stat().st_mtime < Path(src).stat().st_mtime:
            dst.parent.mkdir(parents=True, exist_ok=True)
            nbdev.serve_drv.main((Path(src), dst, FilterNoted))
    proc.touch()
    return proc


def source_notebooks(nbs):
    "The notebooks nbdev puts on the site, landing page first (nbdev skips names starting with `_` or `.`)."
    nbs = Path(nbs)
    found = [p for p in nbs.rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(nbs).parts)]
    return sorted(found, key=lambda p: (p.relative_to(nbs) != Path('index.ipynb'), str(p.relative_to(nbs))))


def front_matter(nb):
    "Pop nbdev's front-matter raw cell (title, description, output-file) and return it as a dict."
    if nb.cells and nb.cells[0].cell_type == 'raw' and nb.cells[0].source.lstrip().startswith('---'):
        fm = yaml.safe_load(nb.cells.pop(0).source.strip().strip('-')) or {}
        return fm
    return {}


def directives(src):
    "Quarto/nbdev cell options at the top of a code cell, and the source without them."
    opts, lines = {}, src.splitlines()
    while lines and (m := _re_directive.match(lines[0])):
        opts[m.group(1).lower()] = m.group(2).strip('"\'').lower(); lines.pop(0)
    return opts, '\n'.join(lines)


def _table_math(line):
    "In a table row, write `|` inside $math$ as \\vert (pandoc parses the math first; mistune splits the cell there)."
    if not line.lstrip().startswith('|'): return line
    return re.sub(r'\$[^$\n]+\$', lambda m: m.group(0).replace('\\|', '\\Vert{}').replace('|', '\\vert{}'), line)


_re_callout = re.compile(r'^:::+\s*\{\.callout-(\w+)([^}]*)\}\s*$')
_re_title_attr = re.compile(r'title="([^"]*)"')


def callouts(md):
    "Quarto callouts (`::: {.callout-note title=\"Findings\"}` ... `:::`) as HTML boxes around their Markdown; other fenced divs dropped, their content kept."
    out, stack = [], []
    for line in md.split('\n'):
        m = _re_callout.match(line)
        if m:
            t = _re_title_attr.search(m.group(2))
            out += [f'<div class="callout callout-{m.group(1)}">'] + ([f'<p class="callout-title">{htmllib.escape(t.group(1))}</p>'] if t else []) + ['']
            stack.append(True)
        elif re.match(r'^:::+\s*$', line) and stack:
            if stack.pop(): out += ['', '</div>']
        elif re.match(r'^:::+', line): stack.append(False)
        else: out.append(line)
    return '\n'.join(out)


def clean_markdown(md):
    "Drop the pandoc/Quarto-only syntax that a CommonMark renderer would print literally (callouts become HTML boxes)."
    md = '\n'.join(_table_math(l) for l in md.split('\n'))
    md = callouts(md)
    md = _re_fence_div.sub('', md)
    md = _re_link_attrs.sub(r'\1', md)
    return _re_heading_attrs.sub(r'\1', md)


_re_table_sep = re.compile(r'^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$')


def ragged_table_rows(md):
    "Rows of the Markdown tables in `md` whose number of cells differs from the header's (a stray `|` in a cell: the renderer drops or shifts cells silently)."
    cells = lambda l: len(re.split(r'(?<!\\)\|', l.strip().strip('|'))) if l.strip() else 0
    lines, bad, n = md.split('\n'), [], None
    for i, l in enumerate(lines):
        if i + 1 < len(lines) and _re_table_sep.match(lines[i + 1]) and '|' in l: n = cells(l); continue
        if n is None: continue
        if not l.strip().startswith('|') and '|' not in l: n = None; continue
        if not _re_table_sep.match(l) and cells(l) != n: bad.append(l.strip()[:160])
    return bad


def prepare(nb):
    "Apply the Quarto cell options nbdev leaves in processed notebooks, as Quarto would, for nbconvert."
    cells = []
    for cell in nb.cells:
        if cell.cell_type == 'markdown':
            cell.source = clean_markdown(cell.source)
            nb.metadata.setdefault('docs_build', {}).setdefault('ragged_tables', []).extend(ragged_table_rows(cell.source))
            if not cell.source.strip() or cell.source.strip().startswith('<!-- WARNING'): continue
        elif cell.cell_type == 'code':
            opts, cell.source = directives(cell.source)
            if opts.get('include') == 'false': continue
            tags = set(cell.metadata.get('tags', []))
            if opts.get('echo') == 'false' or not cell.source.strip(): tags.add('remove_input')
            if opts.get('output') == 'false': cell.outputs = []
            for out in cell.get('outputs', []):
                md = out.get('data', {}).get('text/markdown')
                if md is not None:
                    out['data']['text/markdown'] = clean_markdown(''.join(md))
                    nb.metadata.setdefault('docs_build', {}).setdefault('ragged_tables', []).extend(ragged_table_rows(out['data']['text/markdown']))
            if 'remove_input' in tags and not cell.get('outputs'): continue
            cell.metadata['tags'] = sorted(tags)
        cells.append(cell)
    nb.cells = cells
    return nb


def inline_markdown(text):
    "A line of markdown (front matter's description) as inline HTML, as Quarto renders it."
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    html = markdown2html_mistune(text).strip()
    return html[3:-4] if html.startswith('<p>') and html.endswith('</p>') else html


def page_name(src, fm):
    "The page nbdev/Quarto writes for a notebook: front matter's output-file, else the notebook's name."
    return fm.get('output-file') or src.with_suffix('.html').name


def has_math(nb):
    "Does the page have TeX for MathJax (outside code)?"
    def tex(md): return bool(_re_math.search(re.sub(r'```.*?```|`[^`\n]*`', '', md, flags=re.DOTALL)))
    return any(c.cell_type == 'markdown' and tex(c.source) for c in nb.cells) or any(
        tex(''.join(o.get('data', {}).get('text/markdown', ''))) for c in nb.cells for o in c.get('outputs', []))


def n_figures(nb):
    "Image outputs the page must show (each becomes one <img>)."
    return sum(any(k.startswith('image/') for k in o.get('data', {})) for c in nb.cells for o in c.get('outputs', []))


def slug(anchor):
    "A heading id as pandoc (so Quarto and nbdev's doc links) writes it: lower case, only letters, digits, _ - ."
    return re.sub(r'[^\w.-]', '', urllib.parse.unquote(anchor).lower().replace(' ', '-'))


def api_symbols(pages):
    "{name: page#anchor} for every public function and class the site documents (its module's `__all__`), and {notebook stem: page}."
    links = {}
    for p in pages:
        stem = Path(p['notebook']).stem
        if stem != 'index': links[stem] = p['href']
        if not p.get('module'): continue
        try: mod = importlib.import_module(p['module'])
        except Exception as e: print(f'WARNING: cannot import {p["module"]} to link its names: {e}', file=sys.stderr); continue
        for name in getattr(mod, '__all__', []):
            obj = getattr(mod, name, None)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, '__module__', None) == p['module']:
                links.setdefault(name, f"{p['href']}#{slug(name.lower())}")
    return links


def finish_page(soup, symbols, here):
    """Tables in a box that scrolls sideways when they are wide; `code` names of documented functions, classes and
    notebooks in the text linked to their pages; an on-page contents list (h2/h3 of the text) on long pages."""
    for t in soup.find_all('table'):
        if not (t.parent and 'table-scroll' in (t.parent.get('class') or [])): t.wrap(soup.new_tag('div', attrs={'class': 'table-scroll'}))
        for td in t.find_all('td'):             # cells stay on one line (the box scrolls); only long text wraps
            if len(td.get_text()) > 60: td['class'] = (td.get('class') or []) + ['wrap']
    for code in soup.select('.jp-RenderedMarkdown code, .jp-MarkdownOutput code'):
        if code.find_parent(['a', 'pre', 'h1', 'h2', 'h3', 'h4']): continue
        name = re.sub(r'(\(\)|\.ipynb)$', '', code.get_text().strip())
        target = symbols.get(name)
        if not target or target == here: continue
        a = soup.new_tag('a', href=target, attrs={'class': 'api-link'}); code.wrap(a)
    main = soup.find('main')
    heads = [h for h in soup.select('.jp-RenderedMarkdown h2[id], .jp-RenderedMarkdown h3[id]')]
    if main and len([h for h in heads if h.name == 'h2']) >= 3:
        nav = soup.new_tag('nav', attrs={'class': 'page-toc', 'aria-label': 'on this page'})
        title = soup.new_tag('p', attrs={'class': 'page-toc-title'}); title.string = 'On this page'; nav.append(title)
        ul = soup.new_tag('ul')
        for h in heads:
            li = soup.new_tag('li', attrs={'class': f'toc-{h.name}'})
            a = soup.new_tag('a', href=f"#{h['id']}"); a.string = h.get_text().replace('¶', '').strip(); li.append(a); ul.append(li)
        nav.append(ul)
        main.insert_after(nav)
    return soup


def fix_links(html, href_map, site_url, symbols=None, here=''):
    "Point links at the built pages (`X.ipynb` -> X's page, the site's own absolute URLs -> relative); Quarto's heading ids; then `finish_page`."
    soup = BeautifulSoup(html, 'html.parser')
    for a in soup.find_all('a', href=True):
        href = a['href']
        if site_url and href.startswith(site_url + '/'): href = href[len(site_url) + 1:] or 'index.html'
        if '://' in href or href.startswith(('mailto:', 'data:')): continue
        path, _, frag = href.partition('#')
        if path.endswith('.ipynb'): path = href_map.get(Path(path).name, path)
        a['href'] = path + (f'#{slug(frag)}' if frag and frag != 'page-title' else f'#{frag}' if frag else '')
    for h in soup.find_all(re.compile('^h[1-6]$'), id=True):
        if h['id'] != 'page-title': h['id'] = slug(h['id'])
    return str(finish_page(soup, symbols or {}, here))


def copy_mathjax(out):
    import jupyter_server_mathjax
    src = Path(jupyter_server_mathjax.__file__).parent/'static'
    dst = out/'mathjax'
    if not (dst/'MathJax.js').exists(): shutil.copytree(src, dst, dirs_exist_ok=True)


def build_site(proc, out, digest):
    "Render every processed notebook to `out`; write `out/site.json` listing the pages for the browser test."
    cfg = get_config()
    nbs = Path(cfg.nbs_path)
    sources = source_notebooks(nbs)
    loaded = []
    for src in sources:
        rel = src.relative_to(nbs)
        nb = nbformat.read(proc/rel, as_version=4)
        fm = front_matter(nb)
        loaded.append((rel, nb, fm))
    href_map = {rel.name: page_name(rel, fm) for rel, nb, fm in loaded}
    nav = [dict(href=href_map[rel.name], title=('Home' if rel.name == 'index.ipynb' else fm.get('title', rel.stem)))
           for rel, nb, fm in loaded]
    site_url = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/')

    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():     # a fresh site (pages of removed notebooks go), but keep the 12 MB MathJax copy
        if f.name != 'mathjax': shutil.rmtree(f) if f.is_dir() else f.unlink()
    for f in proc.rglob('*'):   # files the notebooks refer to (images etc.), as Quarto copies them
        if f.is_file() and f.suffix not in ('.ipynb', '.yml') and not f.name.startswith('.'):
            (out/f.relative_to(proc)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out/f.relative_to(proc))
    copy_mathjax(out)

    tags = Config({'TagRemovePreprocessor': {'enabled': True, 'remove_input_tags': {'remove_input'}}})
    exporter = HTMLExporter(config=tags, template_name='lab', template_file='site.html.j2',
                            extra_loaders=[DictLoader({'site.html.j2': PAGE_TEMPLATE})],
                            exclude_input_prompt=True, exclude_output_prompt=True)

    symbols = api_symbols([dict(href=i['href'], notebook=str(rel), module=default_exp(nbs/rel)) for (rel, _, _), i in zip(loaded, nav)])
    pages = []
    for k, ((rel, nb, fm), item) in enumerate(zip(loaded, nav)):
        nb = prepare(nb)
        title = fm.get('title', rel.stem)
        nb.metadata['title'] = title if rel.name == 'index.ipynb' else f'{title} - {cfg.title}'
        desc = fm.get('description', '')
        site = dict(site_title=cfg.title, site_description=cfg.get('description', ''), title=title, description=desc,
                    description_html=inline_markdown(desc), source=f'{nbs.name}/{rel}', mathjax_config=MATHJAX_CONFIG,
                    pages=[dict(p, current=p is item) for p in nav],
                    prev=nav[k - 1] if k > 0 else None, next=nav[k + 1] if k + 1 < len(nav) else None)
        html, _ = exporter.from_notebook_node(nb, resources={'site': site})
        (out/item['href']).write_text(fix_links(html, href_map, site_url, symbols, item['href']), encoding='utf-8')
        pages.append(dict(href=item['href'], title=title, notebook=str(rel), math=has_math(nb),
                          figures=n_figures(nb), module=default_exp(nbs/rel),
                          failed_cells=nb.metadata.get('docs_build', {}).get('failed_cells', []),
                          ragged_tables=nb.metadata.get('docs_build', {}).get('ragged_tables', [])))
    styles = nbs/'styles.css'
    if styles.exists(): shutil.copy2(styles, out/'styles.css')
    (out/'site.json').write_text(json.dumps(dict(inputs=digest, pages=pages), indent=1))
    return pages


def default_exp(src):
    "The module a source notebook exports to (`#| default_exp`), or None."
    for c in nbformat.read(src, as_version=4).cells:
        m = re.search(r'^\s*#\|\s*default_exp\s+(\S+)', c.source, re.MULTILINE) if c.cell_type == 'code' else None
        if m: return f'{get_config().lib_name}.{m.group(1)}'
    return None


def readme_markdown(proc):
    "README.md's text and figure files: the processed index notebook as markdown (what `nbdev_readme` gets from Quarto)."
    cfg = get_config()
    nb = nbformat.read(proc/cfg.readme_nb, as_version=4)
    fm = front_matter(nb)
    nb = prepare(nb)
    nb.metadata.setdefault('language_info', {'name': 'python'})   # ```python fences, as Quarto's gfm writes
    nb.cells = [c for c in nb.cells if 'remove_input' not in c.metadata.get('tags', []) or c.get('outputs')]
    for c in nb.cells:
        if 'remove_input' in c.metadata.get('tags', []): c.source = ''
    exporter = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    body, res = exporter.from_notebook_node(nb, resources={'output_files_dir': 'index_files'})
    nbs_rel = Path(cfg.nbs_path).relative_to(cfg.config_path)
    body = re.sub(r'\]\((?!\w+://)([^)#\s]+\.ipynb)', lambda m: f']({nbs_rel}/{m.group(1)}', body)   # links work from the repo root
    head = f"# {fm.get('title', cfg.title)}\n\n"
    if fm.get('description'): head += f"> {fm['description']}\n\n"
    head += "<!-- Generated from nbs/index.ipynb by scripts/build_docs.py: edit the notebook, not this file. -->\n\n"
    text = head + body.strip() + '\n'
    return re.sub(r'\n{3,}', '\n\n', text), res.get('outputs', {})   # figures of the landing page go beside README.md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--check-readme', action='store_true', help='fail if README.md differs from what index.ipynb gives')
    ap.add_argument('--force', action='store_true', help="re-process every notebook (ignore nbdev's _proc cache)")
    ap.add_argument('--no-site', action='store_true', help='only README.md')
    args = ap.parse_args(argv)
    cfg = get_config()
    digest = inputs_digest()   # taken before processing: a change made meanwhile leaves the site stale
    try: proc = process_notebooks(force=args.force, only=cfg.readme_nb if args.no_site else None)
    except Exception as e:   # e.g. a show_doc cell that fails: nbdev_docs stops at the same error
        cause = str(e.__cause__ or '').strip().splitlines()[-12:]
        print(f'\nnbdev\'s processing failed (nbdev_docs would fail the same way).\n{e}\n' + '\n'.join(cause), file=sys.stderr)
        return 2
    readme, figures = readme_markdown(proc)
    path = cfg.config_path/'README.md'
    if args.check_readme:
        old = path.read_text() if path.exists() else ''
        stale = [n for n, data in figures.items() if not (cfg.config_path/n).is_file() or (cfg.config_path/n).read_bytes() != data]
        if old != readme or stale:
            if stale: print(f'figures of README.md missing or different: {stale}')
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), readme.splitlines(True), 'README.md', 'from index.ipynb'))
            print('\nREADME.md is out of date: run `python scripts/build_docs.py` and commit README.md')
            return 1
        print('README.md is in sync with nbs/index.ipynb')
    else:
        path.write_text(readme)
        for n, data in figures.items(): (cfg.config_path/n).parent.mkdir(parents=True, exist_ok=True); (cfg.config_path/n).write_bytes(data)
        print(f'wrote {path}' + (f' and {len(figures)} figures' if figures else ''))
    if not args.no_site:
        out = Path(cfg.doc_path)
        pages = build_site(proc, out, digest)
        print(f'built {len(pages)} pages in {out}: ' + ', '.join(p['href'] for p in pages))
    return 0


if __name__ == '__main__':
    sys.exit(main())
