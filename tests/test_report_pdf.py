"""report.pdf reads like the paper: typeset from the report's HTML (WeasyPrint), tables as text with numbered
captions, figures embedded as vector graphics, a table of contents, sections in the paper's order, and the run
manifest as an appendix."""
from __future__ import annotations

import html
import json
import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

pypdf = pytest.importorskip("pypdf")

from orca_utils.report import build_report


def _figure(path_stem: Path, model: str, vector: bool = True) -> None:
    """A small figure saved the way `Run.save_fig` saves it: PNG + PDF, and SVG for the report."""
    import matplotlib.pyplot as plt

    from orca_utils import figure_style

    figure_style.apply()
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.barh([0, 1], [30.0, 55.0], color=figure_style.color_for(model))
    ax.set_xlabel("accuracy (%)")
    for ext in ("png", "pdf", *(("svg",) if vector else ())):
        fig.savefig(path_stem.with_suffix(f".{ext}"), dpi=60 if ext == "png" else None, bbox_inches="tight")
    plt.close(fig)


def _notebook(root: Path, nb: str, provenance: dict, tables: dict, figures=(), vector: bool = True) -> None:
    folder = root / nb
    folder.mkdir(parents=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.md").write_text(f"| table |\n\n_{'; '.join(provenance.values())}_\n")
    for name in figures:
        _figure(folder / name, "SmolLM2-135M-Instruct (untuned, offline stand-in student)", vector)
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"x/y": 1}, "provenance": provenance}))
    (folder / "run_info.json").write_text(json.dumps({"status": "ok", "params_hash": "h"}))


@pytest.fixture
def outputs(tmp_path):
    root = tmp_path / "outputs" / "smoke"
    bbh = pd.DataFrame({"task": ["Boolean Expressions", "Word Sorting"], "items": [4, 2],
                        "student: acc %": [62.5, 12.5], "student: acc 95% CI": ["[30.6, 86.3]", "[2.2, 47.1]"],
                        "paper ChatGPT": ["82.8 (unverified)", "not available"], "paper Orca-13B": ["72.0", "n/a"],
                        "mc2": [79.34506856227625, 1.2e-05]})
    errors = pd.DataFrame({"task": ["boolean_expressions"] * 50, "id": [f"b/{i}" for i in range(50)],
                           "prompt_end": [f"row {i}: " + "not ( True ) and " * 30 for i in range(50)],
                           "prediction": ["False"] * 50, "model": ["SmolLM2-135M-Instruct"] * 50})
    _notebook(root, "06_bbh", {"model": "SmolLM2-135M-Instruct (offline stand-in)"},
              {"tab_bbh_accuracy": bbh, "tab_bbh_errors": errors}, figures=["fig_bbh_accuracy"])
    _notebook(root, "07_open_ended", {"judge": "SmolLM2-135M-Instruct (local stand-in judge)"},
              {"tab_open_ended_relative": pd.DataFrame({"set": ["Vicuna"], "relative_mean_pct": [71.25]})},
              figures=["fig_open_ended"])
    _notebook(root, "03_packing", {"tokenizer": "SmolLM2 tokenizer (offline stand-in)"}, {},
              figures=["fig_packing"], vector=False)          # outputs saved before SVGs were written
    (root / "manifest.json").write_text(json.dumps({
        "profile": "smoke", "git": {"commit": "abc123def456", "dirty": False}, "status": "ok",
        "notebooks": {"06_bbh": {"status": "ok", "duration_s": 3.2, "started": "t0", "finished": "t1",
                                 "params_hash": "h", "seed": 42}}}))
    return root


def _images(obj, found: dict) -> dict:
    """{object number: image} of every image XObject reachable from a page's resources (through forms too);
    pages may share one resource dictionary, so an image is counted once."""
    resources = obj.get("/Resources")
    resources = resources.get_object() if resources is not None else {}
    for ref in (resources.get("/XObject") or {}).values():
        x, key = ref.get_object(), getattr(ref, "idnum", id(ref))
        if key in found:
            continue
        if x.get("/Subtype") == "/Image":
            found[key] = x
        elif x.get("/Subtype") == "/Form":
            found[key] = None
            _images(x, found)
    return found


def _content(obj) -> bytes:
    """A page's content stream and those of the form XObjects it draws."""
    contents = obj.get_contents()
    data = contents.get_data() if contents is not None else b""
    resources = obj.get("/Resources")
    for ref in ((resources.get_object() if resources is not None else {}).get("/XObject") or {}).values():
        x = ref.get_object()
        if x.get("/Subtype") == "/Form":
            data += x.get_data() + _content_form(x)
    return data


