"""Plausibility of a pipeline run's metrics: values in their ranges, and every notebook's counts consistent with
the notebook before it. Used by `test_notebooks_smoke.py` on its papermill run; run it on any run folder with

    .venv/bin/python tests/smoke_checks.py outputs/smoke

(prints one line per problem, exit 1 if any). Keys are matched by their last path parts (see `RULES`); a value of
None (a figure that could not be computed, e.g. a relative score with no parseable verdict) is allowed everywhere.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from orca_utils.funnel.params import FILTERS

# (pattern on the metric key, rule). First match wins; a key no pattern matches is only checked to be finite.
PERCENT, FRACTION, COUNT, POSITIVE, NON_NEGATIVE, FACTOR = "0-100", "0-1", "count", ">0", ">=0", ">1"
RULES: list[tuple[str, str]] = [
    (r"/relative_\w+_pct$", NON_NEGATIVE),                     # candidate / reference: may exceed 100
    (r"(_pct|accuracy|accuracy_ci95_(low|high)|extraction_failure_rate|pct_truthful|/mc[12])$", PERCENT),
    (r"(padding_fraction|_share|_rate|/p_holm|/p_\w+|mean_toxicity|student_found)$", FRACTION),
    (r"packing_factor$", FACTOR),
    (r"loss$", POSITIVE),
    (r"(tokens_per_s|seconds|_mean|samples_per_row|/epochs)$", POSITIVE),
    (r"(_usd|mean_response_tokens|_len_words)$", NON_NEGATIVE),          # 0 when a stage got no usable answer
    (r"(/funnel/\w+|/rejected/\w+|/label_check/\w+|/cached_same_prompt|/samples|/heldout_samples|/table_rows|"
     r"/rows|/requests|/train_rows|/sent|/cached|/batches|/status/\w+|/quota|/shortfall|/malformed|/items|"
     r"items_with_overlap|overlapping_queries|/n_items|/n_tasks|n_prompts|n_questions|/n_paired|/n_unparseable|"
     r"/n_errors|/n_retried|/steps|/tokens|useful_tokens|/truncated|/dropped|/n_params|/seeds|"
     r"tokens_per_variant|eval_items|steps_per_epoch|max_len|sections_ok|sections_missing|/figures|/tables)$", COUNT),
]


def load_metrics(run_dir: str | Path) -> dict[str, dict]:
    """{notebook: its metrics} for every notebook folder of the run that holds a metrics.json."""
    root = Path(run_dir)
    return {p.parent.name: json.loads(p.read_text())["metrics"] for p in sorted(root.glob("*/metrics.json"))}


def rule_for(key: str) -> str | None:
    return next((rule for pattern, rule in RULES if re.search(pattern, key)), None)


def value_problems(notebook: str, metrics: dict) -> list[str]:
    """One line per metric outside its range (or not finite)."""
    out = []
    for key, v in metrics.items():
        if v is None or isinstance(v, (bool, str)):
            continue
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            out.append(f"{notebook}: {key} = {v!r} is not a finite number")
            continue
        rule = rule_for(key)
        ok = {PERCENT: lambda x: 0 <= x <= 100, FRACTION: lambda x: 0 <= x <= 1, POSITIVE: lambda x: x > 0,
              NON_NEGATIVE: lambda x: x >= 0, FACTOR: lambda x: x > 1,
              COUNT: lambda x: x >= 0 and float(x).is_integer(), None: lambda x: True}[rule](v)
        if not ok:
            out.append(f"{notebook}: {key} = {v!r} is not {rule}")
    return out


def _get(m: dict, nb: str, key: str, out: list[str]):
    if key not in m.get(nb, {}):
        out.append(f"{nb}: {key} missing")
        return None
    return m[nb][key]


def consistency_problems(m: dict[str, dict]) -> list[str]:
    """Counts that must agree between notebooks (and inside one), for the notebooks present."""
    out: list[str] = []

    def check(cond: bool, text: str) -> None:
        if not cond:
            out.append(text)

    if "01_sampling" in m:
        s = m["01_sampling"]
        for stage in ("stage1", "stage2"):
            per = sum(v for k, v in s.items() if re.fullmatch(rf"{stage}/\w+/rows", k))
            check(per == s[f"{stage}/rows"], f"01: {stage} rows per collection sum to {per}, not {stage}/rows "
                                             f"{s[f'{stage}/rows']}")
        check(s["stage2/rows"] <= s["stage1/rows"], "01: stage 2 is a subset of stage 1")
        check(s["stage1/rows"] <= s["pool/rows"], "01: more rows sampled than the pool holds")
        for k, v in s.items():
            if k.endswith("/items_with_overlap"):
                check(v <= s[k.replace("items_with_overlap", "items")], f"01: {k} above the set's items")
    if "02_augmentation" in m:
        a = m["02_augmentation"]
        for stage in ("stage1", "stage2"):
            statuses = sum(v for k, v in a.items() if k.startswith(f"{stage}/status/"))
            check(statuses == a[f"{stage}/requests"], f"02: {stage} statuses sum to {statuses}, not the "
                                                      f"{a[f'{stage}/requests']} requests")
            check(a[f"{stage}/train_rows"] <= a[f"{stage}/status/ok"], f"02: {stage} train rows above ok responses")
            order = ["requests", "answered"] + [f"after_{name}" for name in FILTERS]
            steps = [a[f"{stage}/funnel/{step}"] for step in order if f"{stage}/funnel/{step}" in a]
            if steps:        # the funnel: requests first, never growing, and its last step is what 04 trains on
                check(steps[0] == a[f"{stage}/requests"] and steps == sorted(steps, reverse=True),
                      f"02: {stage} funnel steps {steps} do not shrink from the requests")
                check(a[f"{stage}/train_rows"] == steps[-1], f"02: {stage} train rows != the funnel's last step")
            check(a[f"{stage}/cached"] <= a[f"{stage}/requests"], f"02: {stage} more cached than requested")
            if "01_sampling" in m:
                rows = _get(m, "01_sampling", f"{stage}/rows", out)
                check(rows is None or a[f"{stage}/requests"] <= rows,
                      f"02: {stage} sent {a[f'{stage}/requests']} requests for 01's {rows} queries")
    if "04_training" in m and "02_augmentation" in m:
        for stage in ("stage1", "stage2"):
            rows = m["04_training"].get(f"{stage}/table_rows")
            check(rows is None or rows == m["02_augmentation"][f"{stage}/train_rows"],
                  f"04: {stage} read {rows} rows, not the {m['02_augmentation'][f'{stage}/train_rows']} 02 kept")
    if "03_packing" in m and "02_augmentation" in m and m["03_packing"].get("samples/from_02"):
        train = m["02_augmentation"]["stage1/train_rows"] + m["02_augmentation"]["stage2/train_rows"]
        check(m["03_packing"]["samples/rows"] == train,
              f"03: {m['03_packing']['samples/rows']} samples from 02, whose training tables hold {train} rows")
    if "03_packing" in m:
        p = m["03_packing"]
        check(p["packing/llama/dropped"] <= p["samples/rows"], "03: more samples dropped than measured")
        check(p["packing/llama/best_fit/packing_factor"] >= p["packing/llama/paper/packing_factor"],
              "03: best-fit packs fewer samples per sequence than the paper's method")
    if "04_training" in m:
        t = m["04_training"]
        for stage in ("stage1", "stage2"):
            check(t.get(f"{stage}/samples_per_row", 0) >= 1, f"04: {stage} fewer than one sample per row")
    for nb, bench in (("05_agieval", "agieval"), ("06_bbh", "bbh")):
        if nb in m:
            e = m[nb]
            check(e[f"{bench}/n_tasks"] <= e[f"{bench}/n_items"], f"{nb}: more tasks than items")
            for slot in ("base", "student"):
                if f"{bench}/{slot}/n_items" in e:
                    check(e[f"{bench}/{slot}/n_items"] == e[f"{bench}/n_items"], f"{nb}: {slot} scored other items")
            if "04_training" in m:
                check(e[f"{bench}/student_found"] == 1, f"{nb}: 04 ran but its student was not scored")
    if "07_open_ended" in m:
        o = m["07_open_ended"]
        for k, v in o.items():
            if k.endswith("/all/n_prompts"):
                check(v == o["open_ended/n_prompts"], f"07: {k} = {v}, not the {o['open_ended/n_prompts']} prompts")
            if k.endswith("/n_paired"):
                check(v <= o[k.replace("n_paired", "n_prompts")], f"07: {k} above its prompts")
            if k.endswith("/n_unparseable"):
                check(v <= 2 * o[k.replace("n_unparseable", "n_prompts")], f"07: {k} above two verdicts a prompt")
    if "08_safety" in m:
        s = m["08_safety"]
        check(s["truthfulqa/n_questions"] > 0 and s["toxigen/n_prompts"] > 0, "08: nothing evaluated")
        check(("truthfulqa/student/mc1" in s) == ("04_training" in m), "08: 04's student scored iff 04 ran")
    if "09_explanation_vs_answer" in m:
        x = m["09_explanation_vs_answer"]
        budget = x["experiment/tokens_per_variant"]
        for k, v in x.items():
            if re.fullmatch(r"experiment/same_tokens/\w+/tokens", k):
                check(v == budget, f"09: {k} = {v}, not the same-tokens budget {budget}")
    if "10_report" in m:
        check(m["10_report"]["report/sections_missing"] == 0, "10: a notebook is missing from the report")
    return out


def plausibility_problems(run_dir: str | Path) -> list[str]:
    """Every problem of the run's metrics: values out of range, counts inconsistent between notebooks."""
    metrics = load_metrics(run_dir)
    if not metrics:
        return [f"{run_dir}: no metrics.json found"]
    out = [p for nb, m in metrics.items() for p in value_problems(nb, m)]
    return out + consistency_problems(metrics)


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else "outputs/smoke"
    problems = plausibility_problems(folder)
    found = sorted(load_metrics(folder))
    print("\n".join(problems) or f"ok: {len(found)} notebooks ({', '.join(found)})")
    sys.exit(1 if problems else 0)
