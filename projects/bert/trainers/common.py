"""Plumbing the BERT trainers share: where initial weights come from and how results are written."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Optional

import jax
import ml_collections
import numpy as np

from projects.bert import models


def pretrained_loader(config: ml_collections.ConfigDict) -> Optional[Callable[[Any], Any]]:
  """`params -> params` that copies the weights at `config.init_from` into fresh parameters, or None.

  `init_from` is a converted checkpoint (`python -m projects.bert.convert`) or a run's workdir (e.g. pretraining
  phase 1 for phase 2, or a pretraining run for fine-tuning). Heads the source lacks keep their fresh init;
  `config.init_heads=False` (fine-tuning) takes only the encoder ('bert') from the source; `config.init_cls_pooler`
  starts the pooler from the source's next-sentence head (models.classifier_pooler_from_nsp_head).
  """
  path = config.get('init_from')
  if not path:
    return None
  keep = None if config.get('init_heads', True) else ('bert',)
  return lambda params: models.load_pretrained(params, path, model_config=config.model, keep=keep,
                                               init_cls_pooler=bool(config.get('init_cls_pooler', False)))


def write_json(workdir: str, name: str, obj: Dict[str, Any]) -> str:
  """Writes `obj` to workdir/name atomically (first process only); returns the path."""
  path = os.path.join(workdir, name)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=2, sort_keys=True, default=_to_builtin)
    os.replace(tmp, path)
  return path


def _to_builtin(x: Any) -> Any:
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)
