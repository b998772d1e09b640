"""The Scenic-style model contract: a Flax module plus its loss and metrics.

A `BaseModel` owns no parameters; it builds the Flax module from the config and says how to score its outputs.
Trainers in `core.loop` only ever call `forward`, `loss_function` and `get_metrics_fn`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from core.dataset import DatasetMetaData

Batch = Mapping[str, jnp.ndarray]
# name -> (sum over the batch, number of items): summing both over batches and dividing gives the dataset mean.
MetricsDict = Dict[str, Tuple[jnp.ndarray, jnp.ndarray]]
MetricsFn = Callable[[Any, Batch], MetricsDict]


class BaseModel:
  """Base class of registered models (mirrors `scenic.model_lib.base_models.BaseModel`).

  Subclasses implement `build_flax_model`, `loss_function` and `get_metrics_fn`; `default_flax_model_config`
  documents the `config.model` fields the module reads.
  """

  def __init__(self, config: Optional[ml_collections.ConfigDict], dataset_meta_data: Optional[DatasetMetaData]):
    if config is None:
      config = ml_collections.ConfigDict({'model': self.default_flax_model_config()})
    if dataset_meta_data is not None and not isinstance(dataset_meta_data, DatasetMetaData):
      raise TypeError(f'dataset_meta_data must be a core.dataset.DatasetMetaData (or None), not '
                      f'{type(dataset_meta_data).__name__}.')
    self.config = config
    self.dataset_meta_data = dataset_meta_data or DatasetMetaData(input_specs={})
    self.flax_model = self.build_flax_model()

  def build_flax_model(self) -> nn.Module:
    raise NotImplementedError('Subclasses build their Flax module here.')

  def default_flax_model_config(self) -> ml_collections.ConfigDict:
    raise NotImplementedError('Subclasses return the default `config.model` here.')

  def forward(self, params: Any, batch: Batch, *, train: bool, rng: Optional[jax.Array] = None) -> Any:
    """Runs the Flax module on a batch dict. Dropout draws from `rng` when training."""
    rngs = {'dropout': rng} if (train and rng is not None) else None
    return self.flax_model.apply({'params': params}, batch, train=train, rngs=rngs)

  def init_params(self, rng: jax.Array, batch: Batch) -> Any:
    """Initial parameters from a (possibly abstract) example batch, through the Flax module's own `init`."""
    return self.flax_model.init({'params': rng, 'dropout': rng}, batch, train=False)['params']

  def param_initializers(self, abstract_params: Any) -> Optional[Any]:
    """A `core.param_init.Initializer` per parameter (the same tree as `abstract_params`), or None.

    Models that say how their parameters start are initialised on the host (`core.param_init`), which compiles
    nothing; the default (None) initialises through the jitted `init_params`.
    """
    del abstract_params
    return None

  def params_init(self, batch: Batch) -> Any:
    """What `core.state.create_sharded_train_state` initialises the parameters with, for example `batch`: a
    `core.param_init.HostInit` when the model gives its initializers, else `fn(rng) -> params`."""
    from core import param_init

    init_fn = lambda rng: self.init_params(rng, batch)  # noqa: E731
    abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
    initializers = self.param_initializers(abstract)
    return init_fn if initializers is None else param_init.HostInit(abstract, initializers)

  def loss_function(self, outputs: Any, batch: Batch, model_params: Any = None) -> jnp.ndarray:
    """Scalar training loss of `outputs` (what `forward` returned) against `batch`."""
    raise NotImplementedError

  def get_metrics_fn(self, split: Optional[str] = None) -> MetricsFn:
    """Returns `fn(outputs, batch) -> {name: (sum, count)}` for the given split."""
    raise NotImplementedError
