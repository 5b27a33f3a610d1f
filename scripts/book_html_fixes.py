"""Sphinx extension (loaded through _config.yml ``sphinx.local_extensions``): drop duplicated inline scripts.

Sphinx 7.4 adds the inline scripts that extensions register after the builder starts a second time when it
prepares writing (once with filename None, once with ''), so every page declared sphinx-thebe's
``const THEBE_JS_URL`` twice and the browser reported "Identifier 'THEBE_JS_URL' has already been declared".
This keeps the first copy of each script. The browser test (tests/browser) fails on any such console error.
"""

from __future__ import annotations


def _drop_duplicate_scripts(_app, _pagename, _templatename, context, _doctree):
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (str(getattr(script, "filename", script) or ""), sorted((k, str(v)) for k, v in attributes.items()))
        key = repr(key)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
