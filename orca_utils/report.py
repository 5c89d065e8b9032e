"""The run report: every notebook's tables and figures gathered into one paper-style HTML page (and a PDF).

`build_report(profile_dir)` reads `outputs/<profile>/` (each notebook's `tab_*.csv` + `.md`, `fig_*.png`,
`metrics.json`, `run_info.json`, and the run's `manifest.json`) and writes `outputs/<profile>/report/`:
`report.html` (figures copied into `report/figures/`, referenced by relative links, so the folder opens in any
browser and can be moved as a whole), `report.pdf` when asked (matplotlib only: text pages and figure pages), and
`sections.json` (what was found and what is missing). Nothing is ever invented: a notebook without outputs is
listed as MISSING with the command that produces it; tables are shown as the notebooks saved them (those of 05-08
carry the paper's numbers beside ours, from `orca_utils.reference`).

Provenance at a glance: each section carries a badge, "offline stand-in" when its provenance (the `provenance`
of `metrics.json` and the line under each table) names a stand-in (SmolLM2, a data or symbolic teacher, a local
server, offline), "real teacher/model" otherwise, "unknown" when the notebook saved none.
"""
from __future__ import annotations

import html
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .schemas import NOTEBOOK_SCHEMAS

__all__ = ["SECTIONS", "Section", "collect_sections", "build_report", "classify_provenance"]

# notebook -> (section title, what the paper shows there)
SECTIONS = {
    "01_sampling": ("1. Sampling FLAN-v2 with the 16 system messages",
                    "system messages table, sampling quotas, contamination check (paper §3.1, Table 2)"),
    "02_augmentation": ("2. Teacher augmentation", "teacher responses and their status (paper §3.1.3)"),
    "03_packing": ("3. Tokenization and packing", "length distributions and packing efficiency (paper §3.2)"),
    "04_training": ("4. Progressive training", "training curves of both stages (paper §3.2)"),
    "05_agieval": ("5. AGIEval, zero-shot", "beside the paper's Table 4 / Figure 5"),
    "06_bbh": ("6. Big-Bench Hard, zero-shot", "beside the paper's Table 6 / Figure 9"),
    "07_open_ended": ("7. Open-ended generation", "beside the paper's Figures 3-4 (GPT-4 judge)"),
    "08_safety": ("8. Safety: TruthfulQA and ToxiGen", "beside the paper's §7"),
    "09_explanation_vs_answer": ("9. Explanation traces vs answer-only, on a laptop",
                                 "the paper's central claim, tested at small scale"),
    "10_report": ("10. Report", ""),
}
_STANDIN = re.compile(r"stand-in|offline|smollm|symbolic|data teacher|local server|fake|tiny|placeholder|"
                      r"char-level|task tokenizer|trained here", re.I)


def classify_provenance(texts: list[str]) -> str:
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        return "unknown"
    return "offline stand-in" if any(_STANDIN.search(t) for t in texts) else "real teacher/model"


@dataclass
class Section:
    notebook: str
    title: str
    note: str
    status: str                                   # "ok" | "missing" | "failed" | "running"
    tables: list[dict] = field(default_factory=list)     # name, html, provenance
    figures: list[dict] = field(default_factory=list)    # name, src (relative), provenance
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    badge: str = "unknown"