def _content_form(form) -> bytes:
    data = b""
    resources = form.get("/Resources")
    for ref in ((resources.get_object() if resources is not None else {}).get("/XObject") or {}).values():
        x = ref.get_object()
        if x.get("/Subtype") == "/Form":
            data += x.get_data() + _content_form(x)
    return data


@pytest.mark.timeout(600)
def test_report_pdf_has_text_tables_vector_figures_contents_and_captions(outputs):
    summary = build_report(outputs, pdf=True)
    pdf_path = Path(summary["pdf"])
    assert pdf_path.is_file() and pdf_path.read_bytes()[:4] == b"%PDF"
    reader = pypdf.PdfReader(str(pdf_path))
    pages = [p.extract_text() for p in reader.pages]
    text = "\n".join(pages)
    flat = " ".join(text.split())

    # a table of contents, numbered captions, the manifest as an appendix
    assert "Contents" in pages[0]
    for label in ("Table 1", "Table 2", "Table 3", "Figure 1", "Figure 2", "Figure 3", "Appendix A", "Table A1"):
        assert label in flat, label
    # a long example table is capped, with the way to the full one; the whole report stays short
    assert "8 of 50 rows shown; long texts cut at 120 characters; full table: ../06_bbh/tab_bbh_errors.csv" in flat
    assert "row 7:" in flat and "row 8:" not in flat
    assert len(reader.pages) <= 8, f"{len(reader.pages)} pages"
    assert "abc123def456" in flat
    # tables are text: our numbers, the paper's beside them, unverified ones marked
    for cell in ("62.5", "[30.6, 86.3]", "82.8 (unverified)", "not available", "71.25"):
        assert cell in flat, cell
    # the paper's order: open-ended generation (§5) before reasoning (§6: BBH); packing (§3) first
    body = flat[flat.index("Appendix A") + 10:] if flat.count("Appendix A") > 1 else flat
    assert body.index("Tokenization and packing") < body.index("Open-ended generation") < \
        body.index("Big-Bench Hard")
    assert re.search(r"Table 1\. bbh accuracy|Table 1\. open ended relative", flat)

    # figures: SVG copies embedded as vector graphics; only the figure without an SVG falls back to PNG
    assert summary["raster_figures"] == ["figures/03_packing__fig_packing.png"]
    assert sum(src.endswith(".svg") for src in summary["images"]) == 2
    found: dict = {}
    for page in reader.pages:
        _images(page, found)
    images = [img for img in found.values() if img is not None]
    assert len(images) == 1, "the one PNG fallback is the only raster image"
    figure_pages = [i for i, t in enumerate(pages) if re.search(r"Figure [23]\.", " ".join(t.split()))]
    assert figure_pages
    from orca_utils.figure_style import ROLE_COLORS

    r, g, b = (int(ROLE_COLORS["untuned student"][k:k + 2], 16) / 255 for k in (1, 3, 5))
    digits = [re.escape(f"{x:.6f}"[:5]) for x in (r, g, b)]                  # 0.337255 -> 0.337
    bar_fill = re.compile(r"\d* ".join(digits).encode() + rb"\d* rg")         # the bars' colour, a vector fill
    for i in figure_pages:
        content = _content(reader.pages[i])
        assert bar_fill.search(content), "the figure's bars are drawn as filled paths in the student's colour"
        assert re.search(rb"\b(re|l|c)\b", content) and re.search(rb"\b(f|f\*|S|B)\b", content), \
            "path construction and painting operators draw the figure"


def test_report_html_numbers_tables_and_figures_without_parsing(outputs):
    summary = build_report(outputs, pdf=False)
    page = Path(summary["html"]).read_text()
    assert page.count("<caption>") == 4                        # three notebook tables + the manifest
    assert "Table 1." in page and "Figure 3." in page and "id='table-2'" in page and "id='figure-1'" in page
    assert "class='num unverified'" in page or "class='unverified num'" in page or "unverified" in page
    assert all((outputs / "report" / src).is_file() for src in summary["images"])
    assert "pdf" not in summary
    # the example table: its first 8 rows, long texts cut, a relative link to the full CSV that resolves
    assert summary["capped_tables"] == {"tab_bbh_errors": [8, 50]}
    errors = page[page.index("</span> bbh errors"):]            # its caption (the contents list names it too)
    errors = errors[:errors.index("</table>")]
    assert errors.count("<tr>") == 1 + 8                       # header + 8 rows
    full = "row 0: " + "not ( True ) and " * 30
    assert full not in page and html.escape(full[:120].rstrip()) + "…" in page
    assert "8 of 50 rows shown" in page and "href='../06_bbh/tab_bbh_errors.csv'" in page
    assert (outputs / "report" / "../06_bbh/tab_bbh_errors.csv").resolve().is_file()
    assert build_report(outputs, example_rows=60)["capped_tables"] == {}, "the cap is a parameter"
    # floats shown to 4 decimals at most (tiny ones in scientific notation); the CSV keeps every digit
    assert ">79.3451<" in page and ">1.20e-05<" in page and "79.34506856227625" not in page


