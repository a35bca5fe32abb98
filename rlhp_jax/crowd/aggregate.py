"""Crowd answers -> one preference probability per pair, with crowd-kit.

We take ``fit_predict_proba`` (the aggregator's posterior over "left"/"right") and read the
probability of "left" ourselves (majority vote's posterior, the share of "left" votes, is
computed directly; a test checks it against crowd-kit's), instead of ``fit_predict``'s hard label, whose tie-break depends
on the pandas version. For majority vote that probability is the share of "left" votes, so a
tie is exactly 0.5. "Failed to load" answers carry no preference: they are left out, and a pair
with nothing but such answers gets no label (the gatherer asks for it again).
"""

from __future__ import annotations

import warnings

from rlhp_jax.label_store import FAILED, LEFT, RIGHT

AGGREGATORS = ("majority_vote", "dawid_skene", "glad")


def make_aggregator(name: str):
  from crowdkit import aggregation
  if name == "majority_vote":
    return aggregation.MajorityVote()
  if name == "dawid_skene":
    return aggregation.DawidSkene(n_iter=100)
  if name == "glad":
    return aggregation.GLAD(n_iter=100)
  raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {name!r}")


def preference_probabilities(answers: list[dict], aggregator: str = "majority_vote",
                             soft: bool = True) -> dict[str, float]:
  """answers: label-store records (pair_id, worker, answer). Returns {pair_id: P(left)} for
  pairs with at least one left/right answer. ``soft=False`` rounds to 1 / 0 (ties 0.5)."""
  rows = [(a["pair_id"], a["worker"], a["answer"]) for a in answers
          if a["answer"] in (LEFT, RIGHT)]
  if not rows:
    return {}
  if aggregator == "majority_vote":
    # crowd-kit's MajorityVote posterior is the share of each label among a task's workers;
    # computed here directly, it spares every resumed process crowd-kit's seconds of imports.
    last = {(task, worker): label for task, worker, label in rows}  # re-asked: the last counts
    votes: dict[str, list[bool]] = {}
    for (task, _), label in last.items():
      votes.setdefault(task, []).append(label == LEFT)
    out = {}
    for task, lefts in votes.items():
      p = sum(lefts) / len(lefts)
      out[str(task)] = p if soft else (0.5 if abs(p - 0.5) < 1e-9 else float(p > 0.5))
    return out
  import pandas as pd
  df = pd.DataFrame(rows, columns=["task", "worker", "label"])
  # One answer per (pair, worker): a worker who saw a pair twice (re-queued) counts once, last.
  df = df.drop_duplicates(["task", "worker"], keep="last")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    proba = make_aggregator(aggregator).fit_predict_proba(df)
  p_left = proba[LEFT] if LEFT in proba.columns else 0.0 * proba.iloc[:, 0]
  out = {}
  for task, p in p_left.items():
    p = float(p)
    if not soft:
      p = 0.5 if abs(p - 0.5) < 1e-9 else float(p > 0.5)
    out[str(task)] = p
  return out


def only_failed(answers: list[dict]) -> set[str]:
  """Pairs whose every answer is "failed to load" (to be asked again)."""
  seen: dict[str, bool] = {}
  for a in answers:
    seen[a["pair_id"]] = seen.get(a["pair_id"], True) and a["answer"] == FAILED
  return {pid for pid, failed in seen.items() if failed}
