"""Pipeline schedules as explicit tick tables: GPipe and 1F1B (PipeDream-Flush).

A schedule for ``S`` stages and ``M`` microbatches is a table ``[ticks, S, 2]`` of
``(kind, microbatch)`` with kind ``IDLE``/``FORWARD``/``BACKWARD``: what each stage does at
each tick. One forward or one backward of one microbatch on one stage takes one tick, and a
result sent at tick ``t`` (activation to ``s + 1``, gradient to ``s - 1``) is usable from
tick ``t + 1``. The executor (:mod:`jaxdl.parallel.pipeline`) runs exactly this table, so
bubbles and buffer sizes counted here are those of the compiled program.

Each stage has an order of operations; the table is built by letting every stage run its
next operation as soon as its inputs have arrived (greedy, synchronous ticks):

* GPipe (Huang et al., 2019, "GPipe: Efficient Training of Giant Neural Networks using
  Pipeline Parallelism"): all ``M`` forwards, then all ``M`` backwards. Every stage keeps the
  inputs of all ``M`` microbatches until their backward: activation memory grows with M.
* 1F1B (Narayanan et al., 2019, "PipeDream: Generalized Pipeline Parallelism for DNN
  Training"; the flushed variant PipeDream-Flush from Narayanan et al., 2021, "Memory-
  Efficient Pipeline-Parallel DNN Training"): stage ``s`` runs ``S - 1 - s`` warm-up
  forwards, then alternates one forward and one backward, then drains the backwards. At most
  ``S - s`` microbatches are in flight on stage ``s``: memory bounded by S, not M.

Both take ``2 (M + S - 1)`` ticks when a forward and a backward cost one tick each, so each
stage idles ``2 (S - 1)`` ticks: bubble fraction ``(S - 1) / (M + S - 1)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxdl.registry import ConfigError

IDLE, FORWARD, BACKWARD = 0, 1, 2
SCHEDULES = ("gpipe", "1f1b")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """An executed pipeline schedule.

    Attributes:
      name: ``"gpipe"`` or ``"1f1b"``.
      num_stages, num_microbatches: S and M.
      table: int32 ``[ticks, S, 2]``: ``(kind, microbatch)`` per tick and stage.
      stash_slots: activation-stash slots each stage needs (stage inputs kept for backward).
      grad_slots: received-gradient slots each stage needs.
      peak_stash: ``[S]`` most microbatch inputs held at once on each stage.
    """

    name: str
    num_stages: int
    num_microbatches: int
    table: np.ndarray
    stash_slots: int
    grad_slots: int
    peak_stash: np.ndarray

    @property
    def num_ticks(self) -> int:
        return int(self.table.shape[0])

    def bubble_fraction(self) -> float:
        """Idle ticks over all ticks, averaged over stages (counted from the table)."""
        return float(np.mean(self.table[:, :, 0] == IDLE))

    def render(self) -> str:
        """One line per stage: ``F3`` forward of microbatch 3, ``B3`` its backward, ``.`` idle."""
        cell = {IDLE: lambda m: " .", FORWARD: lambda m: f"F{m}", BACKWARD: lambda m: f"B{m}"}
        return "\n".join(
            f"stage {s}: " + " ".join(cell[k](m).rjust(3) for k, m in self.table[:, s])
            for s in range(self.num_stages))


def bubble_theory(num_stages: int, num_microbatches: int) -> float:
    """``(S - 1) / (M + S - 1)``: the idle fraction of a flushed pipeline (GPipe, 1F1B)."""
    return (num_stages - 1) / (num_microbatches + num_stages - 1)


def _stage_order(name: str, s: int, num_stages: int, num_microbatches: int):
    forwards = [(FORWARD, m) for m in range(num_microbatches)]
    backwards = [(BACKWARD, m) for m in range(num_microbatches)]
    if name == "gpipe":
        return forwards + backwards
    warmup = min(num_stages - 1 - s, num_microbatches)
    order = forwards[:warmup]
    for m in range(num_microbatches - warmup):  # steady state: one forward, one backward
        order += [forwards[warmup + m], backwards[m]]
    return order + backwards[num_microbatches - warmup:]


def _slots_needed(intervals: list[tuple[int, int, int]], num_microbatches: int) -> int:
    """Fewest slots K such that microbatches live at once never share ``m % K``.

    ``intervals``: ``(m, enter, leave)``; a buffer entry is written at the end of tick
    ``enter`` and read during tick ``leave``, so it is live over ``[enter, leave)``.
    """
    for k in range(1, num_microbatches + 1):
        clash = any(a[0] % k == b[0] % k and a[1] < b[2] and b[1] < a[2]
                    for i, a in enumerate(intervals) for b in intervals[i + 1:])
        if not clash:
            return k
    return num_microbatches


def build_schedule(name: str, num_stages: int, num_microbatches: int) -> Schedule:
    """The tick table of schedule ``name`` for S stages and M microbatches."""
    if name not in SCHEDULES:
        raise ConfigError(f"pipeline.schedule={name!r}: expected one of {SCHEDULES}.")
    for field, value in (("pipeline.stages", num_stages),
                         ("pipeline.microbatches", num_microbatches)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{field}={value!r}: expected an integer >= 1.")
    S, M = num_stages, num_microbatches
    orders = [_stage_order(name, s, S, M) for s in range(S)]
    done: dict[tuple[int, int, int], int] = {}  # (kind, stage, microbatch) -> tick
    position, rows, tick = [0] * S, [], 0
    while any(p < len(o) for p, o in zip(position, orders)):
        row = []
        for s in range(S):
            op = orders[s][position[s]] if position[s] < len(orders[s]) else (IDLE, 0)
            kind, m = op
            never = tick + 1
            if kind == FORWARD:
                ready = s == 0 or done.get((FORWARD, s - 1, m), never) < tick
            elif kind == BACKWARD:
                ready = done.get((FORWARD, s, m), never) < tick and (
                    s == S - 1 or done.get((BACKWARD, s + 1, m), never) < tick)
            else:
                ready = False
            row.append(op if ready else (IDLE, 0))
        for s, (kind, m) in enumerate(row):
            if kind != IDLE:
                done[(kind, s, m)] = tick
                position[s] += 1
        rows.append(row)
        tick += 1
        if tick > 4 * (M + S):  # cannot happen for these orders; guards against a deadlock
            raise RuntimeError(f"schedule {name} did not finish for S={S}, M={M}")
    table = np.asarray(rows, np.int32)

    # Stage inputs: stage 0 stashes its input when it runs the forward, stage s > 0 when the
    # activation arrives from s - 1; both release it at the stage's backward.
    stash, grads, peaks = [], [], []
    for s in range(S):
        arrive = [done[(FORWARD, s - 1 if s else 0, m)] for m in range(M)]
        live = [(m, arrive[m], done[(BACKWARD, s, m)]) for m in range(M)]
        stash.append(_slots_needed(live, M))
        peaks.append(max(sum(a <= t < b for _, a, b in live) for t in range(len(rows))))
        if s < S - 1:  # gradients arrive from s + 1 and are consumed by the stage's backward
            grads.append(_slots_needed(
                [(m, done[(BACKWARD, s + 1, m)], done[(BACKWARD, s, m)]) for m in range(M)], M))
    return Schedule(name, S, M, table, max(stash), max(grads, default=1),
                    np.asarray(peaks, np.int32))


def lockstep_bubble(schedule: Schedule, t_forward: float, t_backward: float) -> float:
    """Time-weighted idle fraction when every tick lasts as long as its slowest stage.

    The executor advances all stages together (the ``ppermute`` at the end of each tick is a
    barrier), so a tick where one stage runs a backward (``t_backward``) and another a
    forward (``t_forward``) costs ``t_backward`` for both. Returns
    ``1 - M (t_forward + t_backward) / sum_ticks max_stage cost``; equals
    :meth:`Schedule.bubble_fraction` when ``t_forward == t_backward``.
    """
    cost = np.asarray([0.0, t_forward, t_backward])[schedule.table[:, :, 0]]
    work = schedule.num_microbatches * (t_forward + t_backward)
    return float(1.0 - work / cost.max(axis=1).sum())
