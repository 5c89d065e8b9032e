"""Notebook 09: does a small student learn more from explanations than from answers? (Orca's central claim.)

- `symbolic.py`: the task generators and solvers (BBH-format problems whose steps are known), and scoring;
  `chains.py`: the chain family with difficulty as a dial (`lie_chain`, `truth_lookup`), registered there;
- `symbolic_teacher.py`: the teacher that explains them in three styles, served by the local OpenAI-compatible
  server (`orca_utils.backends.local_server`) behind the same client as GPT-4;
- `pipeline.py`: the experiment itself (`run_experiment`, `check_invariants`, `provenance`) over `settings.py`
  (`Settings`, variants, controls), `student.py` (tokenizers, the small student), `problems.py` (BBH items,
  generated problems, the teacher's responses), `trainer.py` (both controls' plans, the training loop) and
  `evaluate.py` (generation with the answer-line stop, scoring on BBH items and the difficulty curve);
- `parallel.py`: seeds (and the erasure arms' seeds) side by side, one spawned process and one torch thread each;
- `stats.py`: tables, paired tests, the difficulty curve's summary, the validity gate, figures and the generated
  conclusion; `erasure.py`: the prompt-erasure ablation (strategy system message kept vs erased);
- `explanation_vs_answer.py`: the notebook's driver, the one module it imports, gathering what it calls from the
  modules above: `from orca_utils.experiment import explanation_vs_answer`.
This file imports nothing: importing one module of the package does not import the others.
"""
