"""`--synthetic prompt_tokens=512,output_tokens=128,...`: generated prompts of set token lengths.

    prompt_tokens=N | A-B      prompt length: fixed, or uniform between A and B
    output_tokens=N | A-B      output length, held with max_tokens (+ ignore_eos, see below)
    stdev=S                    normal spread around both means (prompt_stdev / output_stdev: one)
    n=COUNT                    prompts to generate (default: --requests in bench, 100 in run)
    seed=S                     the same seed gives the same prompts and lengths (default 0)
    shared_prefix_tokens=N     every prompt starts with one of `prefix_pool` shared prefixes of
    prefix_pool=K              N tokens (default K = 1), so prefix caching can be measured
    ignore_eos=true|false      send vLLM's ignore_eos so the server writes exactly max_tokens
                               (default true; false for servers that reject unknown fields)
    tokenizer=PATH             a local tokenizer.json: exact prompt lengths (needs `tokenizers`)
    sessions=S,turns=T         multi-turn instead: S sessions of T turns; each turn's new user
    think_s=X                  message has prompt_tokens tokens, sent X s after the last answer

Without a tokenizer the length of the text is sized from the endpoint's own counting: two
probe requests (short and long) give usage.prompt_tokens = a * characters + b, and each prompt
gets (target - b) / a characters. The summary shows the realised lengths (from usage) beside the
requested ones. Lengths are drawn per prompt from a seeded RNG, independent of the endpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterator

from batchrun.errors import ConfigError
from batchrun.inputs.prompt import Prompt

_WORDS = tuple(
    """
