"""Structured provenance: which models, teachers, judges and data produced a notebook's numbers, and of what kind.

Every notebook's `summary_metrics` returns `(metrics, provenance)`; the provenance is a `Provenance`: the same
{field: text} dict as ever (printed in the report, under tables), plus `sources`, a list of
{"role", "name", "kind"} that `Run.save_metrics` writes into `metrics.json` as its `sources` field
(`contracts.SOURCES_FIELD`, checked by `contracts.check_sources`). `kind` is one of `contracts.SOURCE_KINDS`:

- `none`: no model produced these numbers (01's sampling, 03's packing: data and tokenizers only);
- `stand_in`: an offline stand-in (a teacher or judge with `offline_backend: data | local_llm`, a
  `pkg:` / `random-llama:` student such as SmolLM2 or a random tiny LLaMA, 09's symbolic teacher and tiny student);
- `real`: the paper's kinds of models (a teacher, judge or API model behind a real endpoint, a hub or local student).

The kind is decided by the code that knows it, from params, never from a label's words: `teacher_source` reads the
teacher block's `offline_backend`, `student_source` the student's model spec. Notebook 10 reads `sources` for its
badges (`badge`): "no model" when every source is `none`, "offline stand-in" when any is a stand-in, "real model"
only when the models are all real.
"""
from __future__ import annotations

from collections.abc import Iterable

from .contracts import SOURCE_KINDS, check_sources

__all__ = ["Provenance", "source", "data_source", "teacher_source", "student_source", "spec_kind", "badge",
           "BADGES", "STAND_IN_SPEC_PREFIXES"]

STAND_IN_SPEC_PREFIXES = ("pkg:", "random-llama:")   # the offline smoke / rehearsal students
# badge text per verdict ("unknown": a notebook that saved no `sources`, e.g. outputs written before they existed)
BADGES = {"none": "no model", "stand_in": "offline stand-in", "real": "real model", "unknown": "unknown"}


class Provenance(dict):
    """{field: text} as `summary_metrics` always returned it, plus `sources` (a list of {"role", "name", "kind"})
    for `metrics.json`. Compares equal to the plain dict of its fields."""

    def __init__(self, fields: dict | None = None, sources: Iterable[dict] = ()):
        super().__init__(fields or {})
        self.sources = check_sources(list(sources), "summary_metrics")


def source(role: str, name: str, kind: str) -> dict:
    """One source: `kind` one of SOURCE_KINDS."""
    if kind not in SOURCE_KINDS:
        raise ValueError(f"source kind {kind!r}: expected one of {SOURCE_KINDS}")
    return {"role": role, "name": str(name) or "(unnamed)", "kind": kind}


def data_source(name: str, role: str = "data") -> dict:
    """Data (or a tokenizer, a sampler): no model."""
    return source(role, name, "none")


def teacher_source(role: str, teacher) -> dict:
    """A teacher, reference or judge block (`TeacherModelParams`): a stand-in when it is served offline
    (`offline_backend` data / local_llm), real when it is asked at an endpoint (an API or served model)."""
    kind = "stand_in" if teacher.offline_backend != "none" else "real"
    return source(role, f"{teacher.label} [{teacher.model}]", kind)


def spec_kind(spec: str) -> str:
    """A student model spec's kind: `pkg:` / `random-llama:` specs are offline stand-ins, anything else (a hub id, a
    local model folder) a real model."""
    return "stand_in" if str(spec).startswith(STAND_IN_SPEC_PREFIXES) else "real"


def student_source(role: str, label: str, base_spec: str) -> dict:
    """A student (untuned, or tuned by notebook 04 from `base_spec`): its kind is that of the base model's spec."""
    return source(role, label, spec_kind(base_spec))


def badge(sources: list[dict] | None) -> str:
    """The report's badge of a section from its `sources`: "unknown" (none saved), "no model" (every source is
    `none`), "offline stand-in" (any stand-in), else "real model"."""
    if sources is None:
        return BADGES["unknown"]
    kinds = {s["kind"] for s in check_sources(sources)}
    if "stand_in" in kinds:
        return BADGES["stand_in"]
    return BADGES["real"] if "real" in kinds else BADGES["none"]
