"""Sphinx extension for the book's pages: clean scripts and widgets that typeset with the book's MathJax.

* sphinx-thebe registers its configuration script twice under Jupyter Book 1, so the page redeclares a ``const``
  and the browser logs an error. Duplicate script entries are dropped here.
* Only one search box per page (see :func:`_one_search_box`).
* The widget html-manager typesets labels through the MathJax 2 API (``MathJax.Hub.Queue``), while the book loads
  MathJax 3. ``mathjax-hub-shim.js`` (in ``book/_vendor``) provides that call on top of MathJax 3.
"""


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


def setup(app):
    app.connect("config-inited", _one_search_box)
    app.add_js_file("mathjax-hub-shim.js", priority=1000)  # after MathJax's own configuration script
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