# ---------------------------------------------------------------- no page ends with a heading
class _Heads(HTMLParser):
    """The texts no page may end with, from the report's HTML: headings (h1-h3), the lines set under a section's
    heading before its first table or figure (`p.prov`), and tables' captions (set above their tables)."""

    def __init__(self):
        super().__init__()
        self.items: list[str] = []
        self._open, self._text, self._after_heading = None, [], False

    def handle_starttag(self, tag, attrs):
        if self._open:                                   # a badge or a label inside a heading or caption
            return
        classes = (dict(attrs).get("class") or "").split()
        if tag in ("h1", "h2", "h3", "caption") or (tag == "p" and "prov" in classes and self._after_heading):
            self._open, self._text = tag, []
        elif tag in ("p", "div", "figure", "table", "ul"):
            self._after_heading = False

    def handle_endtag(self, tag):
        if tag == self._open:
            self.items.append("".join(self._text))
            self._open, self._after_heading = None, tag != "caption"

    def handle_data(self, data):
        if self._open:
            self._text.append(data)


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _pages_ending_with_a_heading(pdf: Path, page: str) -> list[tuple[int, str]]:
    """[(page number, the heading, caption or heading line it ends with)]: a page's text (its footer's page number
    left out) ends with such a text, or with the start of one."""
    parser = _Heads()
    parser.feed(page)
    items = [_flat(t) for t in parser.items if _flat(t)]
    out = []
    for number, p in enumerate(pypdf.PdfReader(str(pdf)).pages, 1):
        text = _flat(p.extract_text())
        text = text.removesuffix(str(number))
        for item in items:
            k = text.rfind(item[:40])
            if k >= 0 and item.startswith(text[k:]):
                out.append((number, item[:60]))
                break
    return out


def test_headings_and_table_captions_stay_with_what_follows():
    """Sections after spacers of 180-256 mm (A4 leaves 259 mm), and sections opening with a wide table (set on a
    landscape page): without the keep rules some heading block or table caption is left at a page's foot, its
    table on the next page (the check below finds it); with them none."""
    from orca_utils import report

    narrow = pd.DataFrame({"task": [f"task {i}" for i in range(6)], "acc %": [12.5 * i for i in range(6)]})
    wide = pd.DataFrame({f"column {k}": [k] * 3 for k in range(report.WIDE_COLUMNS + 2)})
    body, counters = [], {"table": 0, "figure": 0}
    sweep = [(height, narrow) for height in range(180, 257, 4)] + [(height, wide) for height in (60, 150)]
    for n, (height, frame) in enumerate(sweep, 1):
        sec = report.Section(f"{n:02d}_demo", f"Demo section {n}", "the lines under the heading", "ok",
                             provenance={"model": f"stand-in no. {n}."},
                             tables=[{"name": f"tab_demo_{n}", "frame": frame, "error": "", "provenance": "demo",
                                      "csv": f"demo_{n}.csv"}])
        body += [f"<div style='height:{height}mm;break-before:page'></div>",
                 report._section_html(sec, n, "demo", counters)]
    page = report._document("demo", body)
    assert report._KEEP_CSS in page
    with tempfile.TemporaryDirectory() as tmp:
        kept, loose = Path(tmp) / "kept.pdf", Path(tmp) / "loose.pdf"
        report._write_pdf(kept, page, Path(tmp))
        report._write_pdf(loose, page.replace(report._KEEP_CSS, ""), Path(tmp))
        without = _pages_ending_with_a_heading(loose, page)
        number = re.compile(r"Demosection(\d+)|notebook(\d+)_demo|stand-inno\.(\d+)\.|Table(\d+)\.")
        ended = {str(int(n)) for _p, item in without for m in number.findall(item) for n in m if n}
        assert ended - {"21", "22"}, f"without the keep rules a narrow section's heading should end a page: {without}"
        assert ended & {"21", "22"}, f"without them a wide table should leave its heading behind: {without}"
        assert _pages_ending_with_a_heading(kept, page) == [], f"without the rules: {without}"
