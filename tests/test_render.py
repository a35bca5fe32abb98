"""Host-side pictures: the contact sheet of a policy video."""

import numpy as np

from rlhp_jax import render


def test_contact_sheet_picks_evenly_spaced_middle_frames_in_rows():
  # 200 frames of 4x6 pixels at 10 fps, each filled with its own index
  frames = np.broadcast_to(np.arange(200, dtype=np.uint8)[:, None, None, None],
                           (200, 4, 6, 3)).copy()
  sheet = render.contact_sheet(frames, fps=10.0, seconds=1.5, count=6, columns=3, scale=2)
  assert sheet.shape == (2 * 2, 3 * 3, 3)
  # 1.5 s = 15 frames from the middle (92..106), 6 of them evenly spaced, read row by row
  picked = [int(sheet[r * 2, c * 3, 0]) for r in range(2) for c in range(3)]
  assert picked == [92, 95, 98, 100, 103, 106]


def test_contact_sheet_pads_a_short_video_with_white():
  frames = np.zeros((4, 2, 2, 3), np.uint8)
  sheet = render.contact_sheet(frames, fps=10.0, seconds=1.0, count=18, columns=3, scale=1)
  assert sheet.shape == (2 * 2, 3 * 2, 3)
  assert (sheet[:2] == 0).all() and (sheet[2:, :2] == 0).all() and (sheet[2:, 2:] == 255).all()
