"""The local Toloka stand-in, driven by the real toloka-kit client (no jax, no network)."""

import collections
import datetime
import functools
import http.server
import threading

import httpx
import pytest
import toloka.client as tc
from toloka.client import exceptions as tx
from toloka.client.analytics_request import (CompletionPercentagePoolAnalytics,
                                             RealTasksCountPoolAnalytics,
                                             SubmittedAssignmentsCountPoolAnalytics)
from toloka.client.primitives.retry import TolokaRetry
from toloka.client.project.field_spec import StringSpec, UrlSpec
from toloka.client.project.task_spec import TaskSpec
from toloka.client.project.view_spec import ClassicViewSpec

from support.toloka_standin import (ANSWER_ERROR, ANSWER_LEFT, ANSWER_RIGHT, WORKER_FAILED,
                                    WORKER_HONEST, WORKER_SPAMMER, TolokaStandIn)


def oracle(input_values):
  """Even-numbered pairs: left is better; odd: right."""
  return 1.0 if int(input_values["video1"].rsplit("/", 1)[-1].split("-")[0]) % 2 == 0 else 0.0


@pytest.fixture
def standin():
  with TolokaStandIn(num_workers=20, spammer_share=0.1, failed_share=0.05, noise=0.1, seed=0,
                     oracle=oracle) as s:
    yield s
    assert not s.errors, s.errors[0]


def client_for(standin, token=None, **kwargs):
  kwargs.setdefault("retries", 0)
  return tc.TolokaClient(token or standin.token, url=standin.url, **kwargs)


@pytest.fixture
def client(standin):
  return client_for(standin)


def make_project(client):
  spec = TaskSpec(input_spec={"video1": UrlSpec(), "video2": UrlSpec()},
                  output_spec={"result": StringSpec(
                      allowed_values=[ANSWER_LEFT, ANSWER_RIGHT, ANSWER_ERROR])},
                  view_spec=ClassicViewSpec(markup="<video/>", script="", styles=""))
  return client.create_project(tc.Project(public_name="Which robot moves better?",
                                          public_description="Compare two clips", task_spec=spec))


def make_pool(client, project_id, overlap=3, page=5, **kwargs):
  week = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=7)
  pool = tc.Pool(project_id=project_id, private_name="base", may_contain_adult_content=False,
                 will_expire=week,
                 reward_per_assignment=0.01, assignment_max_duration_seconds=600,
                 defaults=tc.Pool.Defaults(default_overlap_for_new_task_suites=overlap), **kwargs)
  pool.set_mixer_config(real_tasks_count=page, golden_tasks_count=0, training_tasks_count=0)
  return client.create_pool(pool)


def pair_tasks(pool_id, indices, base="http://clips.invalid"):
  return [tc.Task(pool_id=pool_id, input_values={"video1": f"{base}/{i}-left.mp4",
                                                 "video2": f"{base}/{i}-right.mp4"})
          for i in indices]


def completion(client, pool_id):
  op = client.get_analytics([CompletionPercentagePoolAnalytics(subject_id=pool_id)])
  op = client.wait_operation(op, disable_progress=True)
  return op.details["value"][0]["result"]["value"]


