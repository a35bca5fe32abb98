"""qpos/qvel sequences -> video frames with the CPU MuJoCo renderer (host side).

Clips are never simulated twice: the rollout kept qpos/qvel, the renderer only sets them, runs
forward kinematics and draws. The GL backend is chosen automatically (EGL, then OSMesa) by probing
in a subprocess, and rendering runs in worker processes that get that backend.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import subprocess
import sys

import numpy as np

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


def _render_worker(args):
  xml_path, solver, qpos, width, height, camera = args
  import mujoco  # imported in the worker, after MUJOCO_GL is set in its environment
  model = mujoco.MjModel.from_xml_path(xml_path)
  data = mujoco.MjData(model)
  frames = np.empty((len(qpos), height, width, 3), np.uint8)
  with mujoco.Renderer(model, height, width) as renderer:
    for i, q in enumerate(qpos):
      data.qpos[:] = q
      mujoco.mj_forward(model, data)
      renderer.update_scene(data, camera=camera)
      frames[i] = renderer.render()
  return frames


def render_clips(xml_path: str, qpos_clips, width: int = 320, height: int = 240,
                 camera: str = "side", workers: int | None = None) -> list[np.ndarray]:
  """Renders each qpos sequence [T, nq] to frames [T, H, W, 3], in parallel worker processes."""
  backend = gl_backend()
  os.environ["MUJOCO_GL"] = backend
  os.environ.setdefault("PYOPENGL_PLATFORM", backend)
  jobs = [(xml_path, None, np.asarray(q), width, height, camera) for q in qpos_clips]
  workers = workers or min(len(jobs), os.cpu_count() or 1)
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    return list(pool.map(_render_worker, jobs))


def write_video(path: str, frames: np.ndarray, fps: float) -> None:
  """H.264 mp4 via mediapy, with the ffmpeg binary that the imageio-ffmpeg wheel ships."""
  import imageio_ffmpeg
  import mediapy
  mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
  mediapy.write_video(path, frames, fps=fps)
