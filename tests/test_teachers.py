"""Each synthetic teacher's behaviour on constructed fragment pairs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhp_jax import teachers as T
from rlhp_jax.config_errors import ConfigError

KEY = jax.random.PRNGKey(0)


def pairs(r1, r2, length=4):
  """Pairs whose fragments have the given returns spread evenly over ``length`` steps."""
  r1, r2 = np.asarray(r1, float), np.asarray(r2, float)
  return jnp.stack([np.repeat(r1[:, None] / length, length, 1),
                    np.repeat(r2[:, None] / length, length, 1)], 1)


def test_exact():
  label, valid = T.teach(T.PRESETS["exact"].params(), pairs([3, 1, 2, -5], [1, 3, 2, -6]), KEY)
  np.testing.assert_array_equal(label, [1, 0, 0.5, 1])
  assert valid.all()  # skip=0 never skips, negative returns included


def test_boltzmann_matches_sigmoid():
  n = 20000
  label, _ = T.teach(T.TeacherConfig(beta=1.0).params(), pairs(np.ones(n), np.zeros(n)), KEY)
  assert abs(float(label.mean()) - 1 / (1 + np.exp(-1))) < 0.015
  sharp, _ = T.teach(T.TeacherConfig(beta=50.0).params(), pairs(np.ones(100), np.zeros(100)),
                     KEY)
  assert sharp.mean() == 1.0


def test_mistake_flips_at_rate():
  n = 20000
  label, _ = T.teach(T.PRESETS["mistake"].params(), pairs(np.ones(n), np.zeros(n)), KEY)
  assert abs(float(1 - label.mean()) - 0.1) < 0.01


def test_skip_drops_low_pairs():
  # scale S = 10; skip = 0.1 -> pairs whose better fragment is below 1 are skipped
  label, valid = T.teach(T.PRESETS["skip"].params(), pairs([10, 0.5, 2], [1, 0.2, 0.5]), KEY)
  np.testing.assert_array_equal(valid, [True, False, True])


def test_equal_gives_half_for_close_returns():
  label, _ = T.teach(T.PRESETS["equal"].params(), pairs([10, 5.5, 3], [1, 5, 8]), KEY)
  np.testing.assert_array_equal(label, [1, 0.5, 0])


def test_myopic_weighs_the_end():
  late = jnp.array([[0, 0, 0, 0, 1.0]])
  early = jnp.array([[1.5, 0, 0, 0, 0]])
  rewards = jnp.stack([late, early], 1)
  assert float(T.teach(T.PRESETS["exact"].params(), rewards, KEY)[0][0]) == 0.0
  myopic = T.TeacherConfig(gamma=0.5).params()
  np.testing.assert_allclose(T.fragment_return(myopic, early), 1.5 * 0.5**4)
  assert float(T.teach(myopic, rewards, KEY)[0][0]) == 1.0


def test_a_shorter_fragment_counts_its_own_steps_and_ends_at_its_last():
  """``counted`` (prefs.min_fragment_length): a fragment holding its first 3 of 5 steps sums
  only those, and a myopic teacher discounts toward its step 3, not step 5. With every step
  counted the return is the one without ``counted``."""
  rewards = jnp.array([[1.0, 2.0, 4.0, 8.0, 16.0]])
  held = jnp.array([[1.0, 1.0, 1.0, 0.0, 0.0]])
  exact, myopic = T.PRESETS["exact"].params(), T.TeacherConfig(gamma=0.5).params()
  np.testing.assert_allclose(T.fragment_return(exact, rewards, held), 7.0)
  np.testing.assert_allclose(T.fragment_return(myopic, rewards, held), 0.25 + 1.0 + 4.0)
  for teacher in (exact, myopic):
    np.testing.assert_array_equal(T.fragment_return(teacher, rewards, jnp.ones_like(rewards)),
                                  T.fragment_return(teacher, rewards))
  # a pair: 3 held steps of 3.0 (9) against 5 of 2.0 (10): the longer wins; counting all 5 steps
  # of the first (15) would have turned the label
  pair = jnp.stack([jnp.full((1, 5), 3.0), jnp.full((1, 5), 2.0)], 1)
  counted = jnp.stack([held, jnp.ones((1, 5))], 1)
  assert float(T.teach(exact, pair, KEY, counted=counted)[0][0]) == 0.0
  assert float(T.teach(exact, pair, KEY)[0][0]) == 1.0


def test_all_six_teachers_in_one_vmapped_call():
  stacked = T.stack(list(T.PRESETS.values()))
  rewards = pairs([3, 1], [1, 3])
  labels, valid = jax.jit(jax.vmap(T.teach, in_axes=(0, None, None)))(stacked, rewards, KEY)
  assert labels.shape == (6, 2)
  np.testing.assert_array_equal(labels[0], [1, 0])  # exact


def test_thresholds_come_from_the_pairs_asked():
  """A pair not asked (mask False) with a huge return must not set the skip/equal scale."""
  rewards = pairs([10, 5.5, 3, 1000], [1, 5, 8, 0])
  asked = jnp.array([True, True, True, False])
  label, _ = T.teach(T.PRESETS["equal"].params(), rewards, KEY, asked)
  np.testing.assert_array_equal(label[:3], [1, 0.5, 0])
  label_all, _ = T.teach(T.PRESETS["equal"].params(), rewards, KEY)
  np.testing.assert_array_equal(label_all[:3], [0.5, 0.5, 0.5])   # scale 1000: all "equal"
  _, valid = T.teach(T.PRESETS["skip"].params(), pairs([10, 0.5, 2, 1000], [1, 0.2, 0.5, 0]),
                     KEY, asked)
  np.testing.assert_array_equal(valid[:3], [True, False, True])


def test_graded_teacher_reports_the_probability_not_a_draw():
  """A graded teacher's label is sigmoid(beta * (R_1 - R_2)) itself, the same on every key, so
  a label says by how much one fragment beats the other; graded without beta is refused."""
  rewards = pairs([3, 1, 2, -5], [1, 3, 2, -6])
  graded = T.TeacherConfig(beta=0.5, graded=True).params()
  label, valid = T.teach(graded, rewards, KEY)
  np.testing.assert_allclose(label, 1 / (1 + np.exp(-0.5 * np.array([2, -2, 0, 1]))), rtol=1e-6)
  assert valid.all()
  again, _ = T.teach(graded, rewards, jax.random.PRNGKey(7))
  np.testing.assert_array_equal(label, again)
  drawn, _ = T.teach(T.TeacherConfig(beta=0.5).params(), rewards, KEY)
  assert set(np.asarray(drawn).tolist()) <= {0.0, 1.0}        # the Boltzmann teacher draws
  stacked = T.stack([T.TeacherConfig(), T.TeacherConfig(beta=0.5, graded=True)])
  both, _ = jax.vmap(T.teach, in_axes=(0, None, None))(stacked, rewards, KEY)
  np.testing.assert_array_equal(both[0], [1, 0, 0.5, 1])
  np.testing.assert_allclose(both[1], label, rtol=1e-6)
  with pytest.raises(ConfigError, match="teacher.graded"):
    T.TeacherConfig(graded=True)
