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

from projects.bert.models import modeling

# Scenic's output_projection kernel init: flax's lecun_normal, a normal truncated at 2 std with its std divided by
# the truncation's shrinkage (0.8796) so that the variance is 1 / fan_in. `bert_param_initializers` uses it.
LECUN_TRUNCATION_STD = 0.87962566103423978


class ScenicClassificationHead(nn.Module):
  """`head(pooled [batch, hidden] float32)` -> logits [batch, num_classes] float32 (no dropout: Scenic has none)."""

  config: modeling.BertConfig
  num_classes: int

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    c = self.config
    x = jnp.tanh(modeling._head(c, c.hidden_size, 'dense')(pooled))  # Scenic's pre_logits
    return modeling._head(c, self.num_classes, 'output_projection', nn.initializers.lecun_normal())(x)
