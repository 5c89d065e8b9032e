"""Pairwise judging of open-ended answers, Vicuna style, with both answer orders (paper section 4).

The judge sees a question and two answers and replies with one line holding two scores (1-10), one per answer,
then an explanation. That is the review prompt Vicuna's 2023 GPT-4 evaluation used and the Orca paper reused:
FastChat `fastchat/eval/table/prompt.jsonl`, prompt 1 ("general"; the same text lives in FastChat's
`fastchat/eval/eval_gpt_review.py` era code). None of the eight templates in FastChat's later `judge_prompts.jsonl`
(dataset `fastchat_judge`: `pair-v2`, `pair-math-v1`, their multi-turn forms, and the `single-*` ratings) gives two
scores: the pairwise ones return a verdict `[[A]]/[[B]]/[[C]]` and the single ones one `[[rating]]` per answer.
So `VICUNA_V1` below carries the Vicuna text verbatim; `list_fastchat_templates` shows the file's templates and
their output formats so the notebook can say why they were not used.

Score of a candidate = (sum of its scores) / (sum of the reference's scores) x 100, over the prompts whose verdict
parsed. Each prompt is judged twice, candidate first and reference first; both percentages, their mean, the flip
rate (how often the winner changes with the order: position bias) and the mean answer length of each side are
reported. Parsing is strict (`parse_scores`); an unparseable reply is asked again once, with the reply and a format
reminder appended, then recorded as `unparseable` with its raw text: never guessed.
"""
from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd

__all__ = ["JudgeTemplate", "VICUNA_V1", "VerdictParseError", "ChatFn", "list_fastchat_templates",
           "load_fastchat_templates", "build_judge_messages", "parse_scores", "ask_with_retry", "judge_pairs",
           "aggregate_verdicts", "ORDERS", "ModelEndpoints", "as_model_endpoints", "teacher_chat_fn", "serve_models"]


@dataclass(frozen=True)
class JudgeTemplate:
    name: str
    system: str
    prompt_template: str      # fields {question}, {answer_1}, {answer_2}, {criteria}
    criteria: str
    source: str


VICUNA_V1 = JudgeTemplate(
    name="vicuna-v1-general",
    system="You are a helpful and precise assistant for checking the quality of the answer.",
    prompt_template=("[Question]\n{question}\n\n[The Start of Assistant 1's Answer]\n{answer_1}\n\n"
                     "[The End of Assistant 1's Answer]\n\n[The Start of Assistant 2's Answer]\n{answer_2}\n\n"
                     "[The End of Assistant 2's Answer]\n\n[System]\n{criteria}\n\n"),
    criteria=("We would like to request your feedback on the performance of two AI assistants in response to the "
              "user question displayed above.\nPlease rate the helpfulness, relevance, accuracy, level of details "
              "of their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher "
              "score indicates better overall performance.\nPlease first output a single line containing only two "
              "values indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a "
              "space. In the subsequent line, please provide a comprehensive explanation of your evaluation, "
              "avoiding any potential bias and ensuring that the order in which the responses were presented does "
              "not affect your judgment."),
    source="lm-sys/FastChat fastchat/eval/table/prompt.jsonl, prompt_id 1 'general' (Vicuna's GPT-4 review prompt)",
)

RETRY_REMINDER = ("Your reply could not be read. Reply with exactly one line containing only the two scores "
                  "(1 to 10) for Assistant 1 and Assistant 2, separated by a space, for example: 8 6")

ORDERS = ("candidate_first", "reference_first")

# A chat function sends a batch of message lists and returns, per request, (text or None, status); status "ok"
# means the text is the model's reply. The teacher client (orca_utils.teacher) is adapted to this in the notebook.
ChatFn = Callable[[list[list[dict]]], list[tuple[str | None, str]]]


class VerdictParseError(ValueError):
    """A judge reply that does not hold two scores in the required format."""


def list_fastchat_templates(path: str | Path) -> pd.DataFrame:
    """The templates of FastChat's `judge_prompts.jsonl`: name, type, output format, scores per reply."""
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        if "name" not in d or "output_format" not in d:
            raise ValueError(f"{path}:{i}: expected 'name' and 'output_format', got {sorted(d)}")
        fmt = d["output_format"]
        rows.append({"name": d["name"], "type": d.get("type", ""), "category": d.get("category", ""),
                     "output_format": fmt, "gives_two_scores": fmt not in ("[[A]]", "[[rating]]")})
    return pd.DataFrame(rows)


