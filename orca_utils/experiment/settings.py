"""Notebook 09's experiment settings: the variants, the two controls, the response style each variant is trained
and evaluated on, and `Settings` (what one experiment run uses, from `ExperimentParams`; stored with every result)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["VARIANTS", "CONTROLS", "STYLES_OF", "EVAL_STYLE", "Settings"]

VARIANTS = ("answer_only", "explanation", "progressive")
CONTROLS = ("same_tokens", "same_epochs")
STYLES_OF = {"answer_only": ["answer"], "explanation": ["full"], "progressive": ["short", "full"]}
EVAL_STYLE = {"answer_only": "answer", "explanation": "full", "progressive": "full"}


@dataclass
class Settings:
    """What one experiment run uses (from `ExperimentParams`); stored with every result."""
    tasks: list[str]
    seeds: list[int]
    train_problems_per_task: int
    train_tokens: int | None
    seq_len_tokens: int
    batch_size: int
    learning_rate: float
    n_layers: int
    hidden_size: int
    n_heads: int
    eval_items_per_task: int | None
    eval_max_new_tokens: int
    eval_batch_size: int
    tokenizer: str = "bpe"
    tokenizer_vocab_size: int = 1024
    controls: list[str] = field(default_factory=lambda: list(CONTROLS))
    epochs: float = 3.0
    curve: dict[str, list[int]] = field(default_factory=dict)
    curve_items_per_step: int = 20
    stop_at_answer: bool = True
    alpha: float = 0.05
    larger_student: dict[str, int] | None = None
    skip_runs: list[str] = field(default_factory=list)
    chain_lengths: list[int] = field(default_factory=lambda: [3, 8])
    gate_threshold: float = 0.9
    gate_task: str = "lie_chain"
    gate_budget_tokens: int | None = None
    erasure: bool = True
    erasure_tasks: dict[str, str] = field(default_factory=lambda: {"lie_chain": "step", "truth_lookup": "direct"})
    erasure_problems_per_task: int = 100
    erasure_eval_items_per_task: int = 50
    workers: int = 1

    @classmethod
    def from_cfg(cls, cfg) -> "Settings":
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__ if hasattr(cfg, k)})

    def with_student(self, size: dict[str, int]) -> "Settings":
        return Settings(**{**asdict(self), **size})

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len_tokens

    def chain_steps(self, tasks: list[str] | None = None) -> dict[str, list[int]]:
        """Task -> [lo, hi] steps the training problems of each chain task are drawn from (its trained lengths)."""
        from .symbolic import CHAIN_TASKS

        return {t: list(self.chain_lengths) for t in (tasks or self.tasks) if t in CHAIN_TASKS}

    def curve_tasks(self) -> dict[str, list[int]]:
        """The curve's tasks that are also trained (a curve on an untrained task would say nothing)."""
        return {t: list(k) for t, k in self.curve.items() if t in self.tasks and k}
