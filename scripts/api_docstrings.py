"""Sphinx extension for the API reference (book/api.md, loaded by _config.yml): docstrings print as written.

linft's docstrings write absolute values and norms as ``|x|``, which reStructuredText reads as a substitution
reference ("Undefined substitution referenced" under the strict build). No substitutions are defined for
docstrings, so every bar outside a literal or role is escaped.
"""

import re

_CODE = re.compile(r"(``.+?``|`[^`]+`)")


def escape_bars(app, what, name, obj, options, lines):  # noqa: ARG001 (the autodoc-process-docstring signature)
    """Escape ``|`` outside inline literals and roles, in place."""
    for i, line in enumerate(lines):
        if "|" in line:
            parts = _CODE.split(line)
            lines[i] = "".join(part if k % 2 else part.replace("|", r"\|") for k, part in enumerate(parts))


def setup(app):
    app.connect("autodoc-process-docstring", escape_bars, priority=600)  # after napoleon (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