def test_project_training_pool_roundtrip(standin, client):
  project = make_project(client)
  assert client.get_project(project.id).public_name == "Which robot moves better?"
  project.public_name = "Renamed"
  assert client.update_project(project.id, project).public_name == "Renamed"
  training = client.create_training(tc.Training(
      project_id=project.id, private_name="training", may_contain_adult_content=False,
      assignment_max_duration_seconds=600, training_tasks_in_task_suite_count=3,
      task_suites_required_to_pass=1, retry_training_after_days=1, inherited_instructions=True))
  assert client.get_training(training.id).status == tc.Training.Status.CLOSED
  lesson = tc.Task(pool_id=training.id, infinite_overlap=True,
                   input_values={"video1": "http://c.invalid/0-l.mp4",
                                 "video2": "http://c.invalid/0-r.mp4"},
                   known_solutions=[tc.Task.KnownSolution(output_values={"result": ANSWER_LEFT})],
                   message_on_unknown_solution="The left robot hops forward.")
  assert len(client.create_tasks([lesson], allow_defaults=True).items) == 1
  assert client.open_training(training.id).status == tc.Training.Status.OPEN
  (stored,) = client.get_tasks(pool_id=training.id)
  assert stored.infinite_overlap
  assert stored.known_solutions[0].output_values == {"result": ANSWER_LEFT}
  pool = make_pool(client, project.id)
  pool.set_training_requirement(training_pool_id=training.id, training_passing_skill_value=80)
  pool = client.update_pool(pool.id, pool)
  got = client.get_pool(pool.id)
  assert got.quality_control.training_requirement.training_pool_id == training.id
  assert got.status == tc.Pool.Status.CLOSED and got.mixer_config.real_tasks_count == 5
  assert [p.id for p in client.get_pools(project_id=project.id, status="CLOSED")] == [pool.id]
  assert list(client.get_pools(project_id=project.id, status="OPEN")) == []
  assert client.get_requester().balance > 0
  skill = client.create_skill(tc.Skill(name="clip judge"))
  assert [s.id for s in client.get_skills(name="clip judge")] == [skill.id]


def test_clone_update_create_open_poll_until_done(standin, client):
  standin.auto_advance = 2
  project = make_project(client)
  base = make_pool(client, project.id, overlap=5)
  pool = client.clone_pool(base.id)
  assert pool.id != base.id and pool.status == tc.Pool.Status.CLOSED
  assert pool.private_name == "base" and pool.project_id == project.id
  pool.private_name = "batch 1"
  pool.set_mixer_config(real_tasks_count=4, golden_tasks_count=0, training_tasks_count=0)
  pool = client.update_pool(pool.id, pool)
  assert pool.private_name == "batch 1" and pool.mixer_config.real_tasks_count == 4
  n_tasks = 40
  created = client.create_tasks(pair_tasks(pool.id, range(n_tasks)), allow_defaults=True)
  assert len(created.items) == n_tasks and standin.tasks_created == n_tasks
  assert client.open_pool(pool.id).status == tc.Pool.Status.OPEN

  seen = [completion(client, pool.id)]
  while seen[-1] < 100:
    seen.append(completion(client, pool.id))
  assert seen == sorted(seen) and len(seen) > 3  # progress shows while polling
  closed = client.get_pool(pool.id)
  assert closed.status == tc.Pool.Status.CLOSED
  assert closed.last_close_reason == tc.Pool.CloseReason.COMPLETED
  assert client.get_pool(base.id).status == tc.Pool.Status.CLOSED  # the base pool is untouched

  assignments = list(client.get_assignments(pool_id=pool.id, status=["SUBMITTED", "ACCEPTED"]))
  answers = collections.defaultdict(list)
  for a in assignments:
    assert a.pool_id == pool.id and a.status == tc.Assignment.SUBMITTED
    assert len(a.tasks) <= 4 and len(a.tasks) == len(a.solutions)
    assert a.submitted >= a.created
    for task, solution in zip(a.tasks, a.solutions):
      answers[task.id].append((a.user_id, solution.output_values["result"], task.input_values))
  assert len(answers) == n_tasks
  assert sum(len(v) for v in answers.values()) == 5 * n_tasks
  agree = 0
  for task_answers in answers.values():
    users = [u for u, _, _ in task_answers]
    assert len(set(users)) == 5  # overlap answers from distinct workers
    assert {r for _, r, _ in task_answers} <= {ANSWER_LEFT, ANSWER_RIGHT, ANSWER_ERROR}
    honest = collections.Counter(r for u, r, _ in task_answers
                                 if standin.workers[u] == WORKER_HONEST)
    truth = ANSWER_LEFT if oracle(task_answers[0][2]) == 1.0 else ANSWER_RIGHT
    agree += honest[truth] > sum(honest.values()) / 2
  assert agree / n_tasks > 0.9
  kinds = {standin.workers[a.user_id] for a in assignments}
  assert kinds == {WORKER_HONEST, WORKER_SPAMMER, WORKER_FAILED}
  failed = [r for v in answers.values() for u, r, _ in v if standin.workers[u] == WORKER_FAILED]
  assert failed and set(failed) == {ANSWER_ERROR}

  op = client.wait_operation(client.get_analytics([
      RealTasksCountPoolAnalytics(subject_id=pool.id),
      SubmittedAssignmentsCountPoolAnalytics(subject_id=pool.id)]), disable_progress=True)
  assert [v["result"] for v in op.details["value"]] == [n_tasks, len(assignments)]