def load_fastchat_templates(data_dir: str | None = None, offline: bool = False) -> pd.DataFrame:
    """`list_fastchat_templates` on dataset `fastchat_judge` (its `judge_prompts.jsonl`)."""
    from .data import resolve_dataset

    root = Path(resolve_dataset("fastchat_judge", data_dir, offline).path)
    hits = [root / "judge_prompts.jsonl"] if (root / "judge_prompts.jsonl").exists() else \
        sorted(root.rglob("judge_prompts.jsonl"))
    if not hits:
        raise FileNotFoundError(f"fastchat_judge: no judge_prompts.jsonl under {root}")
    return list_fastchat_templates(hits[0])


def build_judge_messages(question: str, answer_1: str, answer_2: str,
                         template: JudgeTemplate = VICUNA_V1) -> list[dict]:
    """The judge's chat request: system message and the filled review prompt (answer_1 is shown first)."""
    user = template.prompt_template.format(question=question, answer_1=answer_1, answer_2=answer_2,
                                           criteria=template.criteria)
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]


_NUM = r"(10(?:\.0+)?|\d(?:\.\d+)?)"
_SCORE_LINE = re.compile(rf"^{_NUM}(?:\s*,\s*|\s+){_NUM}$")


def parse_scores(text: str | None) -> tuple[float, float]:
    """The two scores (Assistant 1, Assistant 2) from the first non-empty line of a judge reply.

    Strict: that line must be exactly two numbers in [0, 10] separated by spaces or one comma (Vicuna's own
    parser accepted the same), optionally wrapped in `**` bold markers. Anything else raises VerdictParseError:
    "Assistant 1: 8" lines, scores out of range, three numbers, prose before the scores, an empty reply.
    """
    if text is None or not text.strip():
        raise VerdictParseError("empty reply")
    first = next(line for line in text.splitlines() if line.strip()).strip()
    if first.startswith("**") and first.endswith("**") and len(first) > 4:
        first = first[2:-2].strip()
    match = _SCORE_LINE.match(first)
    if not match:
        raise VerdictParseError(f"first line is not two scores: {first[:80]!r}")
    return float(match.group(1)), float(match.group(2))


def _ask(chat: ChatFn, requests: list[list[dict]]) -> list[tuple[str | None, str]]:
    replies = chat(requests) if requests else []
    if len(replies) != len(requests):
        raise RuntimeError(f"chat function returned {len(replies)} replies for {len(requests)} requests")
    return replies


def ask_with_retry(chat: ChatFn, requests: list[list[dict]], parse: Callable[[str | None], object],
                   reminder: str, retries: int = 1) -> list[dict]:
    """Send `requests`; re-ask those whose reply `parse` rejects (VerdictParseError), at most `retries` times.

    A retry appends the unreadable reply and `reminder` to the conversation (so it also misses any response cache).
    Returns per request: status (`ok` | `unparseable` | `error: <status>`), attempts, raw (last reply), parsed.
    """
    results = [{"status": "pending", "attempts": 0, "raw": None, "parsed": None} for _ in requests]
    todo = list(range(len(requests)))
    for attempt in range(retries + 1):
        batch = []
        for i in todo:
            messages = requests[i]
            if attempt > 0:
                messages = [*messages, {"role": "assistant", "content": results[i]["raw"] or ""},
                            {"role": "user", "content": reminder}]
            batch.append(messages)
        retry = []
        for i, (text, status) in zip(todo, _ask(chat, batch)):
            res = results[i]
            res["attempts"] += 1
            if status != "ok":
                res.update(status=f"error: {status}", raw=text)
                continue
            res["raw"] = text
            try:
                res.update(parsed=parse(text), status="ok")
            except VerdictParseError:
                res["status"] = "unparseable"
                retry.append(i)
        todo = retry
        if not todo:
            break
    return results


def judge_pairs(pairs: pd.DataFrame, chat: ChatFn, template: JudgeTemplate = VICUNA_V1,
                retries: int = 1) -> pd.DataFrame:
    """Judge every row of `pairs` (columns id, set, prompt, candidate, reference) in both orders.

    Returns one row per (id, order): id, set, order, status (`ok` | `unparseable` | `error: ...`), attempts,
    candidate_score, reference_score (NaN unless ok), raw (the last reply, kept for inspection).
    """
    needed = {"id", "set", "prompt", "candidate", "reference"}
    if not needed <= set(pairs.columns):
        raise ValueError(f"pairs: missing columns {sorted(needed - set(pairs.columns))}")
    jobs = []
    for row in pairs.itertuples(index=False):
        for order in ORDERS:
            a1, a2 = (row.candidate, row.reference) if order == "candidate_first" else (row.reference, row.candidate)
            jobs.append({"id": row.id, "set": row.set, "order": order,
                         "messages": build_judge_messages(row.prompt, a1, a2, template)})
    results = ask_with_retry(chat, [j["messages"] for j in jobs], parse_scores, RETRY_REMINDER, retries)
    for res in results:
        res["scores"] = res.pop("parsed")
    rows = []
    for job, res in zip(jobs, results):
        s1, s2 = res["scores"] if res["scores"] else (float("nan"), float("nan"))
        cand, ref = (s1, s2) if job["order"] == "candidate_first" else (s2, s1)
        rows.append({"id": job["id"], "set": job["set"], "order": job["order"], "status": res["status"],
                     "attempts": res["attempts"], "candidate_score": cand, "reference_score": ref,
                     "raw": res["raw"]})
    return pd.DataFrame(rows)


