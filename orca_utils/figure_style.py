"""One look for every figure of the notebooks: a seaborn paper theme and one colour per model, teacher or variant.

`apply()` sets the theme (seaborn "paper" context, white grid, serif text, fonts embedded as text in PDF/SVG);
every figure function of `orca_utils` calls it before drawing. `color_for(label)` gives the colour of a series:

* the paper's models keep fixed colours wherever they appear (a label naming one of them, e.g. "gpt-4-0613",
  "paper: Orca-13B over Vicuna-13B (%)", takes that model's colour);
* our own models and stand-ins take the colour of their role, read from the label (or given as `role=`):
  untuned student, tuned student, stage-1 teacher, stage-2 teacher, and the answer_only / explanation /
  progressive variants of notebook 09; so notebook 04's student has one colour in 05, 06, 07 and 08 alike;
* anything else gets a stable colour from its label's hash (the same label, the same colour, run after run).

`hbars(ax, ...)` draws one series of horizontal bars with their intervals the same way everywhere (05/06's
relative-improvement figure, 07's): error bars where the interval is known, a missing value written "n/a".
`note_missing_ours(fig, values, reason)`: a figure whose own values are all missing (only the paper's bars and
"n/a" marks left) says so above the plot, with the reason read from its data, e.g. "ours: n/a, the judge's
replies could not be read (18 of 18 unparseable)".

No backend is chosen here: library code never switches matplotlib's backend (headless kernels and tests fall
back to Agg on their own).

Restyling without touching code (every notebook's kernel reads the same environment):
- `ORCA_FIGURE_STYLE=path/to/my.mplstyle`: a matplotlib style file applied on top of the theme (fonts, sizes, grid);
- `ORCA_FIGURE_COLORS=path/to/colors.json`: `{"tuned student": "#000000", "GPT-4": "#ff0000", ...}`, keys being
  roles or paper models (the keys of ROLE_COLORS and PAPER_COLORS).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

__all__ = ["PAPER_COLORS", "ROLE_COLORS", "FALLBACK", "PAPER_HATCH", "OURS_MISSING_GID", "apply", "color_for",
           "role_of", "hbars", "note_missing_ours"]

# The paper's models (Mukherjee et al., 2023): fixed, from the colour-blind-safe palette.
PAPER_COLORS = {
    "Orca-13B": "#0173b2",          # blue
    "ChatGPT": "#029e73",           # green
    "GPT-4": "#cc78bc",             # purple
    "Vicuna-13B": "#de8f05",        # orange
    "LLaMA-13B": "#ca9161",         # brown
    "text-davinci-003": "#949494",  # grey
}
# Our models and stand-ins, by role (distinct from the paper's colours above).
ROLE_COLORS = {
    "untuned student": "#56b4e9",   # sky blue: the base model before tuning
    "tuned student": "#d55e00",     # vermillion: notebook 04's student ("ours")
    "stage-1 teacher": "#66c2a5",   # light green (the paper's stage-1 teacher is ChatGPT)
    "stage-2 teacher": "#7b3294",   # dark purple (the paper's stage-2 teacher is GPT-4)
    "answer_only": "#999933",       # olive
    "explanation": "#882255",       # wine
    "progressive": "#117733",       # dark green
}
FALLBACK = ["#332288", "#44aa99", "#aa4499", "#ddcc77", "#661100", "#6699cc", "#888888", "#e7298a"]
PAPER_HATCH = "//"                  # bars that show the paper's numbers (or a second reading of ours)
OURS_MISSING_GID = "ours-missing"   # gid of the note a figure without any value of ours carries (kept in its SVG)

_PAPER_PATTERNS = [  # (pattern, paper model); matched case-insensitively, earliest match in the label wins
    (r"orca[-\s]?13b|\borca\b(?![-\s]tun)", "Orca-13B"),
    (r"chatgpt|gpt-3\.5|gpt-35", "ChatGPT"),
    (r"gpt-?4", "GPT-4"),
    (r"vicuna", "Vicuna-13B"),
    (r"llama[-\s]?13b|\bllama\b", "LLaMA-13B"),
    (r"text-davinci-003|davinci", "text-davinci-003"),
]
_ROLE_PATTERNS = [  # checked in this order, before the paper's models (a student "tuned on GPT-4" is ours)
    ("tuned student", r"orca[-\s]tun|orca tuning|tuned by 04|\bstudent tuned|\btuned student|notebook 04|"
                      r"\btuned on\b"),
    ("untuned student", r"untuned|\(base\)|base model|not tuned|before tuning"),
    ("answer_only", r"answer[_\s-]?only"),
    ("progressive", r"progressive"),
    ("explanation", r"explanation"),
    ("stage-1 teacher", r"stage[-_\s]?1\b|stage[-_\s]?one"),
    ("stage-2 teacher", r"stage[-_\s]?2\b|stage[-_\s]?two"),
]


def role_of(label: str) -> str | None:
    """The role (a key of ROLE_COLORS) or paper model (a key of PAPER_COLORS) a label names, else None."""
    text = str(label)
    for role, pattern in _ROLE_PATTERNS:
        if re.search(pattern, text, re.I):
            return role
    hits = [(m.start(), model) for pattern, model in _PAPER_PATTERNS if (m := re.search(pattern, text, re.I))]
    return min(hits)[1] if hits else None


def color_for(label: str, role: str | None = None) -> str:
    """The colour (hex) of a model, teacher or variant: fixed for the paper's models, by role for ours, else
    stable from the label. `role` (a key of ROLE_COLORS or PAPER_COLORS) overrides what the label says."""
    key = role or role_of(label)
    custom = _custom_colors()
    if key in custom:
        return custom[key]
    if key in PAPER_COLORS:
        return PAPER_COLORS[key]
    if key in ROLE_COLORS:
        return ROLE_COLORS[key]
    digest = int(hashlib.md5(str(label).strip().lower().encode()).hexdigest(), 16)
    return FALLBACK[digest % len(FALLBACK)]


def apply() -> None:
    """The paper theme: seaborn "paper" context, white grid, serif fonts, text kept as text in PDF and SVG."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font="serif", rc={
        "font.serif": ["DejaVu Serif", "Times New Roman", "Times"],
        "pdf.fonttype": 42, "ps.fonttype": 42,         # TrueType embedded: selectable text in the PDFs
        "svg.fonttype": "path",                         # SVG glyphs as paths: identical wherever it is shown
        "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
        "legend.fontsize": 7, "legend.frameon": False, "figure.dpi": 100, "savefig.dpi": 150,
        "axes.spines.top": False, "axes.spines.right": False, "grid.linewidth": 0.5,
    })
    style = os.environ.get("ORCA_FIGURE_STYLE")
    if style:
        import matplotlib.pyplot as plt

        if not Path(style).is_file():
            raise FileNotFoundError(f"ORCA_FIGURE_STYLE={style}: no such matplotlib style file")
        plt.style.use(style)


