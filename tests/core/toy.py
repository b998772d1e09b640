"""A toy regression model and dataset on the core contracts, for the framework's own tests."""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf

from core.dataset import CheckpointableIterator, Dataset, DatasetMetaData
from core.model import BaseModel

TRUE_W = np.linspace(-1.0, 1.0, 8).astype(np.float32)


class ToyMLP(nn.Module):
  hidden: int = 16

  @nn.compact
  def __call__(self, batch, train: bool = False):
    h = nn.gelu(nn.Dense(self.hidden)(batch['x']))
    h = nn.Dropout(0.1, deterministic=not train)(h)
    return nn.Dense(1)(h)[:, 0]


class ToyRegressionModel(BaseModel):

  def build_flax_model(self) -> nn.Module:
    return ToyMLP(hidden=self.config.model.hidden)

  def default_flax_model_config(self) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({'hidden': 16})

  def loss_function(self, outputs, batch, model_params=None):
    return jnp.mean((outputs - batch['y']) ** 2)

  def get_metrics_fn(self, split: Optional[str] = None):
    def metrics(outputs, batch):
      se = (outputs - batch['y']) ** 2
      return {'mse': (jnp.sum(se), jnp.asarray(se.shape[0], jnp.float32))}
    return metrics


def toy_dataset(batch_size: int,  # global
                seed: int = 0, n: int = 512) -> Dataset:
  rng = np.random.default_rng(1234)
  x = rng.normal(size=(n, 8)).astype(np.float32)
  y = (x @ TRUE_W + 0.5).astype(np.float32)
  ds = tf.data.Dataset.from_tensor_slices({'x': x, 'y': y}).repeat().shuffle(64, seed=seed).batch(
      batch_size, drop_remainder=True)
  # Each process keeps its own rows of the same global batch, so any process count sees the same global batches.
  per_host = batch_size // jax.process_count()
  lo = jax.process_index() * per_host
  ds = ds.map(lambda b: {k: v[lo:lo + per_host] for k, v in b.items()})
  meta = DatasetMetaData(input_specs={'x': ((8,), 'float32'), 'y': ((), 'float32')}, num_train_examples=n)
  return Dataset(train_iter=CheckpointableIterator(ds), valid_iter=None, test_iter=None, meta_data=meta)


def toy_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'model': {'hidden': 16},
      'batch_size': 16,
      'optimizer': {'name': 'adamw', 'weight_decay': 0.01, 'grad_clip_norm': 1.0},
      'schedule': {'base_lr': 3e-2, 'warmup_steps': 2, 'decay': 'linear'},
      'checkpoint': {'keep': 2, 'async_save': False},
  })


def toy_trainer(*, rng, config, model_cls, dataset, workdir, writer):
  """The smallest trainer on core: setup (resume/init), the shared loop, nothing else."""
  from core import loop
  from core.setup import example_batch_from_meta, setup_training

  model = model_cls(config, dataset.meta_data)
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(dataset.meta_data),
                         num_train_steps=config.num_train_steps, workdir=workdir, rng=rng,
                         train_iter=dataset.train_iter)
  state, info = loop.train_loop(state=setup.state, train_step=setup.train_step, train_iter=dataset.train_iter,
                                mesh=setup.mesh, num_train_steps=config.num_train_steps, writer=writer,
                                checkpointer=setup.checkpointer, checkpoint_every=config.checkpoint_every,
                                log_every=config.log_every)
  setup.checkpointer.close()
  return state, info


class GradientReplayModel(BaseModel):
  """A model whose gradient is whatever the batch says: it lets a test push a chosen gradient sequence through the
  real train step (clipping, per-replica reduction, optimizer).

  `GradientReplayModel(params)`: the initial parameters (a pytree of float32 arrays). The batch holds, for every
  parameter, rows of gradients under the parameter's '/'-joined path (shape [rows, *param shape]). The loss is the
  sum over parameters of <param, mean of its rows>, so the gradient of a batch (or of a replica's shard of it) is
  the mean of its rows.
  """

  def __init__(self, params):
    self.params = params
    super().__init__(ml_collections.ConfigDict({'model': {}}), None)

  def build_flax_model(self) -> nn.Module:
    return None

  def default_flax_model_config(self) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict()

  def init_params(self, rng, batch):
    del rng, batch
    return jax.tree_util.tree_map(jnp.asarray, self.params)

  def forward(self, params, batch, *, train, rng=None):
    return params

  def loss_function(self, outputs, batch, model_params=None):
    flat = jax.tree_util.tree_flatten_with_path(outputs)[0]
    return sum(jnp.sum(p * jnp.mean(batch[replay_key(path)], axis=0)) for path, p in flat)

  def get_metrics_fn(self, split: Optional[str] = None):
    return lambda outputs, batch: {}


def replay_key(path) -> str:
  """The batch key of a parameter path: its '/'-joined names."""
  return '/'.join(str(getattr(k, 'key', k)) for k in path)