def test_tasks_added_to_an_open_pool_are_served(standin, client):
  pool = make_pool(client, make_project(client).id, overlap=2, page=3)
  client.create_tasks(pair_tasks(pool.id, range(6)), allow_defaults=True, open_pool=True)
  assert client.get_pool(pool.id).is_open()
  assert standin.advance(2) == 2
  client.create_tasks(pair_tasks(pool.id, range(6, 9)), allow_defaults=True)
  assert standin.advance() > 0
  assert client.get_pool(pool.id).is_closed()
  counts = collections.Counter(a["task_id"] for a in standin.answers(pool.id))
  assert len(counts) == 9 and set(counts.values()) == {2}


def test_overlap_above_crowd_size_never_completes(standin, client):
  pool = make_pool(client, make_project(client).id, overlap=1)
  client.create_tasks([tc.Task(pool_id=pool.id, overlap=25, input_values={
      "video1": "http://c.invalid/0-l.mp4", "video2": "http://c.invalid/0-r.mp4"})])
  client.open_pool(pool.id)
  assert standin.advance() == 20  # every worker once, then nobody can take it
  assert client.get_pool(pool.id).is_open()
  assert completion(client, pool.id) == 80


def test_close_reopen_and_conflicts(standin, client):
  pool = make_pool(client, make_project(client).id)
  client.create_tasks(pair_tasks(pool.id, range(3)), allow_defaults=True)
  assert client.open_pool(pool.id).is_open()
  assert client.open_pool(pool.id).is_open()  # already open: 204, the client just re-reads
  with pytest.raises(tx.ConflictStateApiError):
    client.update_pool(pool.id, client.get_pool(pool.id))
  closed = client.close_pool(pool.id)
  assert closed.is_closed() and closed.last_close_reason == tc.Pool.CloseReason.MANUAL
  assert standin.advance() == 0  # closed pools get no work
  assert client.archive_pool(pool.id).is_archived()
  with pytest.raises(tx.ValidationApiError):
    client.create_tasks(pair_tasks(pool.id, range(1)), allow_defaults=True)


def test_pagination_of_tasks_and_assignments(standin, client):
  pool = make_pool(client, make_project(client).id, overlap=1, page=2)
  client.create_tasks(pair_tasks(pool.id, range(23)), allow_defaults=True, async_mode=False)
  first = client.find_tasks(pool_id=pool.id, sort="id", limit=10)
  assert len(first.items) == 10 and first.has_more
  rest = client.find_tasks(pool_id=pool.id, sort="id", limit=10, id_gt=first.items[-1].id)
  assert rest.items[0].id > first.items[-1].id
  before = standin.requests.count(("GET", "/api/v1/tasks"))
  tasks = list(client.get_tasks(pool_id=pool.id, batch_size=7))
  assert standin.requests.count(("GET", "/api/v1/tasks")) - before == 4
  assert [t.input_values["video1"] for t in tasks] == \
      [t.input_values["video1"] for t in pair_tasks(pool.id, range(23))]
  last = client.find_tasks(pool_id=pool.id, sort="-id", limit=1).items[0]
  assert last.id == tasks[-1].id

  client.open_pool(pool.id)
  assert standin.advance() == 12
  before = standin.requests.count(("GET", "/api/v1/assignments"))
  assignments = list(client.get_assignments(pool_id=pool.id, batch_size=5))
  assert standin.requests.count(("GET", "/api/v1/assignments")) - before == 3
  assert len({a.id for a in assignments}) == 12
  assert [a.id for a in assignments] == sorted(a.id for a in assignments)
  user = assignments[0].user_id
  mine = list(client.get_assignments(pool_id=pool.id, user_id=user))
  assert mine and all(a.user_id == user for a in mine)
  task_id = assignments[0].tasks[0].id
  assert [a.id for a in client.get_assignments(task_id=task_id)] == [assignments[0].id]