def _custom_colors() -> dict[str, str]:
    """`ORCA_FIGURE_COLORS` (a JSON file of role or paper model -> colour), or {}; unknown keys are an error."""
    path = os.environ.get("ORCA_FIGURE_COLORS")
    if not path:
        return {}
    try:
        colors = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"ORCA_FIGURE_COLORS={path}: not a readable JSON object ({exc})") from None
    unknown = sorted(set(colors) - set(ROLE_COLORS) - set(PAPER_COLORS))
    if unknown:
        raise ValueError(f"ORCA_FIGURE_COLORS={path}: unknown keys {unknown}; expected roles {sorted(ROLE_COLORS)} "
                         f"or paper models {sorted(PAPER_COLORS)}")
    return colors


def hbars(ax, y, values, lo, hi, height, label, color=None, hatch=None):
    """Horizontal bars with error bars where the interval is known; a missing value is written "n/a", not drawn.
    Returns the legend handle (a series with no value at all still gets its own colour in the legend)."""
    import numpy as np
    from matplotlib.patches import Patch

    v, lo, hi = np.asarray(values, float), np.asarray(lo, float), np.asarray(hi, float)
    have = ~np.isnan(v)
    ax.barh(np.asarray(y)[have], v[have], height=height, label=label, color=color, hatch=hatch,
            edgecolor="white" if hatch else None, linewidth=0)
    known = have & ~np.isnan(lo) & ~np.isnan(hi)
    if known.any():
        err = np.clip([v[known] - lo[known], hi[known] - v[known]], 0, None)     # rounding may cross the bar
        ax.errorbar(v[known], np.asarray(y)[known], xerr=err, fmt="none",
                    ecolor="0.2", elinewidth=0.8, capsize=2)
    for yy in np.asarray(y)[~have]:
        ax.text(0, yy, " n/a", va="center", fontsize=6, color="0.3")
    return Patch(facecolor=color, hatch=hatch, edgecolor="white" if hatch else None, label=label)


def note_missing_ours(fig, values, reason: str) -> str:
    """When every one of our values in `fig` is missing (None or NaN, or there is none), say so above the plot:
    "ours: n/a, <reason>", a line of the figure itself (in its PNG, PDF and SVG, gid `OURS_MISSING_GID`), so the
    paper's bars beside our "n/a" marks are not read as a drawing error. Returns the note; "" (nothing drawn) when
    any value of ours is there. `reason` says why, read from the data behind the figure (never guessed)."""
    if any(v is not None and float(v) == float(v) for v in values):         # NaN != NaN
        return ""
    note = f"ours: n/a, {reason}"
    fig.text(0.5, 1.0, note, ha="center", va="bottom", fontsize=8, color="#a00000", gid=OURS_MISSING_GID)
    return note
