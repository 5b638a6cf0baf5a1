"""Deterministic English-ish output: one token is one word (with its leading space and punctuation).

Every token is plain ASCII letters, spaces and periods, so it can go into a JSON string
without escaping; the wire encoder relies on that for speed.
"""

from __future__ import annotations

import random

WORDS: tuple[str, ...] = tuple(
    """
the of and to in is that for it as with was on be by this are from at or an have not
but all can they which one more their about will would there also has when what some
time people could other than into only over new most very first after been because
way use just these two may work how any each year where system model data value many
number should well between must such world part even much through back still since
state both under long made same every need make good great small large own local
better best early real high low open public simple clear common whole full quick slow
light heavy bright quiet strong gentle careful steady river mountain forest garden city
village market bridge road window table letter story answer question reason result
method process signal pattern measure record report sample region season morning evening
music paper water stone metal glass cloud field ocean island engine machine network
server client request response token message latency stream buffer queue worker
thread memory storage channel batch prompt vector matrix function object context
across along around before behind below beside during inside outside toward within
build carry change follow gather handle keep learn listen move notice offer prepare
reach remember repeat return share show start study test travel turn visit wait watch
write read run send hold find give take bring call look seem feel try leave become
""".split()
)

_CAPITALISED = tuple(w.capitalize() for w in WORDS)


def sentence_lengths(rng: random.Random, n: int) -> list[int]:
    """Split n tokens into sentences of 6-16 words (the last one may be shorter)."""
    out: list[int] = []
    left = n
    while left > 0:
        size = min(left, rng.randint(6, 16))
        out.append(size)
        left -= size
    return out


def generate_tokens(rng: random.Random, n: int) -> list[str]:
    """n word tokens forming sentences; a token's leading space is part of it (like BPE tokens)."""
    idx = rng.choices(range(len(WORDS)), k=n)
    tokens: list[str] = []
    pos = 0
    for size in sentence_lengths(rng, n):
        for j in range(size):
            i = idx[pos]
            word = _CAPITALISED[i] if j == 0 else WORDS[i]
            if j == size - 1:
                word += "."
            tokens.append(word if pos == 0 else " " + word)
            pos += 1
    return tokens


def word(rng: random.Random) -> str:
    return rng.choice(WORDS)
