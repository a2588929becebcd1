"""AutoLossGen's controller: an LSTM that writes loss formulas token by token (prefix order).

Each step picks one token from the grammar below, masked so that the formula can always be closed
within ``max_tokens``; the sequence ends when no argument slot is open. The controller is trained
with REINFORCE: ``-(reward - baseline) * sum(log p(token))`` minus an entropy bonus.

Tokens (pairwise formulas over the positive's and one negative's logit):
binary ``add sub mul max min``; unary ``negate softplus safe_log safe_exp safe_reciprocal``;
terminals ``pos neg one`` (``negate`` is the operator ``neg(x)``, ``neg`` the negative's score).
AutoLossGen's operators plus two shorthands of them: ``sub(a, b) = add(a, neg(b))`` and
``softplus(x) = log(1 + exp(x))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from generative_recommenders.modeling.formula import Node, call, const, var

BINARY = ("add", "sub", "mul", "max", "min")
UNARY = ("negate", "softplus", "safe_log", "safe_exp", "safe_reciprocal")
TERMINALS = ("pos", "neg", "one")
TOKENS = BINARY + UNARY + TERMINALS
_ARITY = {**dict.fromkeys(BINARY, 2), **dict.fromkeys(UNARY, 1), **dict.fromkeys(TERMINALS, 0)}


@dataclass
class Sample:
    """One sampled formula: its tokens, tree (constant subtrees folded), and the
    (differentiable) sums for REINFORCE."""

    tokens: list[str]
    formula: Node
    log_prob: torch.Tensor
    entropy: torch.Tensor


def tokens_to_formula(tokens: list[str]) -> Node:
    """Prefix tokens -> formula tree. Raises ValueError if they do not form exactly one tree."""
    position = 0

    def build() -> Node:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"incomplete prefix formula: {tokens}")
        token = tokens[position]
        position += 1
        if token == "pos":
            return var("pos")
        if token == "neg":
            return var("neg")
        if token == "one":
            return const(1.0)
        args = [build() for _ in range(_ARITY[token])]
        return call("neg" if token == "negate" else token, *args)

    node = build()
    if position != len(tokens):
        raise ValueError(f"extra tokens after a complete formula: {tokens}")
    return node


class FormulaController(nn.Module):
    """LSTM policy over :data:`TOKENS`; :meth:`sample` draws one formula."""

    def __init__(self, hidden: int = 64, max_tokens: int = 11) -> None:
        super().__init__()
        if max_tokens < 3:
            raise ValueError(f"max_tokens must be >= 3, got {max_tokens}")
        self.max_tokens = max_tokens
        self.embed = nn.Embedding(len(TOKENS) + 1, hidden)  # last row: the start token
        self.cell = nn.LSTMCell(hidden, hidden)
        self.head = nn.Linear(hidden, len(TOKENS))
        self.arity = torch.tensor([_ARITY[t] for t in TOKENS])

    def sample(self, generator: torch.Generator) -> Sample:
        hidden = self.cell.hidden_size
        h = c = torch.zeros(1, hidden)
        previous = torch.tensor([len(TOKENS)])
        open_slots, tokens = 1, []
        log_prob, entropy = torch.zeros(()), torch.zeros(())
        while open_slots > 0:
            h, c = self.cell(self.embed(previous), (h, c))
            logits = self.head(h)[0]
            remaining = self.max_tokens - len(tokens) - 1  # steps left after this one
            # A token leaves open_slots - 1 + arity slots, each needing at least one more token.
            allowed = (open_slots - 1 + self.arity) <= remaining
            logits = logits.masked_fill(~allowed, float("-inf"))
            probs = torch.softmax(logits, dim=0)
            index = int(torch.multinomial(probs.detach(), 1, generator=generator))
            log_probs = torch.log_softmax(logits, dim=0)
            log_prob = log_prob + log_probs[index]
            entropy = entropy - (probs[allowed] * log_probs[allowed]).sum()
            tokens.append(TOKENS[index])
            open_slots += int(self.arity[index]) - 1
            previous = torch.tensor([index])
        return Sample(tokens, tokens_to_formula(tokens).folded(), log_prob, entropy)


class Reinforce:
    """REINFORCE with a moving-average baseline for :class:`FormulaController`."""

    def __init__(
        self,
        controller: FormulaController,
        learning_rate: float = 5e-3,
        baseline_decay: float = 0.8,
        entropy_weight: float = 1e-3,
    ) -> None:
        self.controller = controller
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=learning_rate)
        self.baseline: float | None = None
        self.decay = baseline_decay
        self.entropy_weight = entropy_weight

    def advantage(self, score: float) -> float:
        """``score - baseline`` (the reward), then the baseline moves towards ``score``."""
        if self.baseline is None:
            self.baseline = score
        reward = score - self.baseline
        self.baseline = self.decay * self.baseline + (1 - self.decay) * score
        return reward

    def update(self, samples: list[Sample], rewards: list[float]) -> float:
        """One policy-gradient step over a batch of samples; returns the surrogate loss."""
        self.optimizer.zero_grad()
        loss = torch.zeros(())
        for sample, reward in zip(samples, rewards, strict=True):
            loss = loss - reward * sample.log_prob - self.entropy_weight * sample.entropy
        loss = loss / max(len(samples), 1)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())