def test_wrong_token_raises_authentication_error(standin):
  with pytest.raises(tx.AuthenticationApiError) as e:
    client_for(standin, token="not-the-token").get_requester()
  assert e.value.status_code == 401 and e.value.code == "AUTHENTICATION_ERROR"


def test_unknown_ids_raise_not_found(client):
  for call in (lambda: client.get_pool("999"), lambda: client.clone_pool("999"),
               lambda: client.get_project("1"), lambda: client.get_operation("nope"),
               lambda: client.get_task("00--00"), lambda: client.open_pool("42")):
    with pytest.raises(tx.DoesNotExistApiError) as e:
      call()
    assert e.value.status_code == 404


def test_bad_bodies_raise_validation_errors(client):
  project = make_project(client)
  with pytest.raises(tx.ValidationApiError) as e:
    client.create_pool(tc.Pool(project_id=project.id, private_name="incomplete"))
  missing = {"will_expire", "reward_per_assignment", "may_contain_adult_content"}
  assert missing <= set(e.value.payload)
  pool = make_pool(client, project.id)
  with pytest.raises(tx.ValidationApiError) as e:  # allow_defaults=False and no overlap
    client.create_task(pair_tasks(pool.id, range(1))[0], async_mode=False)
  assert "overlap" in e.value.payload


@pytest.mark.parametrize("async_mode", [False, True])
def test_per_task_validation_errors(standin, client, async_mode):
  pool = make_pool(client, make_project(client).id)
  good = pair_tasks(pool.id, range(2))
  bad = [tc.Task(pool_id=pool.id, input_values={"video1": "http://c.invalid/9-l.mp4"}),
         tc.Task(pool_id=pool.id, input_values={"video1": "not a url", "video2": "http://c/x",
                                                "extra": 1}),
         tc.Task(pool_id="31337", input_values={"video1": "http://c/a", "video2": "http://c/b"})]
  tasks = [good[0], bad[0], good[1], bad[1], bad[2]]
  with pytest.raises(tx.ValidationApiError) as e:
    client.create_tasks(tasks, allow_defaults=True, async_mode=async_mode)
  assert set(e.value.payload) == {"1", "3", "4"} and standin.tasks_created == 0
  result = client.create_tasks(tasks, allow_defaults=True, skip_invalid_items=True,
                               async_mode=async_mode)
  assert sorted(result.items) == ["0", "2"] and standin.tasks_created == 2
  errors = {k: {f: err.code if hasattr(err, "code") else err["code"] for f, err in v.items()}
            for k, v in result.validation_errors.items()}
  assert errors == {"1": {"input_values.video2": "VALUE_REQUIRED"},
                    "3": {"input_values.video1": "INVALID_URL_SYNTAX",
                          "input_values.extra": "VALUE_NOT_ALLOWED"},
                    "4": {"pool_id": "DOES_NOT_EXIST"}}


