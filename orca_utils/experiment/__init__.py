"""Notebook 09: does a small student learn more from explanations than from answers? (Orca's central claim.)

- `symbolic.py`: the task generators and solvers (BBH-format problems whose steps are known), and scoring;
- `symbolic_teacher.py`: the teacher that explains them in three styles, served by the local OpenAI-compatible
  server (`orca_utils.teacher.local_server`) behind the same client as GPT-4;
- `pipeline.py`: the experiment itself: problems, responses, tokenizer and student, training under both controls,
  evaluation on BBH items and the difficulty curve (`run_experiment`, `check_invariants`, `provenance`);
- `stats.py`: tables, paired tests, the difficulty curve's summary, figures and the generated conclusion.

The notebook imports the modules: `from orca_utils.experiment import pipeline as E, stats as X, symbolic as S`.
"""
from __future__ import annotations

from . import pipeline, stats, symbolic, symbolic_teacher

__all__ = ["pipeline", "stats", "symbolic", "symbolic_teacher"]
