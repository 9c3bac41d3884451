"""Sphinx extension for the book's pages: clean scripts and widgets that typeset with the book's MathJax.

* sphinx-thebe registers its configuration script twice under Jupyter Book 1, so the page redeclares a ``const``
  and the browser logs an error. Duplicate script entries are dropped here.
* Only one search box per page (see :func:`_one_search_box`).
* The widget html-manager typesets labels through the MathJax 2 API (``MathJax.Hub.Queue``), while the book loads
  MathJax 3. ``mathjax-hub-shim.js`` (in ``book/_vendor``) provides that call on top of MathJax 3.
* Figures stay readable on a phone (see :func:`_readable_figures`).
"""
import re
from pathlib import Path

from aae_tutorial.figures import readable_width

IMAGE = re.compile(r'<img ([^>]*)src="((?:\.\./)*_images/([^"/]+\.png))"')


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = (getattr(js, "filename", str(js)) or "", getattr(js, "attributes", {}).get("body"))  # None == ""
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _one_search_box(app, config):
    """sphinx-book-theme 1.3 on pydata-sphinx-theme 0.17 also puts pydata's persistent search field into an otherwise
    empty top header, above the sidebar's own search box: keep only the sidebar's."""
    config.html_theme_options["navbar_persistent"] = []


def _readable_figures(app, pagename, templatename, context, doctree):
    """A figure shrinks with the column down to the width at which its smallest text is still 9 px
    (:func:`aae_tutorial.figures.readable_width`); below that its output box scrolls sideways (``book.css``)."""
    if "body" not in context:
        return
    sources = {dest: Path(app.srcdir, src) for src, dest in app.builder.images.items()}

    def floor(match: re.Match) -> str:
        source = sources.get(match[3])
        width = readable_width(source) if source and source.exists() else None
        style = f'style="min-width: {width}px" ' if width else ""
        return f'<img {match[1]}{style}src="{match[2]}"'

    context["body"] = IMAGE.sub(floor, context["body"])


def setup(app):
    app.connect("config-inited", _one_search_box)
    app.add_js_file("mathjax-hub-shim.js", priority=1000)  # after MathJax's own configuration script
    app.add_css_file("book.css")
    app.connect("html-page-context", _readable_figures)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