def test_async_task_creation_operation(standin, client):
  standin.operation_polls = 1  # the operation reports RUNNING once: wait_operation polls
  pool = make_pool(client, make_project(client).id)
  op = client.create_tasks_async(pair_tasks(pool.id, range(3)), allow_defaults=True)
  assert op.status == tc.operations.Operation.Status.PENDING
  done = client.wait_operation(op, disable_progress=True)
  assert done.status == tc.operations.Operation.Status.SUCCESS
  assert done.details["success_count"] == 3
  log = client.get_operation_log(op.id)
  assert [item.type for item in log] == ["TASK_CREATE"] * 3 and all(i.success for i in log)
  assert {i.output["task_id"] for i in log} == {t.id for t in client.get_tasks(pool_id=pool.id)}
  # the same operation id again: Toloka answers OPERATION_ALREADY_EXISTS, the client re-reads it
  again = client.create_tasks_async(pair_tasks(pool.id, range(3)), allow_defaults=True,
                                    operation_id=op.id)
  assert again.id == op.id and standin.tasks_created == 3
  task = client.create_task(pair_tasks(pool.id, [7])[0], allow_defaults=True)  # async by default
  assert task.overlap == 3 and task.input_values["video1"].endswith("/7-left.mp4")


@pytest.mark.parametrize("status,error", [(500, tx.InternalApiError),
                                          (503, tx.RemoteServiceUnavailableApiError),
                                          (429, tx.TooManyRequestsApiError)])
def test_injected_failures_surface_as_client_errors(standin, client, status, error):
  pool = make_pool(client, make_project(client).id)
  standin.inject_failures(status=status, times=2, path_contains=f"/pools/{pool.id}")
  client.get_requester()  # other paths are unaffected
  for _ in range(2):
    with pytest.raises(error) as e:
      client.get_pool(pool.id)
    assert e.value.status_code == status
  if status == 429:
    assert e.value.response.headers["Retry-After"] == "1"
  assert client.get_pool(pool.id).id == pool.id  # the failures are used up


def test_injected_failures_and_a_retrying_client(standin):
  retryer = functools.partial(TolokaRetry, total=3, status_forcelist=[429, 500, 503],
                              allowed_methods=["GET", "POST"], backoff_factor=0, retry_quotas=None)
  client = client_for(standin, retryer_factory=retryer, retries=None)
  standin.inject_failures(status=503, times=2, path_contains="/v1/requester")
  before = len(standin.requests)
  assert client.get_requester().id == standin.requester_id
  assert len(standin.requests) - before == 3
  standin.inject_failures(status=500, times=1, empty_body=True, method="GET")
  with pytest.raises(httpx.HTTPStatusError):
    client_for(standin).get_requester()


def test_fetch_videos_answers_error_for_missing_clips(tmp_path):
  for name in ("0-left.mp4", "0-right.mp4"):
    (tmp_path / name).write_bytes(b"\x00\x00\x00\x18ftypmp42")
  quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
  clips = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(quiet, directory=str(tmp_path)))
  threading.Thread(target=clips.serve_forever, daemon=True).start()
  base = f"http://127.0.0.1:{clips.server_address[1]}"
  try:
    with TolokaStandIn(num_workers=6, spammer_share=0.0, failed_share=0.0, noise=0.0,
                       oracle=oracle, fetch_videos=True) as s:
      client = client_for(s)
      pool = make_pool(client, make_project(client).id, overlap=3, page=2)
      client.create_tasks(pair_tasks(pool.id, [0, 1], base=base), allow_defaults=True,
                          open_pool=True)
      s.advance()
      by_pair = collections.defaultdict(set)
      for a in s.answers(pool.id):
        by_pair[a["input_values"]["video1"].rsplit("/", 1)[-1]].add(a["answer"])
      assert by_pair == {"0-left.mp4": {ANSWER_LEFT}, "1-left.mp4": {ANSWER_ERROR}}
      assert (f"{base}/0-right.mp4", True) in s.video_fetches
      assert (f"{base}/1-left.mp4", False) in s.video_fetches
  finally:
    clips.shutdown()
    clips.server_close()


def test_answers_are_deterministic_and_auto_accepted():
  def run():
    with TolokaStandIn(seed=3, oracle=lambda iv: 0.5) as s:
      client = client_for(s)
      pool = make_pool(client, make_project(client).id, auto_accept_solutions=True)
      client.create_tasks(pair_tasks(pool.id, range(10)), allow_defaults=True, open_pool=True)
      s.advance()
      assignments = list(client.get_assignments(pool_id=pool.id, status="ACCEPTED"))
      assert assignments and all(a.accepted is not None for a in assignments)
      return sorted((a["task_id"], a["user_id"], a["answer"]) for a in s.answers())
  assert run() == run()


