"""The run report: every notebook's tables and figures gathered into one paper-style HTML page (and a PDF).

`build_report(profile_dir)` reads `outputs/<profile>/` (each notebook's `tab_*.csv` + `.md`, `fig_*.png`,
`metrics.json`, `run_info.json`, and the run's `manifest.json`) and writes `outputs/<profile>/report/`:
`report.html` (figures copied into `report/figures/`, referenced by relative links, so the folder opens in any
browser and can be moved as a whole), `report.pdf` when asked, and `sections.json` (what was found and what is
missing). Nothing is ever invented: a notebook without outputs is listed as MISSING with the command that produces
it; tables are shown as the notebooks saved them (those of 05-08 carry the paper's numbers beside ours, from
`orca_utils.reference`; paper numbers recalled rather than checked are marked "(unverified)").

The report reads like the paper: sections in the paper's order (explanation tuning §3, open-ended generation §5,
reasoning §6, safety §7, then our explanation-vs-answer experiment), numbered and captioned tables and figures, a
table of contents and the run manifest as an appendix. The HTML is written directly from the notebooks' CSV files
(never parsed back), and `report.pdf` is that same HTML typeset by WeasyPrint: tables stay text, and figures are
embedded as vector graphics (the SVG `Run.save_fig` writes beside each PNG/PDF; outputs saved before it did fall
back to the PNG, and the summary lists them under `raster_figures`). In the PDF a heading, the lines set under a
section's heading and a table's caption stay with what follows them (none ends a page), and a figure is never split
(`_KEEP_CSS`).

Long tables are capped, in the HTML and so in the PDF: an example table (wrong answers, generations, judge
verdicts, continuations: `tab_*_errors`, `tab_answers` ...) shows its first `example_rows` rows with long texts cut
at `MAX_CELL_CHARS` characters, any other table its first `max_rows`; a line under it says "N of M rows shown; full
table: <relative link to the notebook's CSV>". Results tables (per-task accuracies) fit under `max_rows` whole.
Floats are shown to at most 4 decimals (the CSVs keep every digit); figures keep their aspect ratio in the PDF.

Provenance at a glance: each section carries a badge read from the structured `sources` of its `metrics.json`
(`orca_utils.provenance`; each model, teacher, judge or data source with a `kind` of none / stand_in / real, as the
notebook's params decided it; checked by `contracts.check_sources`), never from the provenance's words: "no model"
when every source is `none` (01's sampling, 03's packing), "offline stand-in" when any source is a stand-in,
"real model" only when its models are all real, "unknown" when the notebook saved no `sources`.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .contracts import SOURCES_FIELD, check_sources
from .provenance import BADGES
from .provenance import badge as provenance_badge
from .schemas import NOTEBOOK_SCHEMAS

__all__ = ["SECTIONS", "PAPER_ORDER", "Section", "collect_sections", "build_report", "section_badge",
           "cap_table", "EXAMPLE_TABLES", "sections_table", "summary_metrics"]

# notebook -> (section title, what the paper shows there); the report numbers them in PAPER_ORDER
SECTIONS = {
    "01_sampling": ("Sampling FLAN-v2 with the 16 system messages",
                    "system messages table, sampling quotas, contamination check (paper §3.1, Table 2)"),
    "02_augmentation": ("Teacher augmentation", "teacher responses and their status (paper §3.1.3)"),
    "03_packing": ("Tokenization and packing", "length distributions and packing efficiency (paper §3.2)"),
    "04_training": ("Progressive training", "training curves of both stages (paper §3.2)"),
    "05_agieval": ("AGIEval, zero-shot", "beside the paper's Table 4 / Figure 5 (paper §6.1)"),
    "06_bbh": ("Big-Bench Hard, zero-shot", "beside the paper's Table 6 / Figure 9 (paper §6.2)"),
    "07_open_ended": ("Open-ended generation", "beside the paper's Figures 3-4, GPT-4 as judge (paper §5)"),
    "08_safety": ("Safety: TruthfulQA and ToxiGen", "beside the paper's §7"),
    "09_explanation_vs_answer": ("Explanation traces vs answer-only, on a laptop",
                                 "the paper's central claim, tested at small scale"),
    "10_report": ("Report", ""),
}
# The paper's order: explanation tuning (§3), open-ended generation (§5), reasoning (§6), safety (§7); then ours.
PAPER_ORDER = ["01_sampling", "02_augmentation", "03_packing", "04_training", "07_open_ended", "05_agieval",
               "06_bbh", "08_safety", "09_explanation_vs_answer"]
# Example tables (rows are examples, not results): capped hard. Everything else only past MAX_ROWS.
EXAMPLE_TABLES = re.compile(r"_(errors|answers|verdicts|generations|continuations|examples)$")
EXAMPLE_ROWS = 8
MAX_ROWS = 40
MAX_CELL_CHARS = 120
WIDE_COLUMNS = 8                # a table of more columns is set on a landscape page


def section_badge(sources: list[dict] | None) -> str:
    """A section's badge from its `metrics.json` `sources` (None: none saved): see `provenance.badge`."""
    return provenance_badge(sources)


