"""Fragments, active selection, the preference buffer (no retrace) and the label schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhp_jax import fragments, preferences
from rlhp_jax.ppo import Transition


def fake_transitions(T=20, B=4):
  code = (jnp.arange(T)[:, None] * 100 + jnp.arange(B)[None, :]).astype(jnp.float32)
  z = lambda *s: jnp.zeros((T, B) + s)
  return Transition(obs=jnp.repeat(code[..., None], 11, -1), action=jnp.repeat(code[..., None], 3, -1),
                    log_prob=z(), value=z(), next_obs=z(11), next_value=z(),
                    terminated=z().astype(bool), done=z().astype(bool), qpos=z(6), qvel=z(6),
                    true_reward=code, episode_return=z(),
                    episode_step=jnp.broadcast_to(jnp.arange(T)[:, None], (T, B)).astype(jnp.int32))


def test_cut_gathers_the_right_steps():
  tr = fake_transitions()
  t0 = jnp.array([[0, 5], [12, 3]])
  env = jnp.array([[1, 2], [3, 0]])
  frag = fragments.cut(tr, t0, env, 4)
  assert frag.obs.shape == (2, 2, 4, 11) and frag.qpos.shape == (2, 2, 4, 6)
  np.testing.assert_array_equal(frag.true_reward[0, 1], [502, 602, 702, 802])
  np.testing.assert_array_equal(frag.true_reward[1, 0], [1203, 1303, 1403, 1503])


def test_disagreement_selection_keeps_the_most_disputed_pairs():
  tr = fake_transitions()

  def member_returns(obs, action, counted=None):
    # member k scores a fragment by k * (sum of codes) mod 7: disagreement varies by pair
    s = obs[..., 0].sum(-1)
    return jnp.stack([jnp.sin(s * k) * 3 for k in (1.0, 2.0, 3.0)])

  key = jax.random.PRNGKey(4)
  chosen, score, _, _ = fragments.select(key, tr, 5, 4, "disagreement", 10, member_returns)
  everything, all_scores, _, _ = fragments.select(key, tr, 50, 4, "random", 1, member_returns)
  np.testing.assert_allclose(score, np.sort(np.asarray(all_scores))[::-1][:5], rtol=1e-6)
  np.testing.assert_array_equal(chosen.true_reward,
                                everything.true_reward[np.argsort(-np.asarray(all_scores))[:5]])


def sine_members(obs, action, counted=None):
  """Three members whose returns are different smooth functions of a fragment: [3, N, 2]."""
  s = obs[..., 0].sum(-1)
  return jnp.stack([jnp.sin(s * k) * 3 for k in (1.0, 2.0, 3.0)])


def select_five_of_fifty(mode, members=sine_members, even_margin=0.0):
  """``mode``'s choice of 5 pairs among 50 candidates, and the same 50 candidates drawn
  uniformly (same key): (chosen, its disagreement, all 50, their disagreement)."""
  key, tr = jax.random.PRNGKey(4), fake_transitions()
  chosen, spread, _, _ = fragments.select(key, tr, 5, 4, mode, 10, members, even_margin)
  everything, all_spread, _, _ = fragments.select(key, tr, 50, 4, "random", 1, members)
  return chosen, spread, everything, all_spread


def test_random_share_puts_uniform_picks_among_the_best_scored_pairs():
  """prefs.random_share: every fourth place of a query holds a candidate the score did not
  keep (the first drawn of the rest), the others are the best-scored in order; share 0 is
  plain top-k, share 1 the first candidates drawn (uniform)."""
  np.testing.assert_array_equal(fragments.uniform_slots(8, 0.25),
                                [0, 0, 0, 1, 0, 0, 0, 1])
  assert fragments.uniform_slots(32, 0.1).sum() == 3 and not fragments.uniform_slots(5, 0).any()
  assert fragments.uniform_slots(6, 1.0).all()
  score = jnp.array([0.5, 9.0, 1.0, 8.0, 7.0, 0.1, 6.0, 5.0, 4.0, 3.0, 2.0, 0.0])
  keep = np.asarray(fragments.keep_with_uniform_picks(score, 8, 0.25))
  np.testing.assert_array_equal(keep, [1, 3, 4, 0, 6, 7, 8, 2])
  np.testing.assert_array_equal(fragments.keep_with_uniform_picks(score, 3, 1.0), [0, 1, 2])
  # through select(): the same candidates, the best six in order, places 3 and 7 leftovers
  key, tr = jax.random.PRNGKey(4), fake_transitions()
  _, plain, _, _ = fragments.select(key, tr, 8, 4, "disagreement", 10, sine_members)
  _, mixed, _, _ = fragments.select(key, tr, 8, 4, "disagreement", 10, sine_members,
                                 random_share=0.25)
  mixed, plain = np.asarray(mixed), np.asarray(plain)
  np.testing.assert_allclose(mixed[[0, 1, 2, 4, 5, 6]], plain[:6])
  assert mixed[3] <= plain[5] and mixed[7] <= plain[5]
  with pytest.raises(Exception, match="prefs.random_share"):
    preferences.PreferenceConfig(random_share=1.5)


def test_entropy_selection_keeps_the_pairs_the_ensemble_calls_even():
  """Entropy selection ranks by how near 1/2 the members' mean P[1 preferred] is: a pair whose
  members are all mildly unsure beats one they are all sure of, and a pair two sure members
  split on also counts as unsure; the disagreement is still what select() reports."""
  returns = jnp.array([  # [K=2, N=4, 2]: N pairs (R(1), R(2)) per member
      [[5.0, 0.0], [0.2, 0.0], [6.0, 0.0], [0.0, 3.0]],
      [[5.0, 0.0], [0.1, 0.0], [-6.0, 0.0], [0.0, 2.0]],
  ])
  h = np.asarray(fragments.preference_entropy(returns))
  assert h[1] > 0.69 and h[0] < 0.05
  assert h[2] > 0.69                                      # sure members, split: unsure ensemble
  assert h[3] < h[2] and h[3] < h[1]
  np.testing.assert_allclose(fragments.preference_entropy(jnp.zeros((3, 1, 2))), np.log(2.0),
                             rtol=1e-6)

  chosen, spread, everything, all_spread = select_five_of_fifty("entropy")
  ent = np.asarray(fragments.preference_entropy(sine_members(everything.obs, everything.action)))
  top = np.argsort(-ent)[:5]
  np.testing.assert_array_equal(chosen.true_reward, everything.true_reward[top])
  np.testing.assert_allclose(spread, np.asarray(all_spread)[top], rtol=1e-6)
  # it is a different choice from the disagreement's on these candidates
  by_disagreement = np.argsort(-np.asarray(all_spread))[:5]
  assert set(top) != set(by_disagreement)


def test_information_selection_skips_the_ties_every_member_calls_even():
  """Information (BALD) scores a pair by the entropy of the members' mean prediction less their
  mean entropy: two fallen-hopper fragments that every member scores alike are entropy's top
  pick and information's last; a pair two sure members split on is information's top pick; a
  pair every member is sure of scores ~0. select() keeps the top of that ranking."""
  returns = jnp.array([  # [K=2, N=4, 2]
      [[-10.0, -10.0], [6.0, 0.0], [5.0, 0.0], [0.5, 0.0]],   # tie, split, sure, mild
      [[-10.0, -10.0], [-6.0, 0.0], [5.0, 0.0], [-0.5, 0.0]],
  ])
  ent = np.asarray(fragments.preference_entropy(returns))
  info = np.asarray(fragments.information_gain(returns))
  assert ent[0] == pytest.approx(np.log(2.0)) and ent[0] >= ent.max() - 1e-6
  assert info[0] == pytest.approx(0.0, abs=1e-6)
  assert info[2] == pytest.approx(0.0, abs=1e-2)
  assert np.argmax(info) == 1 and info[1] > 0.6
  assert 0.0 < info[3] < info[1]
  assert np.all(info >= -1e-6) and np.all(info <= ent + 1e-6)

  chosen, _, everything, _ = select_five_of_fifty("information")
  gain = np.asarray(fragments.information_gain(sine_members(everything.obs, everything.action)))
  np.testing.assert_array_equal(chosen.true_reward,
                                everything.true_reward[np.argsort(-gain)[:5]])


def fallen_and_sine_members(obs, action, counted=None):
  """Three members that score every fragment whose time code ends in 0-4 alike (a fallen
  hopper: every member calls a pair of two such fragments an even tie) and the rest by
  different smooth functions: [3, N, 2]."""
  s = obs[..., 0].sum(-1)
  fallen = (jnp.floor(s / 100.0) % 10) < 5
  return jnp.stack([jnp.where(fallen, -10.0, jnp.sin(s * k) * 3) for k in (1.0, 2.0, 3.0)])


def test_known_ties_rank_last_with_an_even_margin():
  """With ``even_margin``, a pair every member predicts within the margin of 1/2 (two fragments
  of a fallen hopper) is asked only when nothing else is left; without it, entropy selection
  asks for those first. The candidates left after the ties keep their entropy order."""
  returns = jnp.array([  # [K=3, N=4, 2]: known tie, split members, one member near 1/2, sure
      [[-10.0, -10.0], [0.05, 0.0], [0.05, 0.0], [5.0, 0.0]],
      [[-10.0, -10.0], [-0.05, 0.0], [0.02, 0.0], [5.0, 0.0]],
      [[-10.0, -10.0], [0.3, 0.0], [0.9, 0.0], [5.0, 0.0]],
  ])
  np.testing.assert_array_equal(fragments.known_ties(returns, 0.03), [True, False, False, False])
  np.testing.assert_array_equal(fragments.known_ties(returns, 0.0), [False] * 4)
  demoted = np.asarray(fragments.demote(fragments.preference_entropy(returns),
                                        fragments.known_ties(returns, 0.03)))
  assert np.argmin(demoted) == 0 and np.argsort(-demoted)[:3].tolist() == [1, 2, 3]

  ent = lambda pairs: np.asarray(fragments.preference_entropy(
      fallen_and_sine_members(pairs.obs, pairs.action)))
  tie = lambda pairs: np.asarray(fragments.known_ties(
      fallen_and_sine_members(pairs.obs, pairs.action), 0.03))
  plain, _, everything, _ = select_five_of_fifty("entropy", fallen_and_sine_members)
  assert tie(everything).sum() >= 5 and tie(plain).all()       # entropy alone: ties first
  chosen, _, _, _ = select_five_of_fifty("entropy", fallen_and_sine_members, 0.03)
  assert not tie(chosen).any()
  rest = ~tie(everything)
  expected = np.sort(ent(everything)[rest])[::-1][:5]
  np.testing.assert_allclose(np.sort(ent(chosen))[::-1], expected, rtol=1e-6)
  _, _, share, _ = fragments.select(jax.random.PRNGKey(4), fake_transitions(), 50, 4, "random", 1,
                                 fallen_and_sine_members, 0.03)
  assert float(share) == pytest.approx(tie(everything).mean())


def episode_clock(done, start):
  """The env's clock [T, B] for episodes that end where ``done`` says, each env's clock
  starting at ``start`` [B] (staggered) and restarting at 0 after each end."""
  clock = np.zeros(done.shape, np.int32)
  t = np.array(start)
  for i in range(done.shape[0]):
    clock[i] = t
    t = np.where(done[i], 0, t + 1)
  return clock


def test_same_step_pairs_start_both_fragments_at_one_episode_step():
  """With ``episode_step``, the two fragments of every pair start at the same step of their
  episodes, are two different fragments, never straddle a reset, and every valid start is still
  drawn as a first fragment; a start with no partner at its step is paired at random."""
  T, B, L = 40, 4, 6
  done = np.zeros((T, B), bool)
  done[[9, 29], 0] = True
  done[[14, 34], 1] = True
  done[[19], 2] = True
  done[[4, 24], 3] = True
  clock = episode_clock(done, start=[0, 3, 7, 2])
  t0, env = fragments.sample_starts(jax.random.PRNGKey(0), 3000, jnp.asarray(done), L,
                                    jnp.asarray(clock))
  t0, env = np.asarray(t0), np.asarray(env)
  valid = np.asarray(fragments.valid_starts(jnp.asarray(done), L))
  assert valid[t0, env].all()
  step = clock[t0, env]                                                # [N, 2]
  partners = {}
  for t, b in zip(*np.nonzero(valid)):
    partners.setdefault(clock[t, b], set()).add((t, b))
  has_partner = np.array([len(partners[s]) > 1 for s in step[:, 0]])
  assert has_partner.mean() > 0.8
  assert (step[has_partner, 0] == step[has_partner, 1]).all()
  same = (t0[:, 0] == t0[:, 1]) & (env[:, 0] == env[:, 1])
  assert not same[has_partner].any()
  # without a partner the second start is any valid start, not the first one's step
  assert (step[~has_partner, 0] != step[~has_partner, 1]).any()
  hit = np.zeros_like(valid)
  hit[t0[:, 0], env[:, 0]] = True
  assert (hit == valid).all()
  # independent starts (the default) rarely agree on the episode step
  t0, env = fragments.sample_starts(jax.random.PRNGKey(0), 3000, jnp.asarray(done), L)
  step = clock[np.asarray(t0), np.asarray(env)]
  assert (step[:, 0] == step[:, 1]).mean() < 0.2
  # select() passes the clock on when asked to
  tr = fake_transitions(T, B).replace(done=jnp.asarray(done), episode_step=jnp.asarray(clock))
  members = lambda o, a, c=None: jnp.zeros((1,) + o.shape[:2])
  pairs, _, _, _ = fragments.select(jax.random.PRNGKey(1), tr, 64, L, "random", 1, members,
                                 same_step=True)
  first_steps = np.asarray(pairs.true_reward)[:, :, 0].astype(int)      # t * 100 + env codes
  s = clock[first_steps // 100, first_steps % 100]
  partnered = np.array([len(partners[x]) > 1 for x in s[:, 0]])
  assert (s[partnered, 0] == s[partnered, 1]).all()


def test_fragments_never_straddle_an_episode_reset():
  """Episodes end at different steps in each env (and twice in env 1); every sampled fragment
  lies inside one episode: no step but its last ends an episode. Uniform starts would cross a
  reset in about a third of these fragments."""
  T, B, L = 40, 4, 8
  done = np.zeros((T, B), bool)
  done[[5, 17, 29], 0] = True
  done[[10, 11], 1] = True
  done[[20], 2] = True
  done[[3, 13, 23, 33], 3] = True
  tr = fake_transitions(T, B).replace(done=jnp.asarray(done))
  t0, env = fragments.sample_starts(jax.random.PRNGKey(0), 4000, tr.done, L)
  t0, env = np.asarray(t0).ravel(), np.asarray(env).ravel()
  inside = np.array([not done[t:t + L - 1, b].any() for t, b in zip(t0, env)])
  assert inside.all(), f"{(~inside).sum()} of {len(inside)} fragments straddle a reset"
  assert (t0 + L <= T).all()
  # every valid start is reachable: the sampler is uniform over them, not just a safe subset
  valid = np.asarray(fragments.valid_starts(tr.done, L))
  hit = np.zeros_like(valid)
  hit[t0, env] = True
  assert (hit == valid).all()
  # what uniform sampling over all starts would have done
  all_starts = [(t, b) for t in range(T - L + 1) for b in range(B)]
  crossing = np.mean([done[t:t + L - 1, b].any() for t, b in all_starts])
  assert crossing > 0.25
  # the pairs select() hands out obey the same rule
  pairs, _, _, _ = fragments.select(jax.random.PRNGKey(1), tr, 64, L, "random", 1,
                                 lambda o, a, c: jnp.zeros((1,) + o.shape[:2]))
  steps = np.asarray(pairs.true_reward) // 100        # the time code of each step
  assert (np.diff(steps, axis=-1) == 1).all()


def test_fragments_carry_the_applied_clipped_action():
  """The reward model learns from what the physics applied: actions clipped to [-1, 1]."""
  tr = fake_transitions()                               # raw "actions" up to 1903
  frag = fragments.cut(tr, jnp.array([[0, 5]]), jnp.array([[1, 2]]), 4)
  assert float(jnp.max(jnp.abs(frag.action))) <= 1.0
  np.testing.assert_array_equal(frag.action[0, 1, 1], [1.0, 1.0, 1.0])


def test_disagreement_ranks_pairs_when_members_are_saturated():
  """Three confident members (returns in the hundreds) that disagree on every pair: the variance
  of P[1 preferred] sits at its maximum for all of them, the score must still rank the pairs."""
  from rlhp_jax.reward_model import preference_probability
  n = 6
  base = jnp.linspace(50.0, 300.0, n)
  # member 0 prefers fragment 1 by `base`; members 1 and 2 prefer fragment 2 by varying margins
  diff = jnp.stack([base, -base * jnp.linspace(1.0, 0.1, n), -jnp.full(n, 100.0)])
  member_returns = jnp.stack([diff, jnp.zeros_like(diff)], -1)      # [K, N, 2]
  p = preference_probability(member_returns[..., 0], member_returns[..., 1], 0.1)
  old_score = np.asarray(jnp.var(p, axis=0))
  assert np.ptp(old_score) < 1e-6                       # saturated: no ranking at all
  score = np.asarray(fragments.disagreement(member_returns))
  assert np.ptp(score) > 0.05 and len(np.unique(np.round(score, 6))) == n
  # a pair all members agree on scores below one they split on
  agree = jnp.stack([jnp.array([100.0, 100.0]), jnp.array([90.0, -100.0]),
                     jnp.array([110.0, 100.0])])
  s = np.asarray(fragments.disagreement(jnp.stack([agree, jnp.zeros_like(agree)], -1)))
  assert s[0] < s[1]


def test_buffer_appends_valid_pairs_in_order_without_retrace():
  traces = []

  @jax.jit
  def add(buf, label, valid, key):
    traces.append(1)
    obs = jnp.broadcast_to(label[:, None, None, None], (4, 2, 3, 11))
    return preferences.add(buf, obs, jnp.zeros((4, 2, 3, 3)), label, valid, jnp.zeros((4, 2)),
                           key, 0.0, True)

  buf = preferences.init_buffer(10, 3, 11, 3, 2)
  assert int(preferences.equal_labels(buf)) == 0
  buf = add(buf, jnp.array([1.0, 0.0, 0.5, 1.0]), jnp.array([True, False, True, True]),
            jax.random.PRNGKey(0))
  assert int(preferences.equal_labels(buf)) == 1
  buf = add(buf, jnp.array([0.0, 0.0, 1.0, 1.0]), jnp.array([True, True, True, True]),
            jax.random.PRNGKey(1))
  buf = add(buf, jnp.array([0.5, 0.5, 0.5, 0.5]), jnp.array([True, True, True, True]),
            jax.random.PRNGKey(2))  # only 3 slots left: the 4th pair is dropped
  assert len(traces) == 1, "adding labels must not recompile"
  assert int(buf.count) == 10
  np.testing.assert_array_equal(buf.label, [1, 0.5, 1, 0, 0, 1, 1, 0.5, 0.5, 0.5])
  assert int(preferences.equal_labels(buf)) == 4
  np.testing.assert_array_equal(buf.obs[:, 0, 0, 0], buf.label)
  assert not buf.is_val.any()  # validation_fraction 0
  assert (np.asarray(buf.weight) >= 0).all() and np.asarray(buf.weight).mean() > 0.3


def test_label_schedule():
  cfg = preferences.PreferenceConfig(total_labels=700, initial_fraction=0.25,
                                     pairs_per_iteration=64, schedule_timescale=2e6)
  total = 5_000_000
  n, warm = preferences.pairs_to_request(cfg, 0, 0, total)
  assert int(n) == 64 and bool(warm)
  n, warm = preferences.pairs_to_request(cfg, 170, 0, total)
  assert int(n) == 5 and bool(warm)
  n, warm = preferences.pairs_to_request(cfg, 175, 0, total)
  assert int(n) == 0 and not bool(warm)
  due = [float(preferences.labels_due(cfg, t, total)) for t in np.linspace(0, total, 11)]
  assert due[0] == 175 and abs(due[-1] - 700) < 1e-3
  assert np.all(np.diff(due) > 0) and np.all(np.diff(np.diff(due)) < 0)  # decaying rate
  # paper shape: cumulative ~ log(1 + T / tau)
  expected = 175 + 525 * np.log1p(2.5e6 / 2e6) / np.log1p(5e6 / 2e6)
  np.testing.assert_allclose(due[5], expected, rtol=1e-5)


def test_labels_until_squeezes_the_schedule_into_the_first_part_of_the_run():
  """With ``labels_until`` 0.6 the whole budget is due at 60% of the run and stays due; before
  that the cumulative count follows the full-run schedule of a run 0.6 times as long."""
  base = dict(total_labels=700, initial_fraction=0.05, pairs_per_iteration=32,
              schedule_timescale=5e5)
  full = preferences.PreferenceConfig(**base)
  early = preferences.PreferenceConfig(**base, labels_until=0.6)
  total = 3_000_000
  due = jax.jit(lambda t: preferences.labels_due(early, t, total))
  assert int(jnp.floor(due(jnp.int32(1_800_000)))) == 700
  assert int(jnp.floor(due(jnp.int32(1_799_000)))) < 700
  assert float(due(jnp.int32(2_500_000))) == 700 and float(due(jnp.int32(total))) == 700
  for t in (0, 100_000, 900_000, 1_500_000):
    np.testing.assert_allclose(float(due(jnp.int32(t))),
                               float(preferences.labels_due(full, t, 1_800_000)), rtol=1e-6)
  # nothing is requested once the budget is asked, however many steps remain
  n, warm = preferences.pairs_to_request(early, 700, 2_000_000, total)
  assert int(n) == 0 and not bool(warm)
  assert float(preferences.labels_due(full, 2_000_000, total)) < 700
  # at 2 M steps with 650 asked, the squeezed schedule still owes 50 (a full batch of 32 now);
  # the full-run schedule owes none yet
  assert int(preferences.pairs_to_request(early, 650, 2_000_000, total)[0]) == 32
  assert int(preferences.pairs_to_request(full, 650, 2_000_000, total)[0]) == 0


def test_the_whole_budget_is_due_at_the_end_whatever_the_timescale():
  """At the last iteration every label of the budget is due, exactly, inside jit too (a last-bit
  difference in log1p once asked for 23 of 24)."""
  for tau in (5e5, 1e6, 2e6, 3e3):
    cfg = preferences.PreferenceConfig(total_labels=24, initial_fraction=0.25,
                                       pairs_per_iteration=4, schedule_timescale=tau)
    for total in (768, 1024, 2_000_000):
      due = jax.jit(lambda t: preferences.labels_due(cfg, t, total))(jnp.int32(total))
      assert int(jnp.floor(due)) == 24, (tau, total, float(due))


def test_weighted_choice_draws_in_proportion_and_never_a_zero_weight():
  """The inverse-CDF sampler behind fragment starts and reward minibatches: frequencies match
  the weights (chi-square at 100,000 draws), zero weights are never drawn (also at the ends of
  the array, where a draw rounding up to the total would land), all-zero weights draw
  uniformly, and it costs one uniform per draw, not one Gumbel variate per category per draw
  (``jax.random.categorical``'s 4.9 M per iteration in the main job)."""
  from rlhp_jax import sampling
  w = jnp.array([0.0, 3.0, 0.0, 1.0, 2.0, 0.0, 0.0, 4.0, 0.0])
  idx = np.asarray(sampling.weighted_choice(jax.random.PRNGKey(0), w, (100_000,)))
  counts = np.bincount(idx, minlength=len(w))
  assert counts[np.asarray(w) == 0].sum() == 0
  expected = 100_000 * np.asarray(w) / float(w.sum())
  pos = np.asarray(w) > 0
  chi2 = np.sum((counts[pos] - expected[pos]) ** 2 / expected[pos])
  assert chi2 < 16.3, chi2            # 3 degrees of freedom, p = 0.001
  uniform = np.asarray(sampling.weighted_choice(jax.random.PRNGKey(1), jnp.zeros(5), (5000,)))
  assert set(np.unique(uniform)) == set(range(5))
  # integer weights (bootstrap counts), one category: every draw is it
  one = sampling.weighted_choice(jax.random.PRNGKey(2), jnp.array([0, 0, 7, 0]), (64,))
  assert (np.asarray(one) == 2).all()
  # the jaxpr draws [shape] uniforms, nothing of [shape, n]
  jaxpr = str(jax.make_jaxpr(lambda k: sampling.weighted_choice(k, jnp.ones(7616), (320, 2)))(
      jax.random.PRNGKey(0)))
  assert "320,2,7616" not in jaxpr.replace(" ", "")


def test_archive_keeps_the_latest_fragments_each_inside_one_episode():
  tr = fake_transitions()
  tr = tr.replace(done=tr.done.at[9, :].set(True))          # every env's episode ends at step 9
  archive = fragments.init_archive(8, 4, 11, 3, 6, 6)
  archive = fragments.archive_add(archive, jax.random.PRNGKey(0), tr, 4, 5)
  first = np.asarray(archive.fragments.true_reward[:5])
  archive = fragments.archive_add(archive, jax.random.PRNGKey(1), tr, 4, 5)
  kept = np.asarray(archive.fragments.true_reward)
  assert int(archive.count) == 10 and archive.capacity == 8
  # a ring: the second write went to slots 5, 6, 7, 0, 1; slots 2-4 still hold the first's
  np.testing.assert_array_equal(kept[2:5], first[2:5])
  assert not np.array_equal(kept[[0, 1]], first[[0, 1]])
  for frag in kept:                       # code = 100 t + env: 4 consecutive steps of one env
    np.testing.assert_array_equal(np.diff(frag), 100)
    t0 = int(frag[0]) // 100
    assert t0 + 3 <= 9 or t0 >= 10       # never across the reset after step 9
  np.testing.assert_array_equal(archive.fragments.obs[..., 0], kept)   # leaves stay aligned


def test_archived_partners_replace_one_side_of_the_share_asked():
  tr = fake_transitions()
  empty = fragments.init_archive(16, 4, 11, 3, 6, 6)
  archive = fragments.archive_add(empty, jax.random.PRNGKey(0), tr, 4, 16)
  archive = archive.replace(fragments=jax.tree.map(lambda x: -1.0 - x, archive.fragments))
  key = jax.random.PRNGKey(3)
  cand = fragments.cut(tr, *fragments.sample_starts(key, 40, tr.done, 4), 4)
  mixed, used = fragments.with_archived_partners(key, cand, archive, 0.25)
  used = np.asarray(used)
  np.testing.assert_array_equal(used, np.arange(40) < 10)
  r = np.asarray(mixed.true_reward)
  past = r < 0                                                  # archived fragments are negative
  np.testing.assert_array_equal(past.all(-1).sum(-1), used.astype(int))  # one side, whole
  assert 0 < past[used, 0, 0].sum() < 10               # the archived side is not always second
  np.testing.assert_array_equal(r[~used], np.asarray(cand.true_reward)[~used])
  same, none = fragments.with_archived_partners(key, cand, empty, 0.25)   # empty: unchanged
  assert not np.asarray(none).any()
  np.testing.assert_array_equal(same.true_reward, cand.true_reward)
  # through select: the rollout's starts are those drawn without an archive, and the share of
  # kept pairs with an archived fragment is reported
  plain, _, _, share0 = fragments.select(key, tr, 40, 4, "random", 1, sine_members)
  withp, _, _, share = fragments.select(key, tr, 40, 4, "random", 1, sine_members,
                                        archive=archive, archive_share=0.25)
  assert float(share0["archived"]) == 0.0 and float(share["archived"]) == 0.25
  assert float(share["branched"]) == 0.0
  np.testing.assert_array_equal(np.asarray(withp.true_reward)[10:],
                                np.asarray(plain.true_reward)[10:])
  with pytest.raises(Exception, match="prefs.archive_size"):
    preferences.PreferenceConfig(archive_size=2, pairs_per_iteration=4)
  with pytest.raises(Exception, match="prefs.archive_share"):
    preferences.PreferenceConfig(archive_share=1.5)


def test_fragments_of_varying_length_count_their_first_steps():
  """``with_lengths`` draws each fragment's length from min_length .. L: it holds its first
  steps (``counted`` 1), the rest count for nothing, and the oracle's reward a synthetic teacher
  sums is 0 past the end. ``select`` draws them before scoring and hands the scorer ``counted``.
  At min_length = L nothing changes."""
  T, B, L = 40, 4, 8
  tr = fake_transitions(T, B)
  pairs = fragments.cut(tr, *fragments.sample_starts(jax.random.PRNGKey(0), 500, tr.done, L), L)
  np.testing.assert_array_equal(pairs.counted, 1.0)
  assert fragments.with_lengths(jax.random.PRNGKey(1), pairs, L) is pairs
  short = fragments.with_lengths(jax.random.PRNGKey(1), pairs, 3)
  counted = np.asarray(short.counted)
  held = counted.sum(-1)
  assert set(np.unique(held).astype(int)) == set(range(3, L + 1))    # every length drawn
  np.testing.assert_array_equal(counted, np.arange(L) < held[..., None])   # a prefix
  assert not np.array_equal(held[:, 0], held[:, 1])                   # drawn per fragment
  np.testing.assert_array_equal(short.counted_reward,
                                np.where(counted > 0, np.asarray(pairs.true_reward), 0.0))
  np.testing.assert_array_equal(short.obs, pairs.obs)                  # the steps themselves stay
  seen = {}

  def members(obs, action, counted):
    seen["counted"] = counted
    return jnp.stack([(obs[..., 0] * counted).sum(-1)])

  chosen, _, _, _ = fragments.select(jax.random.PRNGKey(2), tr, 16, L, "random", 1, members,
                                     min_length=3)
  held = np.asarray(chosen.counted).sum(-1)
  assert held.min() >= 3 and held.max() <= L and len(np.unique(held)) > 1
  assert seen["counted"].shape == (16, 2, L)