def test_async_task_creation_takes_effect_when_the_operation_finishes(standin, client):
  standin.operation_polls = 2
  pool = make_pool(client, make_project(client).id)
  op_id = "1b4e28ba-2fa1-11d2-883f-0016a3ca1b7d"
  op = client.create_tasks_async(pair_tasks(pool.id, range(3)), allow_defaults=True,
                                 operation_id=op_id)
  assert op.status == tc.operations.Operation.Status.PENDING
  assert standin.tasks_created == 0 and not list(client.get_tasks(pool_id=pool.id))
  # a resend of the same batch while it runs (a retry, a resumed run) creates nothing
  again = client.create_tasks_async(pair_tasks(pool.id, range(3)), allow_defaults=True,
                                    operation_id=op_id)
  assert again.id == op_id and standin.tasks_created == 0
  client.get_operation(op_id)                        # the second poll finishes it
  assert standin.tasks_created == 3
  done = client.get_operation(op_id)
  assert done.status == tc.operations.Operation.Status.SUCCESS
  assert done.details["success_count"] == 3
  assert len(client.get_operation_log(op_id)) == 3
  assert len(list(client.get_tasks(pool_id=pool.id))) == 3
  # an operation nobody polls (its client died) still finishes as time goes by
  client.create_tasks_async(pair_tasks(pool.id, [5]), allow_defaults=True)
  for _ in range(3):
    client.get_requester()
  assert standin.tasks_created == 3
  client.get_requester()
  assert standin.tasks_created == 4


def test_a_failure_after_the_request_took_effect(standin, client):
  pool = make_pool(client, make_project(client).id)
  standin.inject_failures(status=503, times=1, path_contains="/v1/tasks", method="POST",
                          after=True)
  with pytest.raises(tx.RemoteServiceUnavailableApiError):
    client.create_tasks_async(pair_tasks(pool.id, range(2)), allow_defaults=True)
  assert standin.tasks_created == 2                  # Toloka did it; the answer was lost


def test_taken_pages_are_submitted_after_the_pool_closes(standin, client):
  pool = make_pool(client, make_project(client).id, overlap=1, page=1)
  client.create_tasks(pair_tasks(pool.id, range(2)), allow_defaults=True)
  client.open_pool(pool.id)
  assert standin.take(2) == 2
  active = list(client.get_assignments(pool_id=pool.id, status="ACTIVE"))
  assert len(active) == 2 and not active[0].solutions
  assert client.get_pool(pool.id).is_open()          # taken is not done
  client.close_pool(pool.id)
  assert standin.advance() == 2                      # late, but submitted (and paid)
  done = list(client.get_assignments(pool_id=pool.id, status=["SUBMITTED", "ACCEPTED"]))
  assert len(done) == 2 and all(a.solutions for a in done)
  assert not list(client.get_assignments(pool_id=pool.id, status="ACTIVE"))


def test_pools_close_for_lack_of_balance_and_other_reasons(standin, client):
  project = make_project(client)
  standin.balance = 0.015                            # one page of 0.01
  pool = make_pool(client, project.id, overlap=1, page=1)
  client.create_tasks(pair_tasks(pool.id, range(3)), allow_defaults=True)
  client.open_pool(pool.id)
  assert standin.advance() == 1
  closed = client.get_pool(pool.id)
  assert closed.is_closed() and closed.last_close_reason.value == "NOT_ENOUGH_BALANCE"
  other = make_pool(client, project.id)
  client.create_tasks(pair_tasks(other.id, range(1)), allow_defaults=True)
  client.open_pool(other.id)
  standin.close_pool(other.id, "EXPIRED")
  assert client.get_pool(other.id).last_close_reason.value == "EXPIRED"
