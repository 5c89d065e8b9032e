"""Notebook 09's driver: does a small student learn more from explanations than from answers? (Orca's claim.)

The notebook imports this module only; each name is defined in the module of the package that owns it:
- `settings`: the experiment's settings (`Settings`); `pipeline`: its run (`run_experiment`, `provenance`,
  `check_invariants`);
- `symbolic` and `symbolic_teacher`: the tasks and the teacher's three styles (`generate_input`, `explain`,
  `STYLES`, `STEP_UNITS`, `SYSTEM_MESSAGES`);
- `stats`: tables, paired tests, the difficulty curve, the validity gate, figures, the conclusion and the metrics
  (`summarize`, `paired_tests`, `curve_tests`, `validity_gate`, `conclusion`, `summary_metrics`, ...);
- `erasure`: the prompt-erasure ablation (`run_erasure`, `erasure_table`, `erasure_tests`, ...).
"""
from __future__ import annotations

from .erasure import (STRATEGY_MESSAGES, erasure_conclusion, erasure_metrics, erasure_table, erasure_tests,
                      generic_message, run_erasure)
from .pipeline import check_invariants, provenance, run_experiment
from .settings import Settings
from .stats import (apply_gate, best_constant, cap_shares, conclusion, curve_summary, curve_tests, gate_metrics,
                    paired_tests, plot_accuracy, plot_curves, plot_difficulty, summarize, summary_metrics,
                    trace_fidelity, validity_gate, wide_table)
from .symbolic import STEP_UNITS, STYLES, explain, generate_input
from .symbolic_teacher import SYSTEM_MESSAGES

__all__ = ["Settings", "run_experiment", "provenance", "check_invariants", "STEP_UNITS", "STYLES", "explain",
           "generate_input", "SYSTEM_MESSAGES", "summarize", "wide_table", "paired_tests", "best_constant",
           "curve_summary", "curve_tests", "trace_fidelity", "cap_shares", "conclusion", "summary_metrics",
           "plot_accuracy", "plot_curves", "plot_difficulty", "validity_gate", "apply_gate", "gate_metrics",
           "STRATEGY_MESSAGES", "generic_message", "run_erasure", "erasure_table", "erasure_tests",
           "erasure_conclusion", "erasure_metrics"]
