"""Orca 2's prompt erasure (Mitra et al., 2023, arXiv 2311.11045): a solution strategy per task for the teacher, one
generic system message for the student.

Orca 2 keeps Orca's pipeline but tells the teacher HOW to solve each task (step by step, recall then generate,
recall-reason-generate, extract then generate, or answer directly: chosen per task category), and trains the student
on the teacher's answer under a generic system message that names no strategy. The student has to learn when to use
which strategy from the tasks themselves ("prompt erasure"). Orca 2 publishes neither its strategy prompts nor its
task-to-strategy table, so both below are written for this project:

- `STRATEGY_MESSAGES`: one teacher system message per strategy (ours, in the spirit of the paper's five names);
- `CATEGORY_STRATEGY`: FLAN-v2's "Generic Task Category" (the column of `flan_collection_info.csv`, read through the
  data root) -> strategy. CoT queries are always step by step (each carries a human rationale); a category the table
  does not name falls back to `COLLECTION_STRATEGY`, and a multiple-choice query to recall-reason-generate.
  `prompt_erasure.category_strategy` in params overrides single categories.

The generic message is Orca 2's own: the "cautious" system message of the Orca-2-13b model card
(huggingface.co/microsoft/Orca-2-13b, README, "Getting started": `system_message = "You are Orca, ..."`).

Notebook 02 calls `strategy_frame` (the strategy, what the teacher sees, what the student is trained with, per
query); 05/06 evaluate under `GENERIC_SYSTEM_MESSAGE` when `eval_system_message: generic`.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

__all__ = ["GENERIC_SYSTEM_MESSAGE", "GENERIC_SYSTEM_MESSAGE_SOURCE", "STRATEGIES", "STRATEGY_MESSAGES",
           "CATEGORY_STRATEGY", "COLLECTION_STRATEGY", "MULTIPLE_CHOICE_STRATEGY", "task_categories",
           "strategy_of", "strategy_frame", "holds_strategy_message"]

GENERIC_SYSTEM_MESSAGE = ("You are Orca, an AI language model created by Microsoft. You are a cautious assistant. You "
                          "carefully follow instructions. You are helpful and harmless and you follow ethical "
                          "guidelines and promote positive behavior.")
GENERIC_SYSTEM_MESSAGE_SOURCE = "Orca-2-13b model card (huggingface.co/microsoft/Orca-2-13b), the 'cautious' message"

STRATEGIES = ("step_by_step", "recall_then_generate", "recall_reason_generate", "extract_generate", "direct_answer")

# Written for this project (Orca 2 names the strategies but does not publish its prompts).
STRATEGY_MESSAGES: dict[str, str] = {
    "step_by_step": "Solve the task step by step. Write each step of your reasoning on its own line, justify it from "
                    "the task or the previous step, and state the final answer on the last line.",
    "recall_then_generate": "First recall the facts and definitions the question depends on and write them down. "
                            "Then use only what you recalled to write the answer.",
    "recall_reason_generate": "First recall the relevant knowledge about the question and each option. Then reason "
                              "from that knowledge to eliminate the wrong options, and finally state the answer and "
                              "why it is right.",
    "extract_generate": "First quote the parts of the given text that answer the question. Then write the answer "
                        "using only what you extracted.",
    "direct_answer": "Answer directly and concisely: give only the answer, with no reasoning before or after it.",
}

# FLAN-v2 "Generic Task Category" -> strategy (categories not named here fall back by collection).
CATEGORY_STRATEGY: dict[str, str] = {
    **dict.fromkeys(("Program Execution", "Mathematical QA", "Grade School Math Word Problems",
                     "Algebraic Question Answering", "Sense Making and Explanation", "Explanation Generation",
                     "Explanation", "Answer Verification", "Word Analogy", "Natural Language Inference",
                     "Textual Entailment"), "step_by_step"),
    **dict.fromkeys(("Closed-Book QA", "Question Answering", "Common Sense Reasoning over Entity Knowledge",
                     "Word Semantics", "Country Capital Prediction", "Country Currency Prediction"),
                    "recall_then_generate"),
    **dict.fromkeys(("Multiple-Choice QA (no trivia knowledge required)", "Commonsense Classification",
                     "Cause Effect Classification", "Common Sense Reasoning Question Answering", "Adversarial QA",
                     "Coreference Resolution"), "recall_reason_generate"),
    **dict.fromkeys(("Extractive QA", "Information Extraction", "Named Entity Recognition", "Summarization",
                     "Title Generation", "Passage-Based Question Answering / NLI", "Answerability Classification",
                     "Data to Text", "Structured Data to Text"), "extract_generate"),
    **dict.fromkeys(("Translation", "Sentiment Analysis", "Text Categorization", "Toxic Language Detection",
                     "Language Identification", "Paraphrasing", "Text Matching", "Pos Tagging", "Topic Classification",
                     "Sentence Perturbation", "Question Rewriting", "Text Completion", "Fill in The Blank",
                     "Gender Classification", "Intent Identification"), "direct_answer"),
}
COLLECTION_STRATEGY: dict[str, str] = {"cot": "step_by_step", "niv2": "direct_answer", "t0": "direct_answer",
                                       "flan2021": "direct_answer"}
MULTIPLE_CHOICE_STRATEGY = "recall_reason_generate"


def task_categories(task_list: pd.DataFrame | str | Path | None) -> dict[str, str]:
    """{task name: FLAN-v2 generic category} from `flan_collection_info.csv` (or its loaded frame).

    NIv2 rows name their task (`task288_gigaword_summarization`) in "Specific Task Category"; the other collections
    name a dataset. CoT datasets are `stream_<name>` there and `cot_<name>` in our queries: both are keyed."""
    if task_list is None:
        return {}
    frame = task_list if isinstance(task_list, pd.DataFrame) else pd.read_csv(task_list)
    out: dict[str, str] = {}
    columns = ("Source", "Dataset", "Specific Task Category", "Generic Task Category")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{task_list if not isinstance(task_list, pd.DataFrame) else 'task list'}: missing columns "
                         f"{missing}; expected FLAN-v2's flan_collection_info.csv")
    for source, dataset, specific, generic in frame[list(columns)].astype(str).itertuples(index=False):
        key = specific if source == "NIv2" else dataset
        out.setdefault(key, generic)
        if dataset.startswith("stream_"):
            out.setdefault("cot_" + dataset.removeprefix("stream_"), generic)
    return out


def strategy_of(collection: str, task: str, is_multiple_choice: bool, categories: Mapping[str, str],
                overrides: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(strategy, why) for one query: its task's category in `overrides`, then `CATEGORY_STRATEGY`; else the
    collection's default (multiple-choice queries outside CoT: recall-reason-generate)."""
    category = categories.get(task)
    if collection == "cot":            # every CoT query carries a human rationale: the teacher reasons step by step
        return COLLECTION_STRATEGY["cot"], "collection cot"
    table = {**CATEGORY_STRATEGY, **(overrides or {})}
    if category in table:
        return table[category], f"category {category}"
    if collection != "cot" and is_multiple_choice:
        return MULTIPLE_CHOICE_STRATEGY, "multiple choice"
    if collection not in COLLECTION_STRATEGY:
        raise ValueError(f"collection {collection!r} (task {task!r}): no default strategy; expected one of "
                         f"{sorted(COLLECTION_STRATEGY)}")
    return COLLECTION_STRATEGY[collection], f"collection {collection}" + (f" (category {category})" if category
                                                                          else "")


