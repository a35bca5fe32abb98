"""``rlhp-jax toloka setup EXPERIMENT``: the Toloka project the seed post clicks together by hand,
created from the experiment config instead.

    project    the side-by-side interface (two videos that must be played, A / B / Failed to
               load, hotkeys 1 2 3 and q / w to play/pause), input video1/video2 (URLs), output
               ``result`` in {left, right, error}, and the task's instruction text
    training   a training pool with tasks whose answer is known: pairs of clips from the
               initial random policy whose oracle returns differ the most, with a hint
    base pool  the pool cloned for every batch: language filter, training threshold, a ban for
               too-fast pages, a ban for frequent disagreement with the majority, overlap,
               price per page

It prints the ids to put in the config (``toloka.project_id``, ``toloka.base_pool_id``,
``toloka.training_pool_id``).
"""

from __future__ import annotations

import datetime
import html
import json
import logging

import numpy as np

from rlhp_jax import clips
from rlhp_jax.crowd.config import TolokaConfig
from rlhp_jax.crowd.retry import retry_call
from rlhp_jax.crowd.toloka_gatherer import INPUT_LEFT, INPUT_RIGHT, OUTPUT_FIELD

log = logging.getLogger(__name__)


def interface_config() -> dict:
  """The task interface (Toloka template builder): the seed's side-by-side layout."""
  def video(path):
    return {"type": "view.video", "url": {"type": "data.input", "path": path},
            "validation": {"type": "condition.played", "hint": "Play the video"}}

  def set_result(value):
    return {"type": "action.set", "data": {"type": "data.output", "path": OUTPUT_FIELD},
            "payload": value}

  return {
      "view": {
          "type": "layout.side-by-side",
          "items": [video(INPUT_LEFT), video(INPUT_RIGHT)],
          "controls": {"type": "view.list", "items": [{
              "type": "field.button-radio-group",
              "label": "Which clip shows better AI actions?",
              "options": [{"label": "A", "value": "left"}, {"label": "B", "value": "right"},
                          {"label": "Failed to load", "value": "error"}],
              "validation": {"type": "condition.required", "hint": "choose one of the clips"},
              "data": {"type": "data.output", "path": OUTPUT_FIELD}}]},
      },
      "plugins": [
          {"type": "plugin.hotkeys", "1": set_result("left"), "2": set_result("right"),
           "3": set_result("error"),
           "q": {"type": "action.play-pause", "view": {"$ref": "view.items.0"}},
           "w": {"type": "action.play-pause", "view": {"$ref": "view.items.1"}}},
          {"type": "plugin.toloka", "layout": {"kind": "scroll", "taskWidth": 1000}},
      ],
  }


def _components(tree) -> set[str]:
  found = set()
  if isinstance(tree, dict):
    if "type" in tree and not tree["type"].startswith("data."):
      found.add(tree["type"])
    for value in tree.values():
      found |= _components(value)
  elif isinstance(tree, list):
    for value in tree:
      found |= _components(value)
  return found


def make_project(tcfg: TolokaConfig, instruction: str):
  import toloka.client as toloka
  from toloka.client.project.field_spec import StringSpec, UrlSpec
  from toloka.client.project.view_spec import TemplateBuilderViewSpec
  config = interface_config()
  lock = {"core": "1.0.0", **{c: "1.0.0" for c in _components(config)}}
  view = TemplateBuilderViewSpec.structure({"config": json.dumps(config), "lock": lock})
  return toloka.Project(
      public_name=tcfg.project_name,
      public_description="Watch two short clips of a simulated robot and choose the better one.",
      public_instructions=instruction_html(instruction),
      task_spec=toloka.project.task_spec.TaskSpec(
          input_spec={INPUT_LEFT: UrlSpec(), INPUT_RIGHT: UrlSpec()},
          output_spec={OUTPUT_FIELD: StringSpec(allowed_values=["left", "right", "error"])},
          view_spec=view))


def instruction_html(text: str) -> str:
  return (f"<p>{html.escape(text)}</p>"
          "<p>Play both clips to the end before you answer (keys <b>q</b> / <b>w</b> play and "
          "pause them). Press <b>1</b> for A, <b>2</b> for B, <b>3</b> if a clip does not "
          "load.</p>")


