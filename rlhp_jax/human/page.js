// The labelling page: shows the first pending pair, sends the answer with the pair's nonce,
// then asks the server again (it is the source of truth: a reload shows the next unjudged pair).
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const KEYS = {"1": "left", "2": "right", "3": "equal", "4": "cant_tell", "0": "cant_tell"};
const NAMES = {left: "left is better", right: "right is better", equal: "equal",
               cant_tell: "can't tell", failed: "failed to load"};
const POLL_MS = 2000;
const RUN_POLL_MS = 30000;

const $ = (id) => document.getElementById(id);
let current = null;  // the pair on screen
let busy = false;    // an answer is on its way
let pollTimer = null;
let runTimer = null;

function withToken(path, extra = "") {
  const sep = path.includes("?") ? "&" : "?";
  return `${path}${sep}token=${encodeURIComponent(TOKEN)}${extra}`;
}

async function api(path, options) {
  const response = await fetch(withToken(path), options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || response.statusText);
    error.status = response.status;
    error.code = body.code;
    throw error;
  }
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function showCounter(state) {
  $("counter").replaceChildren();
  for (const [label, value] of [["judged", state.judged], ["pending", state.waiting]]) {
    const number = document.createElement("b");
    number.textContent = value;
    $("counter").append(`${label} `, number, " \u00a0 ");
  }
  $("counter").dataset.judged = state.judged;
  $("counter").dataset.pending = state.waiting;
}

function setButtons(enabled) {
  for (const button of document.querySelectorAll("button[data-answer]")) {
    button.disabled = !enabled;
    button.classList.remove("chosen");
  }
}

function setVideo(video, src) {
  video.src = withToken(src);
  video.play().catch(() => {});  // autoplay of muted video is allowed; ignore a refusal
}

function setState(state) {
  document.body.dataset.state = state;  // loading | judging | sending | waiting (CSS, tests)
}

function show(pair) {
  setState(pair ? "judging" : "waiting");
  if (!pair) {
    current = null;
    pollTimer = setTimeout(refresh, POLL_MS);
    return;
  }
  if (current && current.pair_id === pair.pair_id) {
    current = pair;  // same pair (maybe a new nonce): keep the clips playing
    return;
  }
  current = pair;
  document.body.dataset.pair = pair.pair_id;
  setVideo($("left"), pair.left);
  setVideo($("right"), pair.right);
  $("pair-info").textContent = `pair ${pair.pair_id} · iteration ${pair.iteration}`;
  setButtons(true);
}

async function refresh() {
  clearTimeout(pollTimer);
  let state;
  try {
    state = await api("/api/pending");
  } catch (error) {
    showError(error);
    pollTimer = setTimeout(refresh, 5 * POLL_MS);
    return;
  }
  $("instruction").textContent = state.instruction;
  showCounter(state);
  show(state.pending[0] || null);
}

function showError(error) {
  if (error.status === 401 || error.status === 403) {
    setStatus("This link is not valid (a restarted run prints a new one): open the link " +
              "printed in the terminal.", true);
  } else if (error.status) {
    setStatus(`${error.message} (HTTP ${error.status})`, true);
  } else {
    setStatus("The server does not answer (the run ended or stopped); retrying\u2026", true);
  }
}

async function send(answer) {
  if (!current || busy) return;
  busy = true;
  setState("sending");
  const pair = current;
  setButtons(false);
  document.querySelector(`button[data-answer="${answer}"]`).classList.add("chosen");
  try {
    const result = await api("/api/answer", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({pair_id: pair.pair_id, answer, nonce: pair.nonce}),
    });
    showCounter(result);
    setStatus(`saved: ${pair.pair_id} \u2192 ${NAMES[answer]}`);
  } catch (error) {
    showError(error);
  }
  current = null;
  busy = false;
  await refresh();
}

function toggle(video) {
  if (video.paused) video.play().catch(() => {});
  else video.pause();
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const key = event.key.toLowerCase();
  if (KEYS[key]) {
    event.preventDefault();
    send(KEYS[key]);
  } else if (key === "q") {
    toggle($("left"));
  } else if (key === "w") {
    toggle($("right"));
  }
}

// -- run view: stats, learning curve (redrawn by the server when stale), policy video --------
function fmt(x, digits = 1) {
  return x === null || x === undefined ? "\u2013" : Number(x).toFixed(digits);
}

async function refreshRun() {
  clearTimeout(runTimer);
  if (!$("run").open) return;
  try {
    const run = await api("/api/run");
    $("run-stats").textContent =
        `${run.name}: iteration ${run.iterations} · ${Number(run.env_steps).toLocaleString()} ` +
        `env steps · labels ${fmt(run.labels, 0)} · eval return ${fmt(run.eval_return)} · ` +
        `train return ${fmt(run.train_return)} · learned/true reward corr ` +
        `${fmt(run.reward_true_corr, 2)}`;
    if (run.curve) $("curve").src = withToken("/run/learning_curve.png", `&t=${Date.now()}`);
    $("policy").hidden = !run.policy;
    if (run.policy) {
      const src = withToken("/run/policy.mp4", `&t=${run.policy_time}`);
      if (!$("policy").src.endsWith(src)) $("policy").src = src;
    }
  } catch (error) {
    $("run-stats").textContent = `run view unavailable: ${error.message}`;
  }
  runTimer = setTimeout(refreshRun, RUN_POLL_MS);
}

for (const button of document.querySelectorAll("button[data-answer]")) {
  button.addEventListener("click", () => send(button.dataset.answer));
}
document.addEventListener("keydown", onKey);
$("run").addEventListener("toggle", refreshRun);
refresh();