@dataclass
class Section:
    notebook: str
    title: str
    note: str
    status: str                                   # "ok" | "missing" | "failed" | "running"
    tables: list[dict] = field(default_factory=list)     # name, frame (None: unreadable), error, provenance
    figures: list[dict] = field(default_factory=list)    # name, src (relative), file, vector
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    sources: list[dict] | None = None                    # metrics.json's `sources` (None: not saved)
    badge: str = "unknown"
    origin: str = ""                                     # the reused run folder its outputs came from ("": this run)


def _table_provenance(md: Path) -> str:
    if not md.exists():
        return ""
    lines = [ln.strip() for ln in md.read_text().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last.strip("_") if last.startswith("_") else ""


def _outputs_of(nb: str, root: Path, reuse: tuple[Path, ...]) -> tuple[Path, str]:
    """(the folder holding notebook `nb`'s outputs, "" or the reused run folder it is in): this run's own folder
    first, then the first reused run (`--reuse`) that has it."""
    own = root / nb
    if (own / "run_info.json").exists() or (own / "metrics.json").exists():
        return own, ""
    for other in reuse:
        if (Path(other) / nb / "run_info.json").exists() or (Path(other) / nb / "metrics.json").exists():
            return Path(other) / nb, str(other)
    return own, ""


def collect_sections(root: Path, report_dir: Path, reuse: tuple[Path, ...] = ()) -> list[Section]:
    """One Section per notebook, figures copied into `report_dir/figures/`; a notebook this run did not run is
    read from the first reused run folder (`reuse`) that holds it, and its section says so."""
    fig_dir = report_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for nb in NOTEBOOK_SCHEMAS:
        title, note = SECTIONS.get(nb, (nb, ""))
        folder, origin = _outputs_of(nb, root, tuple(reuse))
        info = json.loads((folder / "run_info.json").read_text()) if (folder / "run_info.json").exists() else {}
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
        status = "missing" if not metrics and not info else info.get("status", "ok" if metrics else "missing")
        sources = metrics.get(SOURCES_FIELD)
        sec = Section(nb, title, note, status, metrics=metrics.get("metrics", {}),
                      provenance=metrics.get("provenance", {}),
                      sources=None if sources is None else check_sources(sources, folder / "metrics.json"),
                      origin=origin)
        for csv in sorted(folder.glob("tab_*.csv")) if folder.exists() else []:
            frame, error = None, ""
            try:
                frame = pd.read_csv(csv)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                error = str(exc)
            sec.tables.append({"name": csv.stem, "frame": frame, "error": error,
                               "provenance": _table_provenance(csv.with_suffix(".md")),
                               "csv": Path(os.path.relpath(csv, report_dir)).as_posix()})
        for png in sorted(folder.glob("fig_*.png")) if folder.exists() else []:
            svg = png.with_suffix(".svg")           # vector copy for the report, when Run.save_fig wrote one
            source = svg if svg.exists() else png
            target = fig_dir / f"{nb}__{source.name}"
            shutil.copyfile(source, target)
            sec.figures.append({"name": png.stem, "src": f"figures/{target.name}", "file": target,
                                "vector": source.suffix == ".svg"})
        sec.badge = section_badge(sec.sources)
        out.append(sec)
    return out


# Keep a heading with what follows it: a section's heading, the lines set under it (notebook, provenance) and a
# table's caption never end a page; a figure (image and caption) is never split. WeasyPrint honours break-after: avoid
# between block siblings and on a table's caption (the legacy page-break-* names are its aliases, kept for browsers).
# A wide table starts a landscape page (a forced break): the heading of a section that opens with one goes with it.
_KEEP_CSS = """h1,h2,h3,h2+p.prov,h2+p.prov+p.prov,table.tab caption{break-after:avoid;page-break-after:avoid}
figure,table.tab caption,p.prov{break-inside:avoid;page-break-inside:avoid}.wide-head{page:wide}"""
_CSS = """@page{size:A4;margin:18mm 16mm 20mm;@bottom-center{content:counter(page);font:9pt Georgia,serif;color:#555}}
@page wide{size:A4 landscape}
body{font-family:Georgia,"DejaVu Serif",serif;max-width:1000px;margin:2em auto;color:#222;line-height:1.4}
h1{font-size:1.7em}h2{border-bottom:1px solid #aaa;margin-top:2em}h2.appendix{page-break-before:always}
.tab-wrap{margin:1em 0 1.4em}.tab-wrap.wide{page:wide}.wide table.tab,.compact table.tab{font-size:9.5px}
table.tab{border-collapse:collapse;font:11px/1.3 "DejaVu Sans",Helvetica,sans-serif;margin:.3em 0;
border-top:1.5px solid #222;border-bottom:1.5px solid #222}
table.tab caption{caption-side:top;text-align:left;font:12px Georgia,serif;padding-bottom:4px}
table.tab thead th{border-bottom:1px solid #222;font-weight:bold;vertical-align:bottom}
table.tab td,table.tab th{padding:2px 6px;text-align:left}table.tab td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}
table.tab .paper{background:#eef3fa}table.tab td.unverified{color:#8a5a00;font-style:italic}
table.tab td.na{color:#999}table.tab tbody tr:nth-child(even){background:#f7f7f7}
table.tab tbody tr:nth-child(even) .paper{background:#e3ebf6}
figure{margin:1em 0}figure img{max-width:100%;max-height:200mm}
figcaption,caption .num-label{font-size:12px}.label{font-weight:bold}
.badge{font:12px sans-serif;padding:2px 8px;border-radius:8px;margin-left:.5em;vertical-align:middle}
.standin{background:#ffe9b3}.real{background:#c8f0c8}.nomodel{background:#e3ebf6}.unknown{background:#ddd}
.missing{color:#a00;font-weight:bold}.prov{font-size:11px;color:#555;font-style:italic}
.tab-note{font-size:11px;color:#555;margin:.2em 0 0}
nav.toc ul{list-style:none;padding-left:0}nav.toc li{margin:.15em 0}nav.toc ul ul{padding-left:1.5em;font-size:.9em}
@media print{body{max-width:none;margin:0;font-size:10.5pt}
nav.toc a::after{content:leader('.') target-counter(attr(href),page)}nav.toc a{color:#222;text-decoration:none}
figure img{width:auto;max-width:100%;max-height:170mm}.tab-wrap{page-break-inside:auto}
table.tab thead{display:table-header-group}}
""" + _KEEP_CSS

_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?%?$")


def _badge(text: str) -> str:
    cls = {BADGES["stand_in"]: "standin", BADGES["real"]: "real", BADGES["none"]: "nomodel"}.get(text, "unknown")
    return f"<span class='badge {cls}'>{html.escape(text)}</span>"


def _caption_text(name: str) -> str:
    """`tab_bbh_accuracy` -> "bbh accuracy"."""
    return re.sub(r"^(tab|fig)_", "", name).replace("_", " ")


def _number_text(value: float) -> str:
    """A float as the report shows it: at most 4 decimals (79.34506856227625 -> 79.3451, 12.5 -> 12.5, 100.0 ->
    100.0), tiny values in scientific notation (1.2e-05); the CSV keeps every digit."""
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    text = f"{value:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _cell(value, column: str) -> str:
    """One table cell: numbers right-aligned (floats shown to 4 decimals at most), the paper's columns shaded,
    unverified paper numbers marked."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        text = ""
    else:
        text = _number_text(float(value)) if isinstance(value, float) else str(value)
    classes = []
    if _NUMBER.match(text.strip()) or re.match(r"^([-+]?\d+(\.\d+)?\s*)?\[[-+\d.]+, [-+\d.]+\]$", text.strip()):
        # 41.7, 12%, [30.1, 52.3], 41.7 [30.1, 52.3]
        classes.append("num")
    if column.lower().startswith("paper"):
        classes.append("paper")
    if "(unverified)" in text:
        classes += ["unverified", "num"]
    if text.strip().lower() in {"not available", "n/a"}:
        classes.append("na")
    attr = f" class='{' '.join(dict.fromkeys(classes))}'" if classes else ""
    return f"<td{attr}>{html.escape(text)}</td>"


def table_html(frame: pd.DataFrame, caption: str, label: str | None = None, table_id: str | None = None,
               note: str = "", compact: bool = False) -> str:
    """A captioned, aligned table written straight from a DataFrame (no HTML parsing anywhere); `note` (HTML) is
    set under it; `compact` sets it in a smaller font (example tables)."""
    columns = [str(c) for c in frame.columns]
    wide = (" wide" if len(columns) > WIDE_COLUMNS else "") + (" compact" if compact else "")
    head = "".join(f"<th{' class=paper' if c.lower().startswith('paper') else ''}>"     # headers may break at _
                   f"{html.escape(c).replace('_', '_<wbr>')}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(v, c) for v, c in zip(row, columns)) + "</tr>"
                   for row in frame.itertuples(index=False, name=None))
    cap = (f"<span class='label'>{html.escape(label)}.</span> " if label else "") + html.escape(caption)
    ident = f" id='{table_id}'" if table_id else ""
    return (f"<div class='tab-wrap{wide}'{ident}><table class='tab'><caption>{cap}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"{f'<p class=tab-note>{note}</p>' if note else ''}</div>")


def cap_table(frame: pd.DataFrame, name: str, example_rows: int = EXAMPLE_ROWS, max_rows: int = MAX_ROWS
              ) -> tuple[pd.DataFrame, int, bool]:
    """(the rows to show, the table's row count, whether long texts were cut): an example table (EXAMPLE_TABLES)
    keeps its first `example_rows` rows, texts cut at MAX_CELL_CHARS; any other table its first `max_rows`."""
    example = bool(EXAMPLE_TABLES.search(name))
    shown = frame.head(example_rows if example else max_rows)
    cut = False
    if example:
        def clip(value):
            nonlocal cut
            if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
                cut = True
                return value[:MAX_CELL_CHARS].rstrip() + "…"
            return value

        shown = shown.apply(lambda column: column.map(clip)) if len(shown) else shown
    return shown, len(frame), cut


def _cap_note(shown: int, total: int, cut: bool, csv: str) -> str:
    """"N of M rows shown; full table: <link>" (and whether long texts were cut); "" when nothing was left out."""
    if shown >= total and not cut:
        return ""
    parts = [f"{shown} of {total} rows shown" if shown < total else f"all {total} rows shown",
             *([f"long texts cut at {MAX_CELL_CHARS} characters"] if cut else [])]
    link = html.escape(csv)
    return f"{'; '.join(parts)}; full table: <a href='{link}'>{link}</a>"


def _manifest_html(manifest: dict) -> str:
    if not manifest:
        return "<p class='missing'>MISSING: no manifest.json (the pipeline runner writes it)</p>"
    rows = [{"notebook": k, "status": v.get("status"), "started": v.get("started"), "finished": v.get("finished"),
             "duration_s": v.get("duration_s"), "params_hash": v.get("params_hash"), "seed": v.get("seed"),
             "error": v.get("error", "")} for k, v in manifest.get("notebooks", {}).items()]
    git = manifest.get("git", {})
    head = (f"<p>profile <b>{html.escape(str(manifest.get('profile')))}</b> · params "
            f"{html.escape(str(manifest.get('params_file')))} · git {html.escape(str(git.get('commit', '?'))[:12])}"
            f"{' (dirty)' if git.get('dirty') else ''} · started {html.escape(str(manifest.get('run_started')))} · "
            f"finished {html.escape(str(manifest.get('run_finished')))} · status "
            f"{html.escape(str(manifest.get('status')))}</p>")
    versions = " · ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items())
    frame = pd.DataFrame(rows, columns=["notebook", "status", "started", "finished", "duration_s", "params_hash",
                                        "seed", "error"])
    return head + f"<p class='prov'>{html.escape(versions)}</p>" + \
        table_html(frame, "Notebooks of this run: status, timing, params hash and seed.", "Table A1")


def _section_html(sec: Section, number: int, profile: str, counters: dict, example_rows: int = EXAMPLE_ROWS,
                  max_rows: int = MAX_ROWS) -> str:
    # a wide first table is set on a landscape page: its heading and the lines under it go there with it
    first = sec.tables[0]["frame"] if sec.tables else None
    wide = " wide-head" if sec.status == "ok" and first is not None and len(first.columns) > WIDE_COLUMNS else ""
    parts = [f"<h2 id='{sec.notebook}'{f' class={wide.strip()}' if wide else ''}>{number}. "
             f"{html.escape(sec.title)}{_badge(sec.badge)}</h2>",
             f"<p class='prov{wide}'>notebook {html.escape(sec.notebook)}"
             f"{' · ' + html.escape(sec.note) if sec.note else ''}</p>"]
    if sec.status != "ok":
        label = "MISSING" if sec.status == "missing" else "INCOMPLETE"
        parts.append(f"<p class='missing'>{label}: {sec.notebook} has "
                     f"{'no outputs' if sec.status == 'missing' else 'status ' + sec.status} "
                     f"(run <code>python -m orca_utils run --profile {html.escape(profile)} --only "
                     f"{sec.notebook[:2]}</code>)</p>")
        if sec.status == "missing":
            return "\n".join(parts)
    if sec.origin:
        parts.append(f"<p class='prov{wide}'>outputs reused from the run in {html.escape(sec.origin)}</p>")
    if sec.provenance:
        parts.append(f"<p class='prov{wide}'>" + " · ".join(f"{html.escape(k)}: {html.escape(str(v))}"
                                                          for k, v in sec.provenance.items()) + "</p>")
    if not sec.tables and not sec.figures:
        parts.append("<p class='missing'>no tables or figures saved by this notebook</p>")
    for t in sec.tables:
        counters["table"] += 1
        t["number"] = counters["table"]
        caption = _caption_text(t["name"]) + (f" ({t['provenance']})" if t["provenance"] else "")
        if t["frame"] is None:
            parts.append(f"<p class='missing' id='table-{t['number']}'>Table {t['number']}: unreadable table "
                         f"{html.escape(t['name'])}: {html.escape(t['error'])}</p>")
        else:
            shown, total, cut = cap_table(t["frame"], t["name"], example_rows, max_rows)
            t["shown"], t["rows"] = len(shown), total
            parts.append(table_html(shown, caption, f"Table {t['number']}", f"table-{t['number']}",
                                    note=_cap_note(len(shown), total, cut, t["csv"]),
                                    compact=bool(EXAMPLE_TABLES.search(t["name"]))))
    for f in sec.figures:
        counters["figure"] += 1
        f["number"] = counters["figure"]
        parts.append(f"<figure id='figure-{f['number']}'><img src='{html.escape(f['src'])}' "
                     f"alt='{html.escape(f['name'])}'><figcaption><span class='label'>Figure {f['number']}.</span> "
                     f"{html.escape(sec.title)}: {html.escape(_caption_text(f['name']))} "
                     f"<span class='prov'>(provenance under the plot)</span></figcaption></figure>")
    return "\n".join(parts)


def _toc_html(sections: list[Section]) -> str:
    items = []
    for number, s in enumerate(sections, 1):
        sub = "".join(f"<li><a href='#table-{t['number']}'>Table {t['number']}: {html.escape(_caption_text(t['name']))}"
                      f"</a></li>" for t in s.tables) + \
            "".join(f"<li><a href='#figure-{f['number']}'>Figure {f['number']}: "
                    f"{html.escape(_caption_text(f['name']))}</a></li>" for f in s.figures)
        items.append(f"<li><a href='#{s.notebook}'>{number}. {html.escape(s.title)}</a> · {s.status} "
                     f"{_badge(s.badge)}{'<ul>' + sub + '</ul>' if sub else ''}</li>")
    items.append("<li><a href='#manifest'>Appendix A. Run manifest</a></li>")
    return "<nav class='toc' id='contents'><h2>Contents</h2><ul>" + "".join(items) + "</ul></nav>"


def _write_pdf(path: Path, page: str, base_dir: Path) -> None:
    """Typeset the report's HTML with WeasyPrint (tables stay text; SVG figures stay vector)."""
    import logging

    from weasyprint import HTML

    logging.getLogger("weasyprint").setLevel(logging.ERROR)        # unsupported-CSS chatter, not errors
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    HTML(string=page, base_url=str(base_dir)).write_pdf(path)


def _document(profile: str, body: list[str]) -> str:
    """The report's HTML page: its style (`_CSS`) and `body`'s parts."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Orca notebooks report "
            f"({html.escape(profile)})</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) +
            "\n</body></html>\n")


def build_report(root: Path, pdf: bool = False, profile: str | None = None, example_rows: int = EXAMPLE_ROWS,
                 max_rows: int = MAX_ROWS, report_dir: Path | None = None, reuse: tuple[Path, ...] = ()) -> dict:
    """Write `root/report/report.html` (+ `report.pdf`); return a summary of what was found and what is missing:
    per section its status, badge and counts, the figures' relative paths (`images`), the figures that had no
    vector copy (`raster_figures`), the tables shown in part (`capped_tables`: name -> [rows shown, rows]) and
    the paths written. Example tables show `example_rows` rows, other tables at most `max_rows`. `report_dir`:
    write the report there instead of `root/report` (links to the notebooks' CSVs stay relative to it). `reuse`:
    the run folders this run read upstream outputs from; a notebook it did not run is reported from there."""
    root = Path(root)
    report_dir = Path(report_dir) if report_dir is not None else root / "report"
    if report_dir.exists():
        shutil.rmtree(report_dir / "figures", ignore_errors=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").exists() else {}
    profile = profile or manifest.get("profile") or root.name
    found = {s.notebook: s for s in collect_sections(root, report_dir, reuse) if s.notebook != "10_report"}
    sections = [found[nb] for nb in PAPER_ORDER if nb in found] + \
        [s for nb, s in found.items() if nb not in PAPER_ORDER]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    counters = {"table": 0, "figure": 0}
    bodies = [_section_html(s, n, profile, counters, example_rows, max_rows)               # numbers tables/figures
              for n, s in enumerate(sections, 1)]
    body = [f"<h1>Orca, reproduced as notebooks: run report ({html.escape(profile)})</h1>",
            f"<p>Generated {stamp}. Sections follow the paper (Mukherjee et al., 2023, arXiv 2306.02707): "
            f"explanation tuning (§3), open-ended generation (§5), reasoning (§6), safety (§7), then our "
            f"explanation-vs-answer experiment. Each section carries a badge, from the kinds of the models, "
            f"teachers, judges and data its notebook saved: {_badge(BADGES['none'])} no model produced its numbers, "
            f"{_badge(BADGES['stand_in'])} at least one offline stand-in did (never to be read as GPT-4, ChatGPT or "
            f"LLaMA-13B), {_badge(BADGES['real'])} only real teachers and models did, {_badge(BADGES['unknown'])} "
            f"no sources saved. In the tables, the paper's columns are shaded; paper numbers marked (unverified) "
            f"were recalled, not checked against the paper.</p>",
            _toc_html(sections), *bodies,
            "<h2 id='manifest' class='appendix'>Appendix A. Run manifest: what ran, where, when, how long</h2>",
            _manifest_html(manifest)]
    page = _document(profile, body)
    html_path = report_dir / "report.html"
    html_path.write_text(page)
    figures = [f for s in sections for f in s.figures]
    summary = {"html": str(html_path), "sections": {s.notebook: {"status": s.status, "badge": s.badge,
                                                                 "tables": len(s.tables), "figures": len(s.figures),
                                                                 "reused_from": s.origin}
                                                    for s in sections},
               "missing": [s.notebook for s in sections if s.status == "missing"],
               "images": [f["src"] for f in figures],
               "raster_figures": [f["src"] for f in figures if not f["vector"]],
               "capped_tables": {t["name"]: [t["shown"], t["rows"]] for s in sections for t in s.tables
                                 if t.get("shown", 0) < t.get("rows", 0)}}
    if pdf:
        _write_pdf(report_dir / "report.pdf", page, report_dir)
        summary["pdf"] = str(report_dir / "report.pdf")
    (report_dir / "sections.json").write_text(json.dumps(summary, indent=2))
    return summary


def sections_table(summary: dict) -> pd.DataFrame:
    """One row per section of `build_report`'s summary (index: notebook): status, badge, tables, figures."""
    return pd.DataFrame.from_dict(summary["sections"], orient="index")


def summary_metrics(summary: dict) -> tuple[dict, dict]:
    """(notebook 10's metrics from `build_report`'s summary: figures, tables, sections ok and missing; provenance)."""
    sections = sections_table(summary)
    metrics = {"report/figures": len(summary["images"]), "report/tables": int(sections["tables"].sum()),
               "report/sections_ok": int((sections["status"] == "ok").sum()),
               "report/sections_missing": len(summary["missing"])}
    from .provenance import Provenance, data_source

    return metrics, Provenance({"report": "gathered from this profile's notebook outputs; badges per section"},
                               sources=[data_source("this profile's notebook outputs")])   # no model of its own
