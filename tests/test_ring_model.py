"""Exhaustive interleaving check of the ring protocol on a small model.

The producer and consumer of engram_numba/tracing/_ring.py are modelled step by
step, one shared-memory access per step, and every interleaving of their steps
is explored (sequentially consistent; states are memoised).  Invariants at
every end state:

* a delivered event carries the payload written for its position (never torn);
* delivered positions strictly increase;
* every position below the last write index seen is delivered or dropped,
  exactly once: delivered + dropped == cursor, and after a final quiet drain
  == events written.

Mutants of the protocol (no re-check, no first check, publishing the index
and sequence before the payload, forgetting lapped positions) must each
violate an invariant: that is what shows the checker can fail.
"""

import pytest

CAPACITY = 2
EVENTS = 5          # the producer laps the ring twice
DRAINS = 3          # concurrent drains, then one quiet drain


def payload(p):
    return (p + 1, 10 * (p + 1))


# -- producer: per event p, five steps ------------------------------------------------

def producer_step(pc, mem, mutant):
    p, step = pc
    write_index, slots = mem
    slot = p % CAPACITY
    seq, w1, w2 = slots[slot]
    v1, v2 = payload(p)
    order = ["odd", "w1", "w2", "even", "index"]
    if mutant == "publish-before-payload":
        order = ["even", "index", "w1", "w2", "nothing"]
    action = order[step]
    if action == "odd":
        seq = 2 * p + 1
    elif action == "w1":
        w1 = v1
    elif action == "w2":
        w2 = v2
    elif action == "even":
        seq = 2 * p + 2
    elif action == "index":
        write_index = p + 1
    slots = slots[:slot] + ((seq, w1, w2),) + slots[slot + 1:]
    step += 1
    if step == 5:
        p, step = p + 1, 0
    return (p, step), (write_index, slots)


def producer_done(pc):
    return pc[0] == EVENTS


# -- consumer: drains made of single-access steps ----------------------------------------

# consumer state: (drain, phase, w, pos, s1, a1, cursor, delivered, dropped)
def consumer_start():
    return (0, "load-w", 0, 0, 0, 0, 0, (), 0)


def consumer_step(cs, mem, mutant):
    drain, phase, w, pos, s1, a1, cursor, delivered, dropped = cs
    write_index, slots = mem
    if phase == "load-w":
        w = write_index
        start = max(cursor, w - CAPACITY)
        if mutant != "forget-lapped":
            dropped += start - cursor      # lapped: overwritten before being read
        pos = start
        phase = "next"
    if phase == "next":
        if pos >= w:
            return (drain + 1, "load-w", 0, 0, 0, 0, w, delivered, dropped), True
        phase = "s1"
        return (drain, phase, w, pos, s1, a1, cursor, delivered, dropped), False
    seq, w1, w2 = slots[pos % CAPACITY]
    if phase == "s1":
        s1 = seq
        if mutant != "no-first-check" and s1 != 2 * pos + 2:
            return (drain, "next", w, pos + 1, 0, 0, cursor, delivered, dropped + 1), False
        phase = "w1"
    elif phase == "w1":
        a1 = w1
        phase = "w2"
    elif phase == "w2":
        a2 = w2
        phase = "s2"
        # keep a2 in the s1 slot of the tuple after the check below
        if mutant == "no-recheck":
            return (drain, "next", w, pos + 1, 0, 0, cursor,
                    delivered + ((pos, a1, a2),), dropped), False
        return (drain, phase, w, pos, (s1, a2), a1, cursor, delivered, dropped), False
    elif phase == "s2":
        first, a2 = s1
        if seq != first:
            return (drain, "next", w, pos + 1, 0, 0, cursor, delivered, dropped + 1), False
        return (drain, "next", w, pos + 1, 0, 0, cursor, delivered + ((pos, a1, a2),),
                dropped), False
    return (drain, phase, w, pos, s1, a1, cursor, delivered, dropped), False


def quiet_drain(cs, mem, mutant):
    """One more drain with the producer finished (run to completion)."""
    drain, *_rest = cs
    cs = (drain, "load-w", 0, 0, 0, 0, cs[6], cs[7], cs[8])
    while True:
        cs, finished = consumer_step(cs, mem, mutant)
        if finished:
            return cs


def check(cs, mutant):
    *_, cursor, delivered, dropped = cs
    for pos, a1, a2 in delivered:
        if (a1, a2) != payload(pos):
            return f"torn event at position {pos}: {(a1, a2)}"
    positions = [p for p, _, _ in delivered]
    if positions != sorted(set(positions)):
        return f"positions out of order or repeated: {positions}"
    if len(delivered) + dropped != cursor:
        return f"delivered {len(delivered)} + dropped {dropped} != cursor {cursor}"
    return None


def explore(mutant=None):
    """Every interleaving; returns (states explored, first violation or None)."""
    start = ((0, 0), consumer_start(), (0, tuple((0, 0, 0) for _ in range(CAPACITY))))
    stack, seen = [start], set()
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        pc, cs, mem = state
        can_produce = not producer_done(pc)
        can_consume = cs[0] < DRAINS
        if not can_produce and not can_consume:
            final = quiet_drain(cs, mem, mutant)
            problem = check(cs, mutant) or check(final, mutant)
            if problem is None and len(final[7]) + final[8] != EVENTS:
                problem = f"after a quiet drain {len(final[7])} + {final[8]} != {EVENTS} written"
            if problem:
                return len(seen), problem
            continue
        if can_produce:
            npc, nmem = producer_step(pc, mem, mutant)
            stack.append((npc, cs, nmem))
        if can_consume:
            ncs, _ = consumer_step(cs, mem, mutant)
            stack.append((pc, ncs, mem))
    return len(seen), None


def test_every_interleaving_keeps_the_invariants():
    states, problem = explore()
    assert problem is None, problem
    assert states > 1000    # the model really branches


@pytest.mark.parametrize("mutant", ["no-recheck", "no-first-check", "publish-before-payload",
                                    "forget-lapped"])
def test_broken_protocols_are_caught(mutant):
    _, problem = explore(mutant)
    assert problem is not None, f"the {mutant} mutant passed: the checker cannot fail"
