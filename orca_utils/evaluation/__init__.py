"""Notebooks 05 (AGIEval) and 06 (BBH): zero-shot evaluation, tasks as data over one engine.

- `tasks.yaml` + `tasks.py`: the tasks as data (lm-evaluation-harness style: prompt, answer kind, options,
  version) and their loading into `EvalItem`s (`load_benchmark`, `subset_items`, `get_task`, `task_specs`);
- `sets.py`: one reader per evaluation set, BBH, AGIEval and TruthfulQA, local and hub layouts alike (also read
  by 01's contamination check and 08's safety notebook);
- `engine.py`: the engine: generate (or rank by log-likelihood) and score every item under both conventions
  (`evaluate`, `summarize`, `score_records`);
- `extract.py`: how an answer is read from a model's text, the project's robust reader and the benchmark
  authors' published rule (`extract_answer`, `score_prediction`, `score_published`);
- `stats.py`: Wilson and bootstrap intervals, the exact McNemar test;
- `prompt_sets.py`: the open-ended prompt sets (Vicuna, Awesome ChatGPT prompts, WizardLM), read by 07 and by
  01's contamination check;
- `zero_shot.py`: 05/06's driver: the scoring runs and the metrics (`run_zero_shot`, `summary_metrics`, ...); it
  re-exports the tables for the notebooks;
- `result_tables.py`: the result tables beside the paper and the paper's columns (`ZeroShotRun`,
  `accuracy_table`, `paired_table`, `paper_values`, ...), read by the driver and the figure alike;
- `figures.py`: the per-task accuracy figure drawn the paper's way (`plot_per_task`);
- `score_cli.py`: the `python -m orca_utils score` command (saved model outputs scored with the same rules).

The notebooks import the driver by name: `from orca_utils.evaluation import zero_shot`. This file imports nothing:
reading a set (`evaluation.sets`, as 01 and 08 do) does not import the driver and the engine.
"""
