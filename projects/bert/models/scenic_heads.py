"""Scenic BERT's next-sentence head (google-research/scenic `projects/baselines/bert/layers.py` ClassificationHead,
built by `model.py` with hidden_sizes=(hidden, hidden) and tanh), on our encoder.

Scenic's head is [CLS] -> Dense_0 + tanh -> Dense_1 + tanh -> `pre_logits` -> `output_projection`. Its first layer
is, function for function, our encoder's pooler (a dense + tanh on [CLS] of the last layer's output, truncated
normal 0.02, zero bias), so the pooler plays Dense_0 here and this head holds the rest:

  nsp_head/dense/{kernel [hidden, hidden], bias}       Scenic's Dense_1 (truncated normal 0.02, zero bias)
  nsp_head/output_projection/{kernel [hidden, n], bias} Scenic's output_projection (lecun_normal, zero bias)

`pre_logits` (what Scenic's few-shot evaluator reads: `next_sentence_prediction_head/pre_logits`) is the output of
`dense` + tanh; `projects.bert.fewshot.probes.nsp_pre_logits` computes it from these parameters.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# Scenic's output_projection kernel init: flax's lecun_normal, a normal truncated at 2 std with its std divided by
# the truncation's shrinkage (0.8796) so that the variance is 1 / fan_in. `bert_param_initializers` uses it.
LECUN_TRUNCATION_STD = 0.87962566103423978


class ScenicClassificationHead(nn.Module):
  """`head(pooled [batch, hidden] float32)` -> logits [batch, num_classes] float32 (no dropout: Scenic has none)."""

  hidden_size: int
  num_classes: int
  initializer_range: float = 0.02

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    # float32 like every head of `modeling` (`_head`): the logits the loss reads are exact.
    dense = lambda n, init, name: nn.Dense(n, dtype=jnp.float32, param_dtype=jnp.float32, kernel_init=init,  # noqa
                                           name=name)
    x = jnp.tanh(dense(self.hidden_size, nn.initializers.truncated_normal(self.initializer_range), 'dense')(pooled))
    return dense(self.num_classes, nn.initializers.lecun_normal(), 'output_projection')(x)  # x: Scenic's pre_logits