def strategy_frame(queries: pd.DataFrame, enabled: bool, categories: Mapping[str, str] | None = None,
                   overrides: Mapping[str, str] | None = None, generic_message: str | None = None) -> pd.DataFrame:
    """Per query (same order): `strategy`, `strategy_reason`, `teacher_system_message` (what the teacher sees) and
    `system_message` (what the student is trained with).

    Off (Orca 1): both messages are 01's system message and the strategy is empty. On (Orca 2): the teacher sees
    the strategy's message, the student the generic message (`GENERIC_SYSTEM_MESSAGE` unless given)."""
    if not enabled:
        return pd.DataFrame({"strategy": "", "strategy_reason": "", "teacher_system_message":
                             queries["system_message"].values, "system_message": queries["system_message"].values})
    picked = [strategy_of(c, t, bool(m), categories or {}, overrides)
              for c, t, m in zip(queries["collection"], queries["task"], queries["is_multiple_choice"])]
    return pd.DataFrame({"strategy": [s for s, _ in picked], "strategy_reason": [r for _, r in picked],
                         "teacher_system_message": [STRATEGY_MESSAGES[s] for s, _ in picked],
                         "system_message": generic_message or GENERIC_SYSTEM_MESSAGE})


def holds_strategy_message(text: str) -> str | None:
    """The strategy whose teacher message appears in `text` (a training sequence), or None."""
    return next((name for name, message in STRATEGY_MESSAGES.items() if message in text), None)