def _table_provenance(md: Path) -> str:
    if not md.exists():
        return ""
    lines = [ln.strip() for ln in md.read_text().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last.strip("_") if last.startswith("_") else ""


def collect_sections(root: Path, report_dir: Path) -> list[Section]:
    """One Section per notebook, figures copied into `report_dir/figures/`."""
    fig_dir = report_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for nb in NOTEBOOK_SCHEMAS:
        title, note = SECTIONS.get(nb, (nb, ""))
        folder = root / nb
        info = json.loads((folder / "run_info.json").read_text()) if (folder / "run_info.json").exists() else {}
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
        status = "missing" if not metrics and not info else info.get("status", "ok" if metrics else "missing")
        sec = Section(nb, title, note, status, metrics=metrics.get("metrics", {}),
                      provenance=metrics.get("provenance", {}))
        for csv in sorted(folder.glob("tab_*.csv")) if folder.exists() else []:
            try:
                frame = pd.read_csv(csv)
                table_html = frame.to_html(index=False, border=0, classes="tab", na_rep="", escape=True)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                table_html = f"<p class='missing'>unreadable table {html.escape(csv.name)}: {html.escape(str(exc))}</p>"
            sec.tables.append({"name": csv.stem, "html": table_html,
                               "provenance": _table_provenance(csv.with_suffix(".md"))})
        for png in sorted(folder.glob("fig_*.png")) if folder.exists() else []:
            target = fig_dir / f"{nb}__{png.name}"
            shutil.copyfile(png, target)
            sec.figures.append({"name": png.stem, "src": f"figures/{target.name}", "file": target})
        sec.badge = classify_provenance([*map(str, sec.provenance.values()), *(t["provenance"] for t in sec.tables)])
        out.append(sec)
    return out


_CSS = """body{font-family:Georgia,serif;max-width:1000px;margin:2em auto;color:#222;line-height:1.4}
h1{font-size:1.7em}h2{border-bottom:1px solid #aaa;margin-top:2em}
table.tab{border-collapse:collapse;font:12px/1.3 monospace;margin:.5em 0}table.tab td,table.tab th{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:right}figure{margin:1em 0}img{max-width:100%}
.badge{font:12px sans-serif;padding:2px 8px;border-radius:8px;margin-left:.5em;vertical-align:middle}
.standin{background:#ffe9b3}.real{background:#c8f0c8}.unknown{background:#ddd}
.missing{color:#a00;font-weight:bold}.prov{font-size:11px;color:#555;font-style:italic}"""


def _badge(text: str) -> str:
    cls = {"offline stand-in": "standin", "real teacher/model": "real"}.get(text, "unknown")
    return f"<span class='badge {cls}'>{html.escape(text)}</span>"


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
    return head + f"<p class='prov'>{html.escape(versions)}</p>" + \
        pd.DataFrame(rows).to_html(index=False, border=0, classes="tab", na_rep="")


def _section_html(sec: Section, profile: str) -> str:
    parts = [f"<h2 id='{sec.notebook}'>{html.escape(sec.title)}{_badge(sec.badge)}</h2>"]
    if sec.note:
        parts.append(f"<p class='prov'>{html.escape(sec.note)}</p>")
    if sec.status != "ok":
        label = "MISSING" if sec.status == "missing" else "INCOMPLETE"
        parts.append(f"<p class='missing'>{label}: {sec.notebook} has "
                     f"{'no outputs' if sec.status == 'missing' else 'status ' + sec.status} "
                     f"(run <code>python -m orca_utils run --profile {html.escape(profile)} --only "
                     f"{sec.notebook[:2]}</code>)</p>")
        if sec.status == "missing":
            return "\n".join(parts)
    if sec.provenance:
        parts.append("<p class='prov'>" + " · ".join(f"{html.escape(k)}: {html.escape(str(v))}"
                                                    for k, v in sec.provenance.items()) + "</p>")
    if not sec.tables and not sec.figures:
        parts.append("<p class='missing'>no tables or figures saved by this notebook</p>")
    for t in sec.tables:
        parts.append(f"<h3>{html.escape(t['name'])}</h3>{t['html']}")
        if t["provenance"]:
            parts.append(f"<p class='prov'>{html.escape(t['provenance'])}</p>")
    for f in sec.figures:
        parts.append(f"<figure><img src='{html.escape(f['src'])}' alt='{html.escape(f['name'])}'>"
                     f"<figcaption class='prov'>{html.escape(f['name'])}</figcaption></figure>")
    return "\n".join(parts)


def _write_pdf(path: Path, sections: list[Section], manifest: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    def text_page(pdf, title: str, lines: list[str]) -> None:
        for start in range(0, max(1, len(lines)), 60):
            fig = plt.figure(figsize=(8.27, 11.69))
            fig.text(0.05, 0.96, title, fontsize=13, weight="bold", va="top")
            fig.text(0.05, 0.93, "\n".join(line[:120] for line in lines[start:start + 60]), fontsize=6.5,
                     family="monospace", va="top")
            pdf.savefig(fig), plt.close(fig)

    with PdfPages(path) as pdf:
        text_page(pdf, f"Orca notebooks report · profile {manifest.get('profile', '?')}",
                  [f"{s.title}: {s.status} [{s.badge}]" for s in sections])
        for s in sections:
            lines = []
            for t in s.tables:
                frame = pd.read_html(__import__("io").StringIO(t["html"]))[0] if "<table" in t["html"] else None
                lines += [f"== {t['name']}", *(frame.to_string(index=False).splitlines() if frame is not None
                                               else []), t["provenance"], ""]
            if lines:
                text_page(pdf, s.title, lines)
            for f in s.figures:
                fig, ax = plt.subplots(figsize=(8.27, 6))
                ax.imshow(mpimg.imread(f["file"])), ax.axis("off"), ax.set_title(f"{s.title}: {f['name']}", fontsize=9)
                pdf.savefig(fig), plt.close(fig)


def build_report(root: Path, pdf: bool = False, profile: str | None = None) -> dict:
    """Write `root/report/report.html` (+ `report.pdf`); return a summary of what was found and what is missing."""
    root = Path(root)
    report_dir = root / "report"
    if report_dir.exists():
        shutil.rmtree(report_dir / "figures", ignore_errors=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").exists() else {}
    profile = profile or manifest.get("profile") or root.name
    sections = [s for s in collect_sections(root, report_dir) if s.notebook != "10_report"]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = [f"<h1>Orca, reproduced as notebooks: run report ({html.escape(profile)})</h1>",
            f"<p>Generated {stamp}. Each section carries a badge: {_badge('offline stand-in')} numbers from "
            f"offline stand-ins (never to be read as GPT-4, ChatGPT or LLaMA-13B), {_badge('real teacher/model')} "
            f"numbers from the real teachers and models, {_badge('unknown')} no provenance saved. Paper numbers "
            f"marked (unverified) were recalled, not checked against the paper.</p>",
            "<h2>Contents</h2><ul>" + "".join(
                f"<li><a href='#{s.notebook}'>{html.escape(s.title)}</a> · {s.status} {_badge(s.badge)}</li>"
                for s in sections) + "<li><a href='#manifest'>Run manifest</a></li></ul>",
            *(_section_html(s, profile) for s in sections),
            "<h2 id='manifest'>Run manifest: what ran, where, when, how long</h2>", _manifest_html(manifest)]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Orca notebooks report ({html.escape(profile)})"
            f"</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    html_path = report_dir / "report.html"
    html_path.write_text(page)
    summary = {"html": str(html_path), "sections": {s.notebook: {"status": s.status, "badge": s.badge,
                                                                 "tables": len(s.tables), "figures": len(s.figures)}
                                                    for s in sections},
               "missing": [s.notebook for s in sections if s.status == "missing"]}
    if pdf:
        _write_pdf(report_dir / "report.pdf", sections, manifest)
        summary["pdf"] = str(report_dir / "report.pdf")
    (report_dir / "sections.json").write_text(json.dumps(summary, indent=2))
    return summary
