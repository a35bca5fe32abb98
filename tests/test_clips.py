"""Pair ids and clip names: made and parsed in one place, for any iteration and pair index (the
page's clip route once refused pair 1000)."""

import os
import urllib.error
import urllib.request

import pytest

from rlhp_jax import clips
from rlhp_jax.human.server import LabelServer
from rlhp_jax.label_store import LabelStore


@pytest.mark.parametrize("iteration, index", [(0, 0), (12, 3), (4, 999), (7, 1000),
                                              (123456, 20000)])
def test_pair_ids_and_clip_names_round_trip(iteration, index):
  pid = clips.pair_id(iteration, index)
  assert clips.parse_pair_id(pid) == (iteration, index) and clips.pair_index(pid) == index
  for side in clips.SIDES:
    name = clips.clip_name(pid, side)
    assert clips.parse_clip_name(name) == (pid, side)
    assert clips.pair_of_url(f"https://b.s3/run/{name}?X-Amz-Signature=abc") == pid


def test_pair_ids_keep_their_format():
  assert clips.pair_id(12, 3) == "it00012-p003"
  assert clips.pair_id(7, 1000) == "it00007-p1000"


@pytest.mark.parametrize("name", ["it0001-p000-left.mp4", "it00001-p00-left.mp4",
                                  "it00001-p000-up.mp4", "it00001-p000-left.mp4.part.mp4",
                                  "../it00001-p000-left.mp4", "other.mp4"])
def test_other_names_are_not_clips(name):
  assert clips.parse_clip_name(name) is None
  with pytest.raises(ValueError):
    clips.parse_pair_id(name)


def test_the_page_serves_the_clip_of_pair_1000(tmp_path):
  run_dir = str(tmp_path)
  os.makedirs(os.path.join(run_dir, "clips"))
  name = clips.clip_name(clips.pair_id(3, 1000), "left")
  with open(os.path.join(run_dir, "clips", name), "wb") as f:
    f.write(b"\x00" * 32)
  with LabelServer(LabelStore(run_dir), run_dir) as server:
    base = f"http://127.0.0.1:{server.port}/clips/"
    with urllib.request.urlopen(f"{base}{name}?token={server.token}", timeout=10) as resp:
      assert resp.status == 200 and resp.read() == b"\x00" * 32
    with pytest.raises(urllib.error.HTTPError) as missing:
      urllib.request.urlopen(f"{base}it00003-p1001-left.mp4?token={server.token}", timeout=10)
    assert missing.value.code == 404
