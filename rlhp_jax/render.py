"""qpos/qvel sequences -> video frames with the CPU MuJoCo renderer (host side).

Clips are never simulated twice: the rollout kept qpos/qvel, the renderer only sets them, runs
forward kinematics and draws. The GL backend is chosen automatically (EGL, then OSMesa) by probing
in a subprocess, and rendering runs in worker processes that get that backend.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import subprocess
import sys

import numpy as np

from rlhp_jax import config_errors as v

BACKENDS = ("egl", "osmesa")
DEBIAN_PACKAGES = {"egl": "libegl1 (with libgl1-mesa-dri)", "osmesa": "libosmesa6"}

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
r = mujoco.Renderer(m, 16, 16)
d = mujoco.MjData(m)
r.update_scene(d)
r.render()
"""


class RenderError(RuntimeError):
  pass


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  """How the clips of queried pairs are drawn (CPU MuJoCo renderer, mp4 via mediapy)."""

  width: int = 320
  height: int = 240
  fps: float = 30.0
  """Target frame rate; every k-th env step is drawn so that clips play in real time."""
  camera: str = "side"
  """A camera of the model (hopper.xml's "side" tracks the centre of mass in x and z), or
  "follow": a side view that tracks only x at a fixed height, so jumps and flips show their
  height against the floor."""
  workers: int = 0
  """Rendering processes; 0 uses every core."""
  shadows: bool = False
  """Shadows and floor reflections (about 4x slower on a software renderer)."""

  def __post_init__(self):
    v.positive_int(self.width, "clips.width")
    v.positive_int(self.height, "clips.height")
    v.positive(self.fps, "clips.fps")
    v.require(isinstance(self.workers, int) and self.workers >= 0, "clips.workers",
              f"must be an integer >= 0 (0: all cores), got {self.workers!r}")

  def stride(self, dt: float) -> int:
    """Env steps per drawn frame for real-time playback at about ``fps``."""
    return max(1, round(1.0 / (dt * self.fps)))


_chosen: str | None = None


def gl_backend() -> str:
  """The first GL backend that renders here (MUJOCO_GL if set, else EGL then OSMesa)."""
  global _chosen
  if _chosen:
    return _chosen
  wanted = os.environ.get("MUJOCO_GL")
  candidates = (wanted,) if wanted else BACKENDS
  errors = []
  for backend in candidates:
    env = dict(os.environ, MUJOCO_GL=backend)
    if backend == "osmesa":
      env.setdefault("PYOPENGL_PLATFORM", "osmesa")
    if backend == "egl":
      env.setdefault("PYOPENGL_PLATFORM", "egl")
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode == 0:
      _chosen = backend
      return backend
    errors.append(f"{backend}: {proc.stderr.strip().splitlines()[-1] if proc.stderr else '?'}")
  need = " or ".join(DEBIAN_PACKAGES.get(b, b) for b in candidates)
  raise RenderError(f"no working GL backend for the MuJoCo renderer ({'; '.join(errors)}); "
                    f"install {need} (Debian: apt-get install libegl1 libgl1-mesa-dri "
                    f"libosmesa6) or set MUJOCO_GL")


FOLLOW = "follow"
FOLLOW_HEIGHT = 0.9  # m: the follow camera looks at this height, 4 m away, from the side


def _follow_camera(mujoco):
  """A free side camera (looking along +y, like hopper.xml's "side"); the caller moves its
  ``lookat`` with the centre of mass in x only."""
  cam = mujoco.MjvCamera()
  cam.type = mujoco.mjtCamera.mjCAMERA_FREE
  cam.distance, cam.azimuth, cam.elevation = 4.0, 90.0, -8.0
  return cam


