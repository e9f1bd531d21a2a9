"""leaderboard.tex: the headline table as a LaTeX table (booktabs) for a paper to \\input.

Model and dataset names carry underscores and brackets (prithvi_tiny [frozen]), metric labels
arrows: every text is escaped, and the symbols the page writes in Unicode become math, so the
file compiles with pdflatex's default input encoding and no package but booktabs.
"""

from __future__ import annotations

import re

# LaTeX's special characters, and the Unicode the page's cells use.
_ESCAPE = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "×": r"$\times$",
    "τ": r"$\tau$",
}
_SPECIAL = re.compile("|".join(re.escape(k) for k in _ESCAPE))


def escape(text: str) -> str:
    # Any other non-ASCII character would stop pdflatex without a font for it: dropped to '?'.
    escaped = _SPECIAL.sub(lambda m: _ESCAPE[m.group()], str(text))
    return escaped.encode("ascii", "replace").decode()


def table(header: list[str], body: list[list[tuple[str, bool]]], caption: str) -> str:
    """A table environment; the preamble needs \\usepackage{booktabs}."""
    spec = "l" + "r" * (len(header) - 1)
    lines = [
        "% bench's leaderboard table: \\input{leaderboard} in a document with \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\caption{{{escape(caption)}}}",
        "\\label{tab:leaderboard}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(escape(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    for line in body:
        cells = [f"\\textbf{{{escape(text)}}}" if bold and text else escape(text) for text, bold in line]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)