def make_training(tcfg: TolokaConfig, project_id: str, num_tasks: int):
  import toloka.client as toloka
  return toloka.Training(
      project_id=project_id, private_name="rlhp-jax training",
      may_contain_adult_content=False, assignment_max_duration_seconds=600,
      mix_tasks_in_creation_order=False, shuffle_tasks_in_task_suite=True,
      training_tasks_in_task_suite_count=num_tasks, task_suites_required_to_pass=1,
      retry_training_after_days=1, inherited_instructions=True)


def make_base_pool(tcfg: TolokaConfig, project_id: str, training_id: str):
  """The pool every batch clones: the seed post's quality control, from the config."""
  import toloka.client as toloka
  from toloka.client import actions, collectors, conditions, filter as tfilter
  pool = toloka.Pool(
      project_id=project_id, private_name="rlhp-jax base pool (cloned per batch)",
      may_contain_adult_content=False, reward_per_assignment=tcfg.reward_per_page,
      assignment_max_duration_seconds=600, auto_accept_solutions=True,
      will_expire=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365),
      auto_close_after_complete_delay_seconds=0,
      defaults=toloka.Pool.Defaults(default_overlap_for_new_tasks=tcfg.overlap,
                                    default_overlap_for_new_task_suites=tcfg.overlap),
      filter=tfilter.Languages.in_(tcfg.language))
  pool.set_mixer_config(real_tasks_count=tcfg.tasks_per_page, golden_tasks_count=0,
                        training_tasks_count=0)
  pool.quality_control.training_requirement = toloka.pool.QualityControl.TrainingRequirement(
      training_pool_id=training_id, training_passing_skill_value=tcfg.training_pass_percent)
  ban = dict(scope="PROJECT", duration=tcfg.ban_days, duration_unit="DAYS")
  pool.quality_control.add_action(
      collector=collectors.AssignmentSubmitTime(
          history_size=5, fast_submit_threshold_seconds=tcfg.fast_submit_seconds),
      conditions=[conditions.FastSubmittedCount > 1],
      action=actions.RestrictionV2(private_comment="pages submitted too fast", **ban))
  pool.quality_control.add_action(
      collector=collectors.MajorityVote(answer_threshold=2, history_size=tcfg.majority_min_answers),
      conditions=[conditions.TotalAnswersCount >= tcfg.majority_min_answers,
                  conditions.IncorrectAnswersRate > tcfg.majority_disagreement_percent],
      action=actions.RestrictionV2(private_comment="disagrees with the majority", **ban))
  return pool


def setup(tcfg: TolokaConfig, instruction: str, training, clips_cfg, env_dt: float,
          run_dir: str, client, storage) -> dict:
  """Creates project, training pool (with tasks) and base pool; returns their ids.

  training: a ``Query`` with numpy leaves whose masked pairs become the training tasks (their
  oracle returns, ``pairs.true_reward`` [P, 2, L], give the known answers)."""
  import toloka.client as toloka
  call = lambda what, fn: retry_call(fn, what=f"toloka {what}")  # noqa: E731
  project = call("create_project",
                 lambda: client.create_project(make_project(tcfg, instruction)))
  log.info(f"project {project.id} created")
  num_tasks = len(clips.asked(training))
  training_pool = call("create_training", lambda: client.create_training(
      make_training(tcfg, project.id, num_tasks)))
  drawn = clips.render_asked(training, 0, f"{run_dir}/training_clips", clips_cfg, env_dt)
  returns = np.asarray(training.pairs.true_reward).sum(-1)
  tasks = []
  for c in drawn:
    left_better = returns[c["pair"], 0] > returns[c["pair"], 1]
    answer = "left" if left_better else "right"
    tasks.append(toloka.Task(
        pool_id=training_pool.id,
        input_values={INPUT_LEFT: storage.url(storage.put(c["left"])),
                      INPUT_RIGHT: storage.url(storage.put(c["right"]))},
        known_solutions=[toloka.task.BaseTask.KnownSolution(output_values={OUTPUT_FIELD: answer})],
        message_on_unknown_solution=(f"Clip {'A' if left_better else 'B'} is better. "
                                     + instruction)))
  call("create_tasks", lambda: client.create_tasks(tasks, allow_defaults=True))
  log.info(f"training {training_pool.id} created with {len(tasks)} tasks")
  pool = call("create_pool", lambda: client.create_pool(make_base_pool(tcfg, project.id,
                                                                        training_pool.id)))
  log.info(f"base pool {pool.id} created")
  return {"project_id": project.id, "training_pool_id": training_pool.id,
          "base_pool_id": pool.id}