def _render_worker(args):
  """Draws a group of clips with one model and one GL context (creating a context costs
  about a second on a software renderer). Returns frames, or the mp4 paths written."""
  xml_path, clips, width, height, camera, shadows = args
  import mujoco  # imported in the worker, after MUJOCO_GL is set in its environment
  model = mujoco.MjModel.from_xml_path(xml_path)
  if not shadows:
    model.vis.quality.shadowsize = 0
  data = mujoco.MjData(model)
  results = []
  with mujoco.Renderer(model, height, width) as renderer:
    if not shadows:  # about 4x faster on a software renderer, and clips look just as clear
      renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
      renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    view = _follow_camera(mujoco) if camera == FOLLOW else camera
    for qpos, video_path, fps in clips:
      frames = np.empty((len(qpos), height, width, 3), np.uint8)
      for i, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        if camera == FOLLOW:
          view.lookat[:] = (data.subtree_com[1, 0], 0.0, FOLLOW_HEIGHT)
        renderer.update_scene(data, camera=view)
        frames[i] = renderer.render()
      if video_path is None:
        results.append(frames)
      else:
        write_video(video_path, frames, fps)
        results.append(video_path)
  return results


def render_clips(xml_path: str, qpos_clips, width: int = 320, height: int = 240,
                 camera: str = "side", workers: int | None = None,
                 shadows: bool = True) -> list[np.ndarray]:
  """Renders each qpos sequence [T, nq] to frames [T, H, W, 3], in parallel worker processes."""
  clips = [(np.asarray(q), None, None) for q in qpos_clips]
  return _run(xml_path, clips, width, height, camera, shadows, workers)


def render_videos(xml_path: str, qpos_clips, paths, fps: float, width: int = 320,
                  height: int = 240, camera: str = "side", workers: int | None = None,
                  shadows: bool = False):
  """Renders and encodes each qpos sequence to the mp4 at the same index of ``paths``; the
  clips are split across worker processes (drawing and encoding both run in parallel)."""
  clips = [(np.asarray(q), path, fps) for q, path in zip(qpos_clips, paths)]
  return _run(xml_path, clips, width, height, camera, shadows, workers)


def _run(xml_path, clips, width, height, camera, shadows, workers):
  if not clips:
    return []
  backend = gl_backend()
  os.environ["MUJOCO_GL"] = backend
  os.environ.setdefault("PYOPENGL_PLATFORM", backend)
  workers = min(workers or os.cpu_count() or 1, len(clips))
  groups = [list(range(w, len(clips), workers)) for w in range(workers)]
  jobs = [(xml_path, [clips[i] for i in g], width, height, camera, shadows) for g in groups]
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    done = list(pool.map(_render_worker, jobs))
  out = [None] * len(clips)
  for g, results in zip(groups, done):
    for i, r in zip(g, results):
      out[i] = r
  return out


def write_video(path: str, frames: np.ndarray, fps: float) -> None:
  """H.264 mp4 via mediapy, with the ffmpeg binary that the imageio-ffmpeg wheel ships."""
  import imageio_ffmpeg
  import mediapy
  mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
  mediapy.write_video(path, frames, fps=fps)


def contact_sheet(frames: np.ndarray, fps: float, seconds: float = 1.5, count: int = 18,
                  columns: int = 6, scale: int = 2) -> np.ndarray:
  """One image of ``count`` frames evenly spaced over ``seconds`` from the middle of a video,
  each shrunk ``scale`` times, in rows of ``columns``: a flip or a hop cycle at a glance.

  frames: [T, H, W, 3] uint8 played at ``fps``. Returns [rows * H', columns * W', 3].
  """
  frames = np.asarray(frames)
  span = min(len(frames), max(1, int(round(seconds * fps))))
  start = (len(frames) - span) // 2
  picks = frames[start + np.linspace(0, span - 1, min(count, span)).round().astype(int)]
  picks = picks[:, ::scale, ::scale]
  rows = -(-len(picks) // columns)
  pad = rows * columns - len(picks)
  if pad:
    picks = np.concatenate([picks, np.full((pad, *picks.shape[1:]), 255, np.uint8)])
  h, w = picks.shape[1:3]
  return (picks.reshape(rows, columns, h, w, 3).transpose(0, 2, 1, 3, 4)
          .reshape(rows * h, columns * w, 3))


def write_contact_sheet(path: str, frames: np.ndarray, fps: float) -> None:
  import mediapy
  mediapy.write_image(path, contact_sheet(frames, fps))
