"""Experiment configs: one frozen dataclass per run, loaded from ``experiments/<name>.py`` and
saved as JSON beside the run."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import json
import math
import os
import runpy
from typing import Any, Literal

from rlhp_jax import config_errors as v
from rlhp_jax.crowd.config import StorageConfig, TolokaConfig
from rlhp_jax.envs.hopper import HopperConfig
from rlhp_jax.envs.tasks import INSTRUCTIONS
from rlhp_jax.human.config import HumanConfig
from rlhp_jax.ppo import EVAL_ACTIONS, PPOConfig
from rlhp_jax.preferences import PreferenceConfig
from rlhp_jax.render import ClipConfig
from rlhp_jax.reward_model import RewardModelConfig
from rlhp_jax.teachers import PRESETS, TeacherConfig


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Budget, seeds and what the run leaves behind."""

  total_env_steps: int = 5_000_000
  """Env steps to train for (all envs together)."""
  seed: int = 0
  num_seeds: int = 1
  """Independent seeds trained together in one compile (vmap); seeds are seed..seed+n-1."""
  eval_every: int = 250_000
  """Env steps between evaluations of the deterministic policy."""
  eval_episodes: int = 10
  eval_episode_length: int = 1000
  """Steps of each evaluation episode (1000: Gym's time limit and seals' horizon), whatever the
  training episodes' length."""
  eval_action: str = "clip_mean"
  """How the evaluated policy acts without noise: ``clip_mean`` (clip of the Gaussian's mean,
  the median applied control; SB3's and brax's convention) or ``mean_applied`` (the mean of the
  applied control, E[clip(a)]). See ``ppo.EVAL_ACTIONS``."""
  iterations_per_call: int = 10
  """Training iterations fused into one jitted call (scan); progress is reported between calls."""
  checkpoint_every: int = 250_000
  """Env steps between checkpoints of the synthetic driver (at least one per call; the last
  call always checkpoints). The external driver checkpoints after every iteration."""
  out_dir: str = "runs"
  """Run directories are created under this folder."""
  video: bool = True
  """Render an mp4 of the final policy (CPU MuJoCo renderer, EGL or OSMesa)."""
  video_width: int = 480
  video_height: int = 360

  def __post_init__(self):
    for name in ("total_env_steps", "num_seeds", "eval_every", "eval_episodes",
                 "eval_episode_length", "iterations_per_call", "checkpoint_every", "video_width", "video_height"):
      v.positive_int(getattr(self, name), f"run.{name}")
    v.one_of(self.eval_action, EVAL_ACTIONS, "run.eval_action")
    v.require(isinstance(self.seed, int) and self.seed >= 0, "run.seed",
              f"must be an integer >= 0, got {self.seed!r}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """A whole experiment: env, agent, reward model, queries, teacher, run settings."""

  name: str = "experiment"
  reward_source: Literal["preferences", "true", "true_normalized"] = "preferences"
  """"preferences": PPO on the learned reward (RLHP); "true": PPO on the oracle (baseline);
  "true_normalized": the oracle's reward through the learned reward's normalisation (zero mean,
  unit std per rollout batch)."""
  labels: Literal["synthetic", "external", "toloka", "human"] = "synthetic"
  """Who labels the pairs. "synthetic": the teacher below, the whole run jitted; "external":
  the same teacher behind the Python-loop driver; "toloka": crowd workers (clips on
  ``storage``, pools per ``toloka``); "human": you, on a local web page (``human``)."""
  env: HopperConfig = HopperConfig(mode="fixed_horizon", ctrl_cost=0.0, unhealthy_penalty=10.0)
  ppo: PPOConfig = PPOConfig()
  reward: RewardModelConfig = RewardModelConfig()
  prefs: PreferenceConfig = PreferenceConfig()
  teacher: TeacherConfig = TeacherConfig()
  teachers: tuple[str, ...] = ()
  """Sweep: names of teacher presets (exact, boltzmann, mistake, skip, equal, myopic) trained
  side by side in one compile; empty means just ``teacher``."""
  run: RunConfig = RunConfig()
  clips: ClipConfig = ClipConfig()
  """How the clips of queried pairs are rendered (crowd and human labels)."""
  storage: StorageConfig = StorageConfig()
  toloka: TolokaConfig = TolokaConfig()
  human: HumanConfig = HumanConfig()
  instruction: str = ""
  """What people judging clips are told; empty uses the task's text (envs/tasks.INSTRUCTIONS)."""

  def __post_init__(self):
    v.require(isinstance(self.name, str) and self.name.replace("_", "").replace("-", "").isalnum(),
              "name", f"must be letters, digits, '-' or '_', got {self.name!r}")
    v.one_of(self.reward_source, ("preferences", "true", "true_normalized"), "reward_source")
    v.one_of(self.labels, ("synthetic", "external", "toloka", "human"), "labels")
    object.__setattr__(self, "teachers", tuple(self.teachers))
    for name in self.teachers:
      v.one_of(name, tuple(PRESETS), "teachers")
    if self.reward_source == "preferences":
      span = self.ppo.unroll_length * self.prefs.rollouts_per_iteration
      v.require(self.prefs.fragment_length <= span, "prefs.fragment_length",
                f"must be <= ppo.unroll_length * prefs.rollouts_per_iteration ({span}): "
                f"fragments are cut from one iteration's rollouts; got "
                f"{self.prefs.fragment_length}")
      v.require(self.prefs.total_labels >= self.prefs.initial_labels, "prefs.initial_fraction",
                "initial share exceeds the budget")
      v.require(self.warmup_iterations < self.num_iterations, "prefs.pairs_per_iteration",
                f"collecting the initial {self.prefs.initial_labels} labels takes "
                f"{self.warmup_iterations} iterations, the whole run has "
                f"{self.num_iterations}; raise pairs_per_iteration or the env steps")
      v.require(self.prefs.branch_share == 0 or self.env.mode == "fixed_horizon",
                "prefs.branch_share",
                "branches run past a fall, which ends a Gym-style episode: set "
                "env.mode='fixed_horizon' or prefs.branch_share=0")
    if self.external_labels:
      v.require(self.reward_source == "preferences", "labels",
                f"{self.labels!r} needs reward_source='preferences'")
      v.require(self.run.num_seeds == 1, "run.num_seeds",
                "the external driver runs one seed; set --run.num-seeds 1")
      v.require(self.labels not in ("toloka", "human")
                or self.prefs.min_length == self.prefs.fragment_length,
                "prefs.min_fragment_length",
                f"fragments of varying length are for synthetic labels ({self.labels!r} clips "
                f"are rendered at one length); leave it None")

  @property
  def num_iterations(self) -> int:
    """RLHP iterations covering ``run.total_env_steps``, rounded up to whole jitted calls of
    ``run.iterations_per_call`` iterations (each iteration is ``prefs.rollouts_per_iteration``
    PPO batches)."""
    k = self.run.iterations_per_call
    per_iteration = self.ppo.batch_size * self.prefs.rollouts_per_iteration
    return k * math.ceil(self.run.total_env_steps / (per_iteration * k))

  @property
  def warmup_iterations(self) -> int:
    """Iterations spent collecting the initial labels with the policy frozen (0 without
    preference learning)."""
    if self.reward_source != "preferences":
      return 0
    return math.ceil(self.prefs.initial_labels / self.prefs.pairs_per_iteration)

  @property
  def external_labels(self) -> bool:
    """Labels come through the Python-loop driver (a gatherer), not the jitted teacher."""
    return self.labels != "synthetic"

  @property
  def instruction_text(self) -> str:
    return self.instruction or INSTRUCTIONS[self.env.task]

  def teacher_sweep(self) -> list[TeacherConfig]:
    return [PRESETS[n] for n in self.teachers] if self.teachers else [self.teacher]


def to_dict(cfg) -> dict[str, Any]:
  """JSON-ready dict of a config (tuples become lists, inf becomes a string)."""
  def clean(x):
    if isinstance(x, float) and not math.isfinite(x):
      return str(x)
    if isinstance(x, (list, tuple)):
      return [clean(i) for i in x]
    if isinstance(x, dict):
      return {k: clean(i) for k, i in x.items()}
    return x
  return clean(dataclasses.asdict(cfg))


def save(cfg, path: str) -> None:
  """Writes the config as JSON atomically: a temporary file, fsynced, renamed over ``path``
  (a crash leaves the old file or the new one, never half of one)."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(to_dict(cfg), f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    os.fsync(dir_fd)
  finally:
    os.close(dir_fd)


def from_dict(cls, data: dict, prefix: str = ""):
  """Rebuilds a config from ``to_dict`` output; unknown fields raise a one-line ConfigError."""
  fields = {f.name: f for f in dataclasses.fields(cls)}
  kwargs = {}
  for key, value in data.items():
    where = f"{prefix}{key}"
    if key not in fields:
      close = difflib.get_close_matches(key, fields, n=1)
      hint = f"did you mean '{prefix}{close[0]}'?" if close else f"known: {', '.join(fields)}"
      raise v.ConfigError(f"{where}: unknown field; {hint}")
    ftype = fields[key].type
    sub = _dataclass_type(cls, key)
    if sub is not None and not isinstance(value, dict):
      raise v.ConfigError(f"{where}: must be a section (a JSON object of fields), got "
                          f"{value!r}")
    if sub is not None:
      value = from_dict(sub, value, prefix=f"{where}.")
    elif isinstance(value, str) and value in ("inf", "-inf") and "float" in str(ftype):
      value = float(value)
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[key] = value
  return cls(**kwargs)


def _dataclass_type(cls, name):
  default = {f.name: f for f in dataclasses.fields(cls)}[name].default
  return type(default) if dataclasses.is_dataclass(default) else None


def load_experiment(path: str) -> ExperimentConfig:
  """Runs ``experiments/<name>.py`` (or a saved ``config.json``) and returns its ``CONFIG``."""
  if not os.path.exists(path):
    raise v.ConfigError(f"experiment: no such file {path!r}; pass a path such as "
                        "experiments/hopper_synthetic.py")
  if path.endswith(".json"):
    return _load_json(path)
  namespace = _run_file(path)
  cfg = namespace.get("CONFIG")
  v.require(cfg is not None and dataclasses.is_dataclass(cfg), "CONFIG",
            f"{path} must define CONFIG = ExperimentConfig(...)")
  return cfg


def _load_json(path: str) -> ExperimentConfig:
  """A saved ``config.json``; a damaged or foreign file is one ConfigError line naming it."""
  fix = ("restore it from a copy (or start a new run from the experiment file; its answers in "
         "labels/labels.jsonl stay usable)")
  try:
    with open(path, "rb") as f:
      data = json.loads(f.read().decode("utf-8"))
  except OSError as e:
    raise v.ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    where = f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
    raise v.ConfigError(f"{path}: not valid JSON{where}; the run's config is damaged: {fix}") \
        from None
  if not isinstance(data, dict):
    raise v.ConfigError(f"{path}: holds a JSON {type(data).__name__}, not a config object; "
                        f"{fix}")
  try:
    return from_dict(config_class(data), data)
  except TypeError as e:  # a field of the wrong kind (e.g. a list where a section belongs)
    raise v.ConfigError(f"{path}: {e}; {fix}") from None


def _run_file(path: str) -> dict:
  """Runs an experiment file; its syntax and import errors become one ConfigError line."""
  try:
    return runpy.run_path(path)
  except SyntaxError as e:
    raise v.ConfigError(f"{path}: line {e.lineno}: {e.msg}; fix the syntax of the experiment "
                        "file") from None
  except ImportError as e:
    raise v.ConfigError(f"{path}: {e}; fix the import (experiments import from rlhp_jax, "
                        "e.g. from rlhp_jax.experiment import ExperimentConfig)") from None
  except v.ConfigError:
    raise
  except Exception as e:  # noqa: BLE001 - any error while building CONFIG
    raise v.ConfigError(f"{path}: {type(e).__name__} while building CONFIG: {e}; fix the "
                        "experiment file") from None


def config_class(data: dict):
  """The config class a saved dict belongs to (one kind today; the hook for others)."""
  return ExperimentConfig


def override(cfg, args):
  """Applies ``--section.field value`` overrides with tyro on top of the experiment's CONFIG."""
  if not args:
    return cfg
  import tyro
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
      return tyro.cli(type(cfg), default=cfg, args=args, prog="rlhp-jax train EXPERIMENT")
  except SystemExit as e:
    raise v.ConfigError(f"overrides: {_tyro_problem(out.getvalue(), args)}; use "
                                 "--section.field value with fields of the experiment "
                                 "(rlhp-jax train EXPERIMENT --help lists them)") from e


def _tyro_problem(text: str, args) -> str:
  """tyro's boxed error as one line, e.g. "Error parsing --ppo.num-envs: invalid literal for
  int() with base 10: 'abc'" or "Unrecognized options: --ppo.num-env; perhaps you meant
  --ppo.num-envs"."""
  lines = [line.strip(" │─╭╮╰╯┃━┏┓┗┛|").strip() for line in text.splitlines()]
  lines = [line for line in lines if line and not set(line) <= set("-─━")][1:]  # no title
  problem, suggestions, in_suggestions = [], [], False
  for line in lines:
    if line.startswith(("For full helptext", "Argument helptext")):
      break
    if line.startswith("Perhaps you meant"):
      in_suggestions = True
    elif in_suggestions:
      if line.startswith("--"):
        suggestions.append(line.split()[0])
    else:
      problem.append(line)
  text = " ".join(problem) or "could not parse " + " ".join(a for a in args if a.startswith("--"))
  if suggestions:
    text += "; perhaps you meant " + " or ".join(dict.fromkeys(suggestions))
  return " ".join(text.split())[:300]
