"""The layout machinery every checkpoint format shares: a table of `Entry`s (our array <- the source's name and how
it stores it) read into our parameter tree with every shape checked against our model, and the checks that a
checkpoint and a config fit each other (layer count, unused variables).

Each format's reader (`tf_reader`, `hf_reader`) gives a name table and a `read(name)`; `assemble` does the rest.
`from_ours` is the inverse layout change, for the export (`hf_export`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from core import errors
from projects.bert.models import architecture as common
from projects.bert.models import modeling

Params = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Entry:
  """Where one of our arrays comes from.

  `sources` are candidate source names (the first present is used). `layout` says how the source stores it:
  'same' (our shape), 'flat' (our leading `in_ndim` axes and the rest each flattened: [in, out] or [n]) or
  'out_in' (flattened and transposed, [out, in] as torch.nn.Linear keeps its weight).
  """

  ours: str
  sources: Tuple[str, ...]
  layout: str = 'same'
  in_ndim: int = 1


def expected_shapes(model_config: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
  """{'bert/.../kernel': shape} of `BertForPreTraining` (encoder + MLM + NSP heads) for `model_config`, and of the
  question-answering head (`span_head`)."""
  cfg = modeling.BertConfig.from_model_config(model_config)
  module = modeling.BertForPreTraining(cfg, nsp_head=model_config.get('nsp_head', 'encoder_pooler'))
  ones = jnp.ones((1, 1), jnp.int32)
  batch = {'input_ids': ones, 'input_mask': ones, 'segment_ids': ones, 'masked_lm_positions': ones * 0}
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), batch))['params']
  out = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes, sep='/').items()}
  out.update({'span_head/kernel': (cfg.hidden_size, 2), 'span_head/bias': (2,)})  # modeling.BertForQuestionAnswering
  return out


def source_shape(ours: Tuple[int, ...], layout: str, in_ndim: int) -> Tuple[int, ...]:
  if layout == 'same':
    return ours
  n_in, n_out = int(np.prod(ours[:in_ndim])), int(np.prod(ours[in_ndim:]))
  if layout == 'flat':
    return (n_in, n_out) if in_ndim else (n_out,)
  if layout == 'out_in':
    return (n_out, n_in)
  raise ValueError(f'Unknown layout {layout!r}.')


def to_ours(array: np.ndarray, ours: Tuple[int, ...], layout: str) -> np.ndarray:
  array = np.asarray(array, np.float32)
  if layout == 'out_in':
    array = array.T
  return np.ascontiguousarray(array.reshape(ours))


def describe(config: Mapping[str, Any]) -> str:
  keys = ('vocab_size', 'hidden_size', 'num_layers', 'num_heads', 'intermediate_size', 'max_position_embeddings',
          'type_vocab_size')
  return ', '.join(f'{k}={config[k]}' for k in keys)


def assemble(entries: Sequence[Entry], available: Mapping[str, Tuple[int, ...]], read: Callable[[str], Any],
             model_config: Mapping[str, Any], file: str, optional_groups: Sequence[str] = ()) -> Params:
  """Reads every entry from the source, checking shapes against our model; returns the nested param tree.

  Entries whose `ours` starts with one of `optional_groups` (heads, the pooler) are taken only when the source has
  the group's first entry; every other entry must exist. Errors name the source variable and the file.
  """
  shapes = expected_shapes(model_config)
  present_groups = set()
  for group in optional_groups:
    first = next((e for e in entries if e.ours.startswith(group)), None)
    if first is not None and any(s in available for s in first.sources):
      present_groups.add(group)
  flat = {}
  for e in entries:
    group = next((g for g in optional_groups if e.ours.startswith(g)), None)
    if group is not None and group not in present_groups:
      continue
    name = next((s for s in e.sources if s in available), None)
    if name is None:
      raise ValueError(f'{file}: variable {" or ".join(map(repr, e.sources))} (for our {e.ours!r}) is missing. '
                       f'The checkpoint does not fit the config ({describe(model_config)}).')
    ours_shape = shapes[e.ours]
    want = source_shape(ours_shape, e.layout, e.in_ndim)
    found = tuple(available[name])
    if found != want:
      raise ValueError(f'{file}: variable {name!r} has shape {found}, expected {want} (our {e.ours!r} '
                       f'{ours_shape}) for the config ({describe(model_config)}).')
    flat[e.ours] = to_ours(read(name), ours_shape, e.layout)
  return traverse_util.unflatten_dict(flat, sep='/')


def check_layer_count(indices: Sequence[int], model_config: Mapping[str, Any], file: str, what: str) -> None:
  found = sorted(set(indices))
  if len(found) != model_config['num_layers']:
    raise ValueError(f'{file} has {len(found)} transformer layers ({what}) but the config says '
                     f'num_layers={model_config["num_layers"]}: the config does not fit the checkpoint.')


def validated_model_config(**fields: Any) -> ml_collections.ConfigDict:
  config = common.model_config('base', **fields)
  modeling.BertConfig.from_model_config(config)  # validates (heads divide hidden, known activation)
  return config


def check_unused(available: Mapping[str, Any], used: Sequence[str], namespace: Callable[[str], bool],
                 file: str, model_config: Mapping[str, Any]) -> None:
  """Encoder variables the conversion did not use mean the config and checkpoint disagree (more layers, ...)."""
  leftover = sorted(n for n in available if namespace(n) and n not in set(used))
  if leftover:
    raise ValueError(f'{file}: variable {leftover[0]!r} (and {len(leftover) - 1} more) is not used by a model with '
                     f'the config ({describe(model_config)}): the config does not fit the checkpoint.')


def read_json(path: str) -> Dict[str, Any]:
  """The JSON object in `path`; DataError naming the file when it is damaged."""
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.DataError(f'{path} is not valid JSON ({e}): the file is damaged or truncated. Download it again '
                           f'(or re-save the model).') from None


def from_ours(array: np.ndarray, layout: str, in_ndim: int) -> np.ndarray:
  """The inverse of `to_ours`: our array in the source's layout."""
  array = np.asarray(array, np.float32)
  shape = source_shape(array.shape, layout, in_ndim)
  if layout == 'out_in':
    return np.ascontiguousarray(array.reshape(shape[::-1]).T)
  return np.ascontiguousarray(array.reshape(shape))