def _words(texts: Sequence[str]) -> float:
    return float(pd.Series([len(str(t).split()) for t in texts]).mean()) if len(texts) else float("nan")


def _relative(df: pd.DataFrame) -> float:
    ok = df[df["status"] == "ok"]
    total_ref = ok["reference_score"].sum()
    return float(100.0 * ok["candidate_score"].sum() / total_ref) if len(ok) and total_ref > 0 else float("nan")


VERDICT_COLUMNS = ["id", "set", "order", "status", "candidate_score", "reference_score", "attempts"]


def _summarise(verdicts: pd.DataFrame, pairs: pd.DataFrame, name: str) -> dict:
    if verdicts.empty:        # no pair to judge (every reference failed): counts of zero, scores NaN
        verdicts = pd.DataFrame({c: pd.Series(dtype=float if c.endswith("score") or c == "attempts" else object)
                                 for c in VERDICT_COLUMNS})
    by_order = {o: verdicts[verdicts["order"] == o].set_index("id") for o in ORDERS}
    cf, rf = by_order["candidate_first"], by_order["reference_first"]
    both = cf.index[(cf["status"] == "ok") & (rf.reindex(cf.index)["status"] == "ok")]
    sign_cf = (cf.loc[both, "candidate_score"] - cf.loc[both, "reference_score"]).apply(_sign)
    sign_rf = (rf.loc[both, "candidate_score"] - rf.loc[both, "reference_score"]).apply(_sign)
    # position 1 wins: the candidate won in candidate_first, or the reference won in reference_first
    first_wins = (sign_cf > 0).sum() + (sign_rf < 0).sum()
    rel = {o: _relative(by_order[o]) for o in ORDERS}
    n_rows = len(pairs)
    out = {"set": name, "n_prompts": n_rows}
    for o in ORDERS:
        out[f"n_parsed_{o}"] = int((by_order[o]["status"] == "ok").sum())
    out.update({
        "n_unparseable": int((verdicts["status"] == "unparseable").sum()),
        "n_errors": int(verdicts["status"].str.startswith("error").sum()),
        "n_retried": int((verdicts["attempts"] > 1).sum()),
        "relative_candidate_first_pct": rel["candidate_first"],
        "relative_reference_first_pct": rel["reference_first"],
        "relative_mean_pct": float(pd.Series(list(rel.values())).mean(skipna=False)),
        "n_paired": int(len(both)),
        "flip_rate": float((sign_cf != sign_rf).mean()) if len(both) else float("nan"),
        "first_position_win_rate": float(first_wins / (2 * len(both))) if len(both) else float("nan"),
        "candidate_len_words": _words(list(pairs["candidate"])),
        "reference_len_words": _words(list(pairs["reference"])),
    })
    return out


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def aggregate_verdicts(verdicts: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per prompt set and overall (`all`): both orders' relative scores (%), their mean, flip rate, lengths.

    `relative_*_pct` is candidate total / reference total x 100 over that order's parsed verdicts (NaN when none
    parsed); `relative_mean_pct` is the mean of the two orders (NaN when either is NaN: an order with no parsed
    verdict is not silently dropped). `flip_rate` is the share of prompts, among those parsed in both orders,
    whose winner (candidate, reference or tie) changes with the order; `first_position_win_rate` is the share of
    those verdicts won by whichever answer was shown first (0.5 minus half the tie rate when there is no bias).
    """
    rows = [_summarise(verdicts[verdicts["set"] == s], pairs[pairs["set"] == s], s)
            for s in pairs["set"].drop_duplicates()]
    rows.append(_summarise(verdicts, pairs, "all"))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ModelEndpoints:
    """Where each teacher-client model of a block is asked (what `serve_models` yields).

    An offline stand-in (`offline_backend` local_llm) at the local server that serves it (`local`, None when the block
    has none); a real-endpoint model at the block's endpoint (`block`), or at its own `base_url` when it has one.
    Each model's requests go through a client built for its endpoint (`orca_utils.teacher.make_client`, over the one
    factory `orca_utils.backends.endpoints.openai_client`), so stand-ins and real endpoints mix in one run.
    """

    block: object                   # TeacherEndpointParams: the block's `endpoint`
    local: object | None = None     # TeacherEndpointParams pointed at the local server, while it runs

    def for_model(self, model):
        """The TeacherEndpointParams to send `model` (TeacherModelParams) to."""
        if model.offline_backend != "none":
            if self.local is None:
                raise ValueError(f"{model.label}: offline stand-in {model.model!r} is not served here: ask for it "
                                 f"inside `serve_models` with it among the models")
            return self.local
        return self.block.model_copy(update={"base_url": model.base_url}) if model.base_url else self.block


def as_model_endpoints(endpoint) -> ModelEndpoints:
    """`endpoint` as ModelEndpoints: a plain TeacherEndpointParams serves every model (the earlier calling way: a
    stand-in is sent to it as it is, a real-endpoint model to its own `base_url` when it has one)."""
    return endpoint if isinstance(endpoint, ModelEndpoints) else ModelEndpoints(endpoint, endpoint)


def teacher_chat_fn(model, endpoint, cache_path, max_cost_usd: float | None = None, desc: str = "judge") -> ChatFn:
    """A ChatFn over the teacher client (`orca_utils.teacher.complete_chats`: cache, rate limits, retries, cost).

    `model` is a `TeacherModelParams`; `endpoint` the `ModelEndpoints` of `serve_models` (or a plain
    `TeacherEndpointParams`), resolved for this model (`ModelEndpoints.for_model`). A `truncated` reply (max_tokens
    hit) still counts as a reply: the judge's scores are on its first line. Other statuses are returned as errors.
    """
    from .teacher import ChatRequest, Prices, complete_chats

    counter = [0]
    endpoint = as_model_endpoints(endpoint).for_model(model)

    def chat(batch: list[list[dict]]) -> list[tuple[str | None, str]]:
        requests = []
        for messages in batch:
            counter[0] += 1
            requests.append(ChatRequest(id=f"{desc}-{counter[0]}", model=model.model, messages=messages,
                                        max_tokens=model.max_tokens, temperature=model.temperature,
                                        stop=list(model.stop) or None, dialect=model.dialect,
                                        reasoning_effort=model.reasoning_effort))
        prices = Prices(model.price_input_usd_per_1k, model.price_output_usd_per_1k)
        run = complete_chats(requests, endpoint, cache_path, prices=prices, max_cost_usd=max_cost_usd, desc=desc)
        return [(r.text, "ok") if r.status in ("ok", "truncated") else
                (r.text or None, r.status + (f" ({r.error})" if r.error else "")) for r in run.results]

    return chat


@contextlib.contextmanager
def serve_models(models: Sequence, endpoint, default_model_spec: str, device: str = "cpu",
                 loaded: dict | None = None) -> Iterator[ModelEndpoints]:
    """The `ModelEndpoints` to send `models` (TeacherModelParams, None ignored) to, any mix of both kinds.

    Models with `offline_backend: local_llm` are served by a local OpenAI-compatible server for the body of the
    `with` (`ModelEndpoints.local` points at it); one `HFBackend` per distinct model spec, or the one already in
    `loaded` ({spec: backend}, e.g. the candidate), so a stand-in used as reference and judge is loaded once.
    Requests are micro-batched by the server (one batched generate per burst). Real-endpoint models are asked at
    `endpoint` (or their own `base_url`); nothing is loaded or served for them. What cannot be served (the data
    teacher, two stand-ins of different local models under one name) raises the line `validate` gives for it
    (`orca_utils.schemas.stand_in_problem`).
    """
    from .schemas import stand_in_problem

    models = [m for m in models if m is not None]
    offline = [m for m in models if m.offline_backend != "none"]
    problem = stand_in_problem([(m.label, m) for m in offline], default_model_spec)
    if problem:
        raise ValueError(f"serve_models: {problem}")
    if not offline:
        yield ModelEndpoints(endpoint)
        return
    from .backends.hf import HFBackend
    from .teacher import serve_offline

    by_spec = dict(loaded or {})
    backends = {}
    batch = max(m.local_batch_size for m in offline)
    for m in offline:
        spec = m.local_model or default_model_spec
        if spec not in by_spec:
            by_spec[spec] = HFBackend(spec, batch_size=batch, device=device, progress=False, label=m.label)
        backends[m.model] = by_spec[spec]
    with serve_offline(backends, endpoint, max_batch_size=batch) as local:
        yield ModelEndpoints(endpoint, local)