time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government number
night point home water room mother area money story fact month lot right study book eye job word
business issue side kind head house service friend father power hour game line end member law car
city community name president team minute idea kid body information back parent face others level
office door health person art war history party result change morning reason research girl guy
moment air teacher force education river garden signal engine window market bridge stone cloud
""".split()
)

KEYS = {
    "prompt_tokens",
    "output_tokens",
    "stdev",
    "prompt_stdev",
    "output_stdev",
    "n",
    "seed",
    "shared_prefix_tokens",
    "prefix_pool",
    "ignore_eos",
    "tokenizer",
    "sessions",
    "turns",
    "think_s",
}


@dataclass(frozen=True)
class Spread:
    """A length distribution: mean with a normal stdev, or a uniform [low, high] range."""

    mean: float
    stdev: float = 0.0
    low: int | None = None
    high: int | None = None

    def draw(self, rng: random.Random) -> int:
        if self.low is not None and self.high is not None:
            return rng.randint(self.low, self.high)
        value = rng.gauss(self.mean, self.stdev) if self.stdev else self.mean
        return max(1, round(value))

    def describe(self) -> dict[str, Any]:
        if self.low is not None:
            return {"uniform": [self.low, self.high]}
        return {"mean": self.mean, "stdev": self.stdev}


@dataclass(frozen=True)
class SyntheticSpec:
    prompt: Spread
    output: Spread
    n: int | None = None
    seed: int = 0
    shared_prefix_tokens: int = 0
    prefix_pool: int = 1
    ignore_eos: bool = True
    tokenizer: str | None = None
    sessions: int | None = None  # multi-turn: this many sessions ...
    turns: int = 1  # ... of this many turns ...
    think_s: float = 0.0  # ... each turn sent this long after the previous answer
    text: str = ""  # the spec as given

    def public(self) -> dict[str, Any]:
        return {
            "spec": self.text,
            "prompt_tokens": self.prompt.describe(),
            "output_tokens": self.output.describe(),
            "seed": self.seed,
            "shared_prefix_tokens": self.shared_prefix_tokens,
            "prefix_pool": self.prefix_pool,
            "sessions": self.sessions,
            "turns": self.turns,
            "think_s": self.think_s,
        }


def parse_spec(text: str) -> SyntheticSpec:
    """'prompt_tokens=512,output_tokens=128,stdev=32' -> SyntheticSpec, or a ConfigError saying what is wrong."""
    items: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise ConfigError(f"--synthetic: cannot read {part!r}; use key=value pairs from: {', '.join(sorted(KEYS))}")
        items[key] = value.strip()
    if "prompt_tokens" not in items or "output_tokens" not in items:
        raise ConfigError("--synthetic needs prompt_tokens and output_tokens, e.g. prompt_tokens=512,output_tokens=128")
    try:
        stdev = float(items.get("stdev", 0))
        spec = SyntheticSpec(
            prompt=_spread(items["prompt_tokens"], float(items.get("prompt_stdev", stdev))),
            output=_spread(items["output_tokens"], float(items.get("output_stdev", stdev))),
            n=int(items["n"]) if "n" in items else None,
            seed=int(items.get("seed", 0)),
            shared_prefix_tokens=int(items.get("shared_prefix_tokens", 0)),
            prefix_pool=int(items.get("prefix_pool", 1)),
            ignore_eos=_bool(items.get("ignore_eos", "true")),
            tokenizer=items.get("tokenizer"),
            sessions=int(items["sessions"]) if "sessions" in items else None,
            turns=int(items.get("turns", 1)),
            think_s=float(items.get("think_s", 0)),
            text=text,
        )
    except ValueError as exc:
        raise ConfigError(f"--synthetic {text!r}: {exc}") from None
    _check(spec)
    return spec


def _spread(value: str, stdev: float) -> Spread:
    low, sep, high = value.partition("-")
    if sep:
        a, b = int(low), int(high)
        if not 1 <= a <= b:
            raise ValueError(f"range {value!r} must be A-B with 1 <= A <= B")
        return Spread((a + b) / 2, 0.0, a, b)
    mean = int(value)
    if mean < 1 or stdev < 0:
        raise ValueError("lengths must be at least 1 and stdev not negative")
    return Spread(float(mean), stdev)


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _check(spec: SyntheticSpec) -> None:
    if spec.n is not None and spec.n < 1:
        raise ConfigError("--synthetic: n must be at least 1")
    if (spec.sessions is not None and spec.sessions < 1) or spec.turns < 1 or spec.think_s < 0:
        raise ConfigError("--synthetic: sessions and turns must be at least 1, think_s not negative")
    if spec.turns > 1 and spec.sessions is None:
        raise ConfigError("--synthetic: turns needs sessions=S too, e.g. sessions=100,turns=5")
    if spec.prefix_pool < 1 or spec.shared_prefix_tokens < 0:
        raise ConfigError("--synthetic: prefix_pool must be at least 1, shared_prefix_tokens not negative")
    low = spec.prompt.low if spec.prompt.low is not None else spec.prompt.mean - 3 * spec.prompt.stdev
    if spec.shared_prefix_tokens and spec.shared_prefix_tokens >= low:
        raise ConfigError("--synthetic: shared_prefix_tokens must be smaller than the shortest prompt_tokens")


# ---------------------------------------------------------------- sizing text


@dataclass(frozen=True)
class Sizer:
    """How many characters make N tokens: tokens = per_char * chars + overhead (fitted by probes),
    or exact token counts from a local tokenizer."""

    per_char: float = 0.25  # 4 characters per token: the rule of thumb
    overhead: float = 0.0  # tokens the endpoint adds around a prompt (chat template)
    source: str = "rule of thumb (4 characters per token)"
    tokenizer: Any = field(default=None, repr=False)

    def text(self, rng: random.Random, tokens: int, with_overhead: bool = True) -> str:
        if self.tokenizer is not None:
            return _tokenizer_text(self.tokenizer, rng, tokens)
        target = tokens - (self.overhead if with_overhead else 0.0)
        return words_text(rng, max(1, round(target / self.per_char)))

    def fit(self, parts: list[str], tokens: int, rng: random.Random) -> str:
        """`parts` joined, then unique words, cut to a prompt of `tokens` tokens (with overhead)."""
        if self.tokenizer is not None:
            text = "".join(parts) + " " + _tokenizer_text(self.tokenizer, rng, tokens)
            return self.tokenizer.decode(self.tokenizer.encode(text, add_special_tokens=False).ids[:tokens])
        chars = max(1, round((tokens - self.overhead) / self.per_char))
        text = "".join(parts)
        if len(text) < chars:
            text += " " + words_text(rng, chars - len(text))
        return text[:chars]

    def public(self) -> dict[str, Any]:
        return {"source": self.source, "tokens_per_char": self.per_char, "overhead_tokens": self.overhead}


def fit_sizer(points: list[tuple[int, int]]) -> Sizer | None:
    """Two or more (characters, usage.prompt_tokens) probes -> the line through them, or None
    when they cannot define one (equal lengths, or tokens not growing with characters)."""
    if len(points) < 2:
        return None
    (c1, t1), (c2, t2) = min(points), max(points)
    if c2 == c1 or t2 <= t1:
        return None
    per_char = (t2 - t1) / (c2 - c1)
    return Sizer(per_char, t1 - per_char * c1, f"calibrated against the endpoint's usage ({len(points)} probes)")


def words_text(rng: random.Random, chars: int) -> str:
    """About `chars` characters of words (exact length: cut or padded at the end)."""
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(_WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars].rstrip() or "a"


def load_tokenizer(path: str) -> Any:
    try:
        from tokenizers import Tokenizer  # optional (the tokenizer extra)
    except ImportError:
        raise ConfigError(
            "--synthetic tokenizer=PATH needs the `tokenizers` package (pip install tokenizers); "
            "leave tokenizer out to size prompts from the endpoint's usage instead"
        ) from None
    try:
        return Tokenizer.from_file(path)
    except Exception as exc:  # noqa: BLE001 - the library raises plain Exception for a bad file
        raise ConfigError(f"--synthetic tokenizer={path}: cannot load it ({exc}); give a tokenizer.json file") from None


def _tokenizer_text(tokenizer: Any, rng: random.Random, tokens: int) -> str:
    ids: list[int] = []
    while len(ids) < tokens:
        ids += tokenizer.encode(" " + words_text(rng, 8 * tokens), add_special_tokens=False).ids
    return tokenizer.decode(ids[:tokens])


# ---------------------------------------------------------------- the prompts


@dataclass(frozen=True, slots=True)
class Planned:
    prompt_tokens: int
    output_tokens: int
    prefix: int | None  # which shared prefix, if any


def plan_lengths(spec: SyntheticSpec, n: int) -> list[Planned]:
    """The requested lengths of the n prompts (pure, seeded: used again for the report)."""
    rng = random.Random(f"lengths-{spec.seed}")
    out = []
    for i in range(n):
        prompt = max(spec.prompt.draw(rng), spec.shared_prefix_tokens + 1)
        prefix = i % spec.prefix_pool if spec.shared_prefix_tokens else None
        out.append(Planned(prompt, spec.output.draw(rng), prefix))
    return out


def synthetic_prompts(spec: SyntheticSpec, n: int, sizer: Sizer) -> Iterator[Prompt]:
    """n Prompts: [shared prefix] + unique words, with per-row max_tokens (and ignore_eos)."""
    text_rng = random.Random(f"text-{spec.seed}")
    prefixes = (
        [
            sizer.text(random.Random(f"prefix-{spec.seed}-{k}"), spec.shared_prefix_tokens, with_overhead=False)
            for k in range(spec.prefix_pool)
        ]
        if spec.shared_prefix_tokens
        else []
    )
    for i, plan in enumerate(plan_lengths(spec, n)):
        if plan.prefix is not None:
            body = sizer.text(text_rng, plan.prompt_tokens - spec.shared_prefix_tokens)
            # Sized by characters, the joining space takes the place of the body's first character.
            text = prefixes[plan.prefix] + " " + (body if sizer.tokenizer is not None else body[1:])
        else:
            text = sizer.text(text_rng, plan.prompt_tokens)
        params: dict[str, Any] = {"max_tokens": plan.output_tokens}
        if spec.ignore_eos:
            params["ignore_eos"] = True
        yield Prompt(id=f"syn-{i:06d}", row=i, line=i + 1, messages=[{"role": "user", "content": text}], params=params)


def requested_lengths(spec_text: str, ids: list[str]) -> dict[str, list[int]]:
    """The requested prompt / output lengths of the given synthetic row ids (for the report)."""
    spec = parse_spec(spec_text)
    rows = [int(i.split("-")[1].split("#")[0]) for i in ids if i.startswith("syn-")]
    if not rows:
        return {"prompt_tokens": [], "output_tokens": []}
    plans = plan_lengths(spec, max(rows) + 1)
    return {
        "prompt_tokens": [plans[r].prompt_tokens for r in rows],
        "output_tokens": [plans[r].output_tokens for r in rows],
    }


def probe_texts(seed: int = 0) -> list[str]:
    """The two probe prompts (about 200 and 2,000 characters) sent to calibrate a Sizer."""
    return [words_text(random.Random(f"probe-{seed}-{k}"), chars) for k, chars in enumerate((200, 2000))]


def default_count(spec: SyntheticSpec, fallback: int) -> int:
    if spec.sessions is not None:
        return spec.sessions * spec.turns
    return spec.n if spec.n is not None else fallback


def check_spec(text: str) -> SyntheticSpec:
    """Parse now (a bad spec stops the run before anything starts) and load the tokenizer if named."""
    spec = parse_spec(text)
    if spec.tokenizer:
        load_tokenizer(spec.tokenizer)
    return spec
