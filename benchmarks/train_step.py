r"""BERT pretraining step throughput (MLM + NSP, forward + backward + optimizer) against TF Model Garden and HF.

  python benchmarks/train_step.py --sizes=small,base --seq_lens=128,512 --batch_size=128:8,512:2 \
      --peers=ours,tf,torch --output=benchmarks/results/train_step_cpu.json
  python benchmarks/train_step.py --sizes=base --seq_lens=128 --batch_size=128 --dtypes=bfloat16,float32 \
      --peers=ours,torch --output=benchmarks/results/train_step_gpu.json          # on a GPU machine

Each peer runs in its own subprocess (this script with --worker), so the frameworks never share a process: peak
memory is that process's own (ru_maxrss on the CPU; the framework's device peak on a GPU) and one framework's thread
pools cannot slow another. Each worker builds, compiles and warms up, then times windows of --steps steps on request
(one host sync at the end of a window). On the CPU the peers of one configuration stay alive together and take
turns, window by window, with the two matmul-peak workers (JAX, PyTorch): a load from other processes on a shared
machine then falls on all of them alike, and the fastest window of each is reported.

Every peer gets the same synthetic batch (the pretraining batch contract: S tokens, P = 20 masked positions at
S = 128 and 80 at S = 512, all weights 1), the same model size, dropout 0.1 in the encoder and attention, AdamW
(decay 0.01, LayerNorm/bias excluded) and global-norm clipping at 1.0:

- ours: `models.BertPretrainingModel` + `core.state.create_sharded_train_state` + `core.train_step.make_train_step`
  (the optimizer of configs/pretrain.py), state donated, steps dispatched back to back, one block at the end.
- tf: TF Model Garden `BertPretrainerV2` over `networks.BertEncoderV2` and a 'next_sentence' `ClassificationHead`,
  a `tf.function(jit_compile=True)` step (GradientTape + tf_keras AdamW, global clipnorm 1.0).
- torch: Hugging Face `BertForPreTraining` with `labels` (-100 except at the masked positions) and
  `next_sentence_label`, torch.optim.AdamW, `torch.compile` where it compiles (else eager; the table says which).
  HF computes the MLM logits at all S positions, not only the P masked ones: that is the peer as users run it, so
  its executed FLOPs are higher than the model FLOPs that MFU counts (both are in the JSON).

Model FLOPs per step (3x the forward: the backward costs two forwards), per the analytical count
  forward = B * [ L * (S * (8 H^2 + 4 H I) + 4 S^2 H) + P * (2 H^2 + 2 H V) + 2 H^2 + 4 H ]
(Q, K, V and output projections 4 x 2 H^2 per token; feed-forward 2 x 2 H I; QK^T and PV 2 x 2 S H per query; MLM
transform and tied vocabulary projection per predicted position; pooler and NSP). With I = 4 H this is the
familiar 6 N T + 12 L S^2 H B for the encoder. Embedding lookups, LayerNorm, softmax and GELU are not counted.
MFU = model FLOPs / step time / the peak matmul rate measured in the same run on the same device (float32 on the
CPU, bfloat16 on a GPU; the best of JAX and PyTorch on a square matmul).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (benchmarks/common.py)

RESULT_TAG = 'RESULT_JSON: '
PREDICTIONS_PER_SEQ = {128: 20, 512: 80}  # the BERT recipe's max_predictions_per_seq at each phase's length
PEER_NAMES = {'ours': 'ours (JAX/Flax)', 'tf': 'TF Model Garden (XLA)', 'torch': 'HF PyTorch'}


# ----------------------------------------------------------------------------------------------------------------
# Shared by the workers: sizes, the batch, FLOPs, memory.

def size_dims(size: str) -> Dict[str, int]:
  """{'L', 'H', 'A', 'I', 'V'} of a named size: the config.model that configs/common.py builds for it."""
  from projects.bert.models import architecture as configs_common
  m = configs_common.model_config(size)
  return {'L': m.num_layers, 'H': m.hidden_size, 'A': m.num_heads, 'I': m.intermediate_size, 'V': m.vocab_size}


def num_predictions(seq_len: int) -> int:
  """P for a sequence length: 20 at 128, 80 at 512, else 15% of S rounded (the BERT masking rate)."""
  return PREDICTIONS_PER_SEQ.get(seq_len, max(1, round(0.15 * seq_len)))


def pretraining_flops(size: str, seq_len: int, batch_size: int, mlm_positions: Optional[int] = None) -> float:
  """Training FLOPs of one step (3 x forward) with the MLM head on `mlm_positions` per sequence (default P)."""
  d = size_dims(size)
  h, i, v, s = d['H'], d['I'], d['V'], seq_len
  p = num_predictions(seq_len) if mlm_positions is None else mlm_positions
  encoder = d['L'] * (s * (8 * h * h + 4 * h * i) + 4 * s * s * h)
  heads = p * (2 * h * h + 2 * h * v) + 2 * h * h + 4 * h
  return 3.0 * batch_size * (encoder + heads)


def synthetic_batch(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0) -> Dict[str, np.ndarray]:
  """A pretraining batch by the contract: int32 [B, S] tokens (two segments, no padding), P sorted distinct masked
  positions per row (never [CLS]) with their original ids, weights 1.0, random NSP labels."""
  rng = np.random.default_rng(seed)
  p = num_predictions(seq_len)
  input_ids = rng.integers(1000, vocab_size, (batch_size, seq_len)).astype(np.int32)
  input_ids[:, 0] = 101  # [CLS]
  segment_ids = np.zeros((batch_size, seq_len), np.int32)
  segment_ids[:, seq_len // 2:] = 1
  positions = np.stack([np.sort(rng.choice(np.arange(1, seq_len), p, replace=False)) for _ in range(batch_size)])
  positions = positions.astype(np.int32)
  return {
      'input_ids': input_ids,
      'input_mask': np.ones((batch_size, seq_len), np.int32),
      'segment_ids': segment_ids,
      'masked_lm_positions': positions,
      'masked_lm_ids': np.take_along_axis(input_ids, positions, axis=1),
      'masked_lm_weights': np.ones((batch_size, p), np.float32),
      'next_sentence_labels': rng.integers(0, 2, (batch_size,)).astype(np.int32),
  }


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ----------------------------------------------------------------------------------------------------------------
# Workers. Each runs in its own process: `prepare_<peer>(spec)` builds and compiles (the first step) and warms up,
# and returns (info, run_steps, finish): `run_steps(n)` runs n steps and returns once they are done on the device;
# `finish()` returns the last loss and device memory. `serve` then times windows of steps on request.

Prepared = Tuple[Dict[str, Any], Callable[[int], None], Callable[[], Dict[str, Any]]]


def _first_steps(run_steps: Callable[[int], None], spec: Dict[str, Any], info: Dict[str, Any]) -> None:
  """Runs the compiling first step, then `spec['warmup']` more; records in `info` the first step's seconds
  (`first_step_s`: compilation, and tracing for JAX) and the seconds from the worker's launch to the end of its
  first step (`start_to_first_step_s`: interpreter and framework start-up, model and state creation, compilation)."""
  t0 = time.perf_counter()
  run_steps(1)
  info['first_step_s'] = time.perf_counter() - t0
  if spec.get('launch_time'):
    info['start_to_first_step_s'] = time.time() - spec['launch_time']
  if spec.get('warmup'):
    run_steps(spec['warmup'])


def prepare_ours(spec: Dict[str, Any]) -> Prepared:
  import jax

  from core import optimizers
  from core import sharding as sharding_lib
  from core.state import create_sharded_train_state
  from core.train_step import make_train_step
  from projects.bert.models import bert_models as models
  from projects.bert.models import architecture as configs_common
  from projects.bert.configs import pretrain

  if spec.get('prng'):
    jax.config.update('jax_default_prng_impl', spec['prng'])  # e.g. 'rbg': dropout masks from XLA's RNG op
  t0 = time.perf_counter()
  config = pretrain.get_config(spec['size'])
  config.model = configs_common.model_config(spec['size'], dtype=spec['dtype'], remat=spec.get('remat', False))
  for key, value in spec.get('model_overrides', {}).items():
    config.model[key] = value
  model = models.BertPretrainingModel(config, None)
  mesh = sharding_lib.create_mesh()
  lr_fn = optimizers.learning_rate_schedule(config.schedule, config.num_train_steps)
  tx = optimizers.create_optimizer(config.optimizer, lr_fn)
  np_batch = synthetic_batch(spec['batch_size'], spec['seq_len'], config.model.vocab_size)
  state, shardings = create_sharded_train_state(model.params_init(np_batch), tx, jax.random.PRNGKey(0), mesh)
  jax.block_until_ready(state)
  init_s = time.perf_counter() - t0
  step = make_train_step(model, shardings, mesh, learning_rate_fn=lr_fn)
  batch = sharding_lib.make_global_batch(np_batch, mesh)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params))
  holder = {'state': state, 'metrics': None}

  def run_steps(n):
    s, m = holder['state'], holder['metrics']
    for _ in range(n):
      s, m = step(s, batch)  # the state is donated; no host reads in the loop, so dispatch runs ahead
    jax.block_until_ready(s)
    holder['state'], holder['metrics'] = s, m

  device = jax.devices()[0]
  variant = f'jax {jax.__version__}, {spec["dtype"]}' + (', remat' if spec.get('remat') else '')
  variant += ''.join(f', {k}={v}' for k, v in spec.get('model_overrides', {}).items())
  variant += f', prng={spec["prng"]}' if spec.get('prng') else ''
  info = {'impl': variant, 'init_s': init_s, 'params': n_params, 'device': device.device_kind,
          'executed_flops': pretraining_flops(spec['size'], spec['seq_len'], spec['batch_size'])}
  _first_steps(run_steps, spec, info)

  def finish():
    out = {'loss': float(holder['metrics']['loss'])}
    stats = device.memory_stats() if device.platform != 'cpu' else None
    if stats:
      out['device_peak_mb'] = stats.get('peak_bytes_in_use', 0) / 2**20
    return out

  return info, run_steps, finish


def prepare_tf(spec: Dict[str, Any]) -> Prepared:
  import tensorflow as tf
  import tf_keras
  from official.nlp.modeling import layers, models, networks

  if spec['dtype'] != 'float32':
    raise NotImplementedError('the TF peer runs float32 only here')
  t0 = time.perf_counter()
  d = size_dims(spec['size'])
  tf.random.set_seed(0)
  gelu = lambda x: tf_keras.activations.gelu(x, approximate=False)  # noqa: E731  (ours and HF use exact GELU)
  init = tf_keras.initializers.TruncatedNormal(stddev=0.02)
  encoder = networks.BertEncoderV2(
      vocab_size=d['V'], hidden_size=d['H'], num_layers=d['L'], num_attention_heads=d['A'], max_sequence_length=512,
      type_vocab_size=2, inner_dim=d['I'], inner_activation=gelu, output_dropout=0.1, attention_dropout=0.1,
      initializer=init)
  nsp_head = layers.ClassificationHead(inner_dim=d['H'], num_classes=2, dropout_rate=0.1, initializer=init,
                                       name='next_sentence')
  model = models.BertPretrainerV2(encoder, mlm_activation=gelu, mlm_initializer=init, classification_heads=[nsp_head])
  optimizer = tf_keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01, beta_1=0.9, beta_2=0.999,
                                        epsilon=1e-6, global_clipnorm=1.0)
  optimizer.exclude_from_weight_decay(var_names=['LayerNorm', 'layer_norm', 'bias'])

  b = synthetic_batch(spec['batch_size'], spec['seq_len'], d['V'])
  inputs = {'input_word_ids': tf.constant(b['input_ids']), 'input_mask': tf.constant(b['input_mask']),
            'input_type_ids': tf.constant(b['segment_ids']),
            'masked_lm_positions': tf.constant(b['masked_lm_positions'])}
  labels = {'ids': tf.constant(b['masked_lm_ids']), 'weights': tf.constant(b['masked_lm_weights']),
            'nsp': tf.constant(b['next_sentence_labels'])}
  model(inputs, training=False)  # builds the variables
  variables = model.trainable_variables
  n_params = int(sum(np.prod(v.shape) for v in variables))
  optimizer.build(variables)
  init_s = time.perf_counter() - t0

  @tf.function(jit_compile=True)
  def train_step(inputs, labels):
    with tf.GradientTape() as tape:
      out = model(inputs, training=True)
      mlm_ce = tf_keras.losses.sparse_categorical_crossentropy(labels['ids'], out['mlm_logits'], from_logits=True)
      mlm = tf.reduce_sum(mlm_ce * labels['weights']) / tf.maximum(tf.reduce_sum(labels['weights']), 1e-8)
      nsp = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(
          labels['nsp'], tf.cast(out['next_sentence'], tf.float32), from_logits=True))
      loss = mlm + nsp
    grads = tape.gradient(loss, variables)
    # The encoder's own pooler feeds no loss (the NSP head pools for itself, as in Model Garden's pretraining task).
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    return loss

  holder = {}

  def run_steps(n):
    out = None
    for _ in range(n):
      out = train_step(inputs, labels)
    holder['loss'] = float(out.numpy())  # the one host read, after the last step

  info = {'impl': f'tf {tf.__version__}, jit_compile=True, float32', 'init_s': init_s, 'params': n_params,
          'device': 'cpu', 'executed_flops': pretraining_flops(spec['size'], spec['seq_len'], spec['batch_size'])}
  _first_steps(run_steps, spec, info)
  return info, run_steps, lambda: {'loss': holder['loss']}


def prepare_torch(spec: Dict[str, Any]) -> Prepared:
  import contextlib

  import torch
  import transformers
  from transformers import BertConfig, BertForPreTraining

  cuda = spec['backend'] == 'gpu'
  device = torch.device('cuda' if cuda else 'cpu')
  if not cuda:
    torch.set_num_threads(spec.get('threads') or os.cpu_count())
  bf16 = spec['dtype'] == 'bfloat16'
  if bf16 and not cuda:
    raise NotImplementedError('the torch peer runs bfloat16 (autocast) on GPUs only here')
  torch.manual_seed(0)
  t0 = time.perf_counter()
  d = size_dims(spec['size'])
  config = BertConfig(vocab_size=d['V'], hidden_size=d['H'], num_hidden_layers=d['L'], num_attention_heads=d['A'],
                      intermediate_size=d['I'], hidden_act='gelu', hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                      layer_norm_eps=1e-12)
  model = BertForPreTraining(config).to(device).train()
  n_params = sum(p.numel() for p in model.parameters())
  no_decay = ('bias', 'LayerNorm.weight', 'LayerNorm.bias')
  groups = [{'params': [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
             'weight_decay': 0.01},
            {'params': [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
             'weight_decay': 0.0}]
  optimizer = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-6)
  if cuda:
    torch.cuda.synchronize()
  init_s = time.perf_counter() - t0

  b = synthetic_batch(spec['batch_size'], spec['seq_len'], d['V'])
  labels = np.full(b['input_ids'].shape, -100, np.int64)
  np.put_along_axis(labels, b['masked_lm_positions'], b['masked_lm_ids'], axis=1)
  kwargs = {'input_ids': torch.from_numpy(b['input_ids'].astype(np.int64)).to(device),
            'attention_mask': torch.from_numpy(b['input_mask'].astype(np.int64)).to(device),
            'token_type_ids': torch.from_numpy(b['segment_ids'].astype(np.int64)).to(device),
            'labels': torch.from_numpy(labels).to(device),
            'next_sentence_label': torch.from_numpy(b['next_sentence_labels'].astype(np.int64)).to(device)}
  forward = torch.compile(model) if spec['compile'] else model
  autocast = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
  sync = torch.cuda.synchronize if cuda else (lambda: None)
  holder = {}

  def run_steps(n):
    loss = None
    for _ in range(n):
      optimizer.zero_grad(set_to_none=True)
      with autocast():
        loss = forward(**kwargs).loss
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      optimizer.step()
    sync()
    holder['loss'] = loss

  attn = getattr(model.config, '_attn_implementation', '?')
  info = {'impl': (f'torch {torch.__version__}, transformers {transformers.__version__}, '
                   f'{"torch.compile" if spec["compile"] else "eager"}, attn={attn}, '
                   f'{"bf16 autocast" if bf16 else "float32"}'
                   + ('' if cuda else f', {torch.get_num_threads()} threads')),
          'init_s': init_s, 'params': n_params, 'device': torch.cuda.get_device_name() if cuda else 'cpu',
          # HF's MLM head scores all S positions, the loss then keeps the P labelled ones.
          'executed_flops': pretraining_flops(spec['size'], spec['seq_len'], spec['batch_size'],
                                              mlm_positions=spec['seq_len'])}
  _first_steps(run_steps, spec, info)
  if cuda:
    torch.cuda.reset_peak_memory_stats()  # the steady-state peak, as jax's peak_bytes_in_use after warm-up is not

  def finish():
    out = {'loss': float(holder['loss'].detach())}
    if cuda:
      out['device_peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    return out

  return info, run_steps, finish


def prepare_peak(spec: Dict[str, Any]) -> Prepared:
  """Square matmuls on random data: float32 n=2048 on the CPU, bfloat16 n=8192 on a GPU. One 'step' is one matmul
  of 2 n^3 FLOPs. On a GPU the framework-default float32 rate (TF32 matrix units) is measured once for the record."""
  gpu = spec['backend'] == 'gpu'
  n = spec.get('n') or (8192 if gpu else 2048)
  dtype = 'bfloat16' if gpu else 'float32'
  info = {'n': n, 'dtype': dtype, 'executed_flops': 2.0 * n ** 3}
  if spec['framework'] == 'jax':
    import jax
    import jax.numpy as jnp

    def make(dt):
      ka, kb = jax.random.split(jax.random.PRNGKey(0))
      a = jax.random.normal(ka, (n, n), jnp.float32).astype(dt)
      b = jax.random.normal(kb, (n, n), jnp.float32).astype(dt)
      mm = jax.jit(jnp.matmul)
      mm(a, b).block_until_ready()

      def run(k):
        out = None
        for _ in range(k):
          out = mm(a, b)
        out.block_until_ready()
      return run

    info['impl'] = f'jax {jax.__version__}'
  else:
    import torch
    if not gpu:
      torch.set_num_threads(os.cpu_count())
    device = 'cuda' if gpu else 'cpu'
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    def make(dt):
      a = torch.randn(n, n, device=device).to(getattr(torch, dt))
      b = torch.randn(n, n, device=device).to(getattr(torch, dt))
      torch.matmul(a, b)
      sync()

      def run(k):
        for _ in range(k):
          torch.matmul(a, b)
        sync()
      return run

    info['impl'] = f'torch {torch.__version__}'
  if gpu:
    run32 = make('float32')
    run32(3)
    t0 = time.perf_counter()
    run32(20)
    info['float32_default_flops'] = 20 * 2.0 * n ** 3 / (time.perf_counter() - t0)
  return info, make(dtype), lambda: {}


PREPARE = {'ours': prepare_ours, 'tf': prepare_tf, 'torch': prepare_torch, 'peak': prepare_peak}
READY_TAG, WINDOW_TAG = 'READY_JSON: ', 'WINDOW_S: '


def serve(spec: Dict[str, Any]) -> None:
  """Worker main: prepare, say READY, then answer 'run N' with the window's seconds until 'quit' (or EOF)."""
  try:
    info, run_steps, finish = PREPARE[spec['peer']](spec)
    print(READY_TAG + json.dumps(info), flush=True)
    for line in sys.stdin:
      parts = line.split()
      if not parts or parts[0] != 'run':
        break
      t0 = time.perf_counter()
      run_steps(int(parts[1]))
      print(WINDOW_TAG + repr(time.perf_counter() - t0), flush=True)
    result = {**info, **finish(), 'peak_rss_mb': _peak_rss_mb(), 'ok': True}
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    result = {'ok': False, 'error': f'{type(e).__name__}: {e}'[:400]}
  print(RESULT_TAG + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------------------------------
# The orchestrator.

def worker_env(backend: str) -> Dict[str, str]:
  """Environment of one worker: quiet logs, no fake device counts, and on a CPU run no framework sees a GPU."""
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)  # the test suite's 8 fake CPU devices must not leak into a benchmark
  env.update({'TF_CPP_MIN_LOG_LEVEL': '2', 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1',
              'PYTHONUNBUFFERED': '1'})
  if backend == 'cpu':
    env.update({'JAX_PLATFORMS': 'cpu', 'CUDA_VISIBLE_DEVICES': ''})
  else:
    env.pop('JAX_PLATFORMS', None)
    env['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'  # several processes share the GPU; peaks are still exact
  return env


class Worker:
  """One worker subprocess driven over its stdin/stdout; its stderr goes to a log file."""

  def __init__(self, spec: Dict[str, Any], log_dir: str):
    self.spec = spec
    name = '_'.join(str(spec[k]) for k in ('peer', 'variant', 'framework', 'size', 'seq_len', 'batch_size', 'dtype',
                                           'compile', 'threads', 'prng') if spec.get(k) is not None)
    self.log_path = os.path.join(log_dir, name + '.log')
    self.log = open(self.log_path, 'w')
    spec = {**spec, 'launch_time': time.time()}  # the worker measures its start-up from here
    self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--worker=' + json.dumps(spec)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT,
                                 env=worker_env(spec['backend']))
    self.buffer = b''
    self.info: Dict[str, Any] = {}
    self.result: Optional[Dict[str, Any]] = None
    self.windows: List[float] = []

  def _read_tagged(self, timeout: float) -> Tuple[str, str]:
    """The next line carrying one of our tags, as (tag, payload); ('', reason) on EOF or timeout."""
    deadline = time.monotonic() + timeout
    fd = self.proc.stdout.fileno()
    while True:
      while b'\n' in self.buffer:
        line, self.buffer = self.buffer.split(b'\n', 1)
        text = line.decode(errors='replace')
        for tag in (READY_TAG, WINDOW_TAG, RESULT_TAG):
          if text.startswith(tag):
            return tag, text[len(tag):]
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        return '', f'timed out after {timeout:.0f} s'
      readable, _, _ = select.select([fd], [], [], remaining)
      if readable:
        chunk = os.read(fd, 65536)
        if not chunk:
          return '', 'exited'
        self.buffer += chunk

  def _fail(self, reason: str) -> None:
    self.kill()
    tail = ''
    try:
      with open(self.log_path) as f:
        lines = [ln.strip() for ln in f if ln.strip()]
      tail = lines[-1] if lines else ''
    except OSError:
      pass
    if self.result is None:
      self.result = {'ok': False, 'error': f'{reason}; {tail}'[:400]}

  @property
  def alive(self) -> bool:
    return self.result is None

  def wait_ready(self, timeout: float) -> bool:
    tag, payload = self._read_tagged(timeout)
    if tag == READY_TAG:
      self.info = json.loads(payload)
      return True
    if tag == RESULT_TAG:
      self.result = json.loads(payload)
      self._fail('failed while preparing')
    else:
      self._fail(payload)
    return False

  def window(self, steps: int, timeout: float) -> Optional[float]:
    """Seconds per step over one window of `steps` steps (None if the worker died)."""
    if not self.alive:
      return None
    self.proc.stdin.write(f'run {steps}\n'.encode())
    self.proc.stdin.flush()
    tag, payload = self._read_tagged(timeout)
    if tag != WINDOW_TAG:
      if tag == RESULT_TAG:
        self.result = json.loads(payload)
      self._fail(payload if not tag else 'failed in a window')
      return None
    sec = float(payload) / steps
    self.windows.append(sec)
    return sec

  def close(self, timeout: float) -> Dict[str, Any]:
    if self.alive:
      try:
        self.proc.stdin.write(b'quit\n')
        self.proc.stdin.flush()
      except BrokenPipeError:
        pass
      tag, payload = self._read_tagged(timeout)
      if tag == RESULT_TAG:
        self.result = json.loads(payload)
      else:
        self._fail(payload)
    self.kill()
    self.log.close()
    return {**self.info, **(self.result or {})}

  def kill(self) -> None:
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait()


def peer_name(spec: Dict[str, Any]) -> str:
  return PEER_NAMES[spec['peer']] + (f' [{spec["variant"]}]' if spec.get('variant') else '')


def parse_overrides(text: str) -> Dict[str, Any]:
  """'a=1,b=true,c=cudnn' -> {'a': 1, 'b': True, 'c': 'cudnn'} (JSON values where they parse, else strings)."""
  out = {}
  for item in filter(None, text.split(',')):
    key, value = item.split('=')
    try:
      out[key.strip()] = json.loads(value)
    except json.JSONDecodeError:
      out[key.strip()] = value.strip()
  return out


def detect_backend() -> str:
  return 'gpu' if common.gpu_names() else 'cpu'


def parse_batch_sizes(text: str, seq_lens: List[int]) -> Dict[int, int]:
  """'8' (every length) or '128:8,512:2' -> {seq_len: batch_size}."""
  if ':' not in text:
    return {s: int(text) for s in seq_lens}
  out = {int(k): int(v) for k, v in (item.split(':') for item in text.split(','))}
  missing = [s for s in seq_lens if s not in out]
  if missing:
    raise SystemExit(f'--batch_size gives no batch size for sequence length(s) {missing}.')
  return out


def start_worker(spec: Dict[str, Any], args: argparse.Namespace, worker: Optional[Worker] = None) -> Worker:
  """Starts a worker (or takes one already launched) and waits until it has compiled; torch.compile falls back to
  eager under --torch_compile=auto."""
  worker = worker or Worker(spec, args.log_dir)
  worker.wait_ready(args.timeout)
  if spec['peer'] == 'torch' and spec.get('compile') and args.torch_compile == 'auto' and not worker.alive:
    error = worker.close(10).get('error')
    print(f'    torch.compile failed ({error}); falling back to eager', flush=True)
    worker = Worker({**spec, 'compile': False}, args.log_dir)
    if worker.wait_ready(args.timeout):
      worker.info['compile_error'] = error
  return worker


def run_rounds(workers: List[Worker], peak_workers: List[Worker], args: argparse.Namespace, rounds: int) -> None:
  """`rounds` rounds; in each every live worker times one window, in a rotating order, and each window is followed
  by one of a peak worker (in turn), so a background load on a shared machine falls on the peers and the peak alike.
  With no workers, each round is one peak window."""
  k = 0
  for r in range(rounds):
    shift = r % len(workers) if workers else 0
    for w in (workers[shift:] + workers[:shift]) or [None]:
      if w is not None:
        w.window(args.steps, args.timeout)
      if peak_workers:
        peak_workers[k % len(peak_workers)].window(args.peak_steps, args.timeout)
        k += 1


def main(argv: Optional[List[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='small,base')
  parser.add_argument('--seq_lens', default='128,512')
  parser.add_argument('--batch_size', default='128:8,512:2', help="'8' for every length or '128:8,512:2'")
  parser.add_argument('--dtypes', default='float32',
                      help='float32 and/or bfloat16 (the TF peer runs float32 only, torch bf16 on GPUs only)')
  parser.add_argument('--peers', default='ours,tf,torch')
  parser.add_argument('--steps', type=int, default=2, help='steps per timed window')
  parser.add_argument('--repeats', type=int, default=3, help='timed windows per peer; the fastest counts')
  parser.add_argument('--warmup', type=int, default=1, help='untimed steps after the compiling first step')
  parser.add_argument('--peak_steps', type=int, default=0, help='matmuls per peak window (0: 5 on CPU, 50 on GPU)')
  parser.add_argument('--torch_compile', default='auto', choices=['auto', 'on', 'off'],
                      help='auto: try torch.compile, fall back to eager if it fails')
  parser.add_argument('--remat', action='store_true', help='ours with per-layer rematerialisation')
  parser.add_argument('--ours_prng', default='', help="jax_default_prng_impl for ours ('rbg', ...; default JAX's)")
  parser.add_argument('--torch_threads', default='', help='comma list of torch CPU thread counts (default: cores)')
  parser.add_argument('--ours_overrides', default='',
                      help="extra config.model fields for ours, e.g. 'attention_dropout_prob=0.0'")
  parser.add_argument('--ours_variants', default='',
                      help="more rows of ours, ';'-separated NAME:FIELD=VALUE,... (config.model fields, or prng), "
                           "e.g. 'scan:scan_layers=true;rbg:prng=rbg'")
  parser.add_argument('--variants_at', default='',
                      help="SIZE:SEQ pairs where the variants run, e.g. 'base:128' (default: every configuration); "
                           'variant rows are measured after all the others')
  parser.add_argument('--peak_frameworks', default='jax,torch', help='frameworks that measure the matmul peak')
  parser.add_argument('--deadline_min', type=float, default=0,
                      help='start no new configuration after this many minutes (0: no limit); skipped rows say so')
  parser.add_argument('--backend', default='auto', choices=['auto', 'cpu', 'gpu'])
  parser.add_argument('--interleave', default='auto', choices=['auto', 'on', 'off'],
                      help="keep a configuration's peers alive together and alternate their windows (auto: on CPU)")
  parser.add_argument('--timeout', type=float, default=900, help='seconds for one worker to compile, or one window')
  parser.add_argument('--log_dir', default='', help="each worker's stderr (default: a temporary folder)")
  parser.add_argument('--output', default='')
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    serve(json.loads(args.worker))
    return

  backend = detect_backend() if args.backend == 'auto' else args.backend
  interleave = (backend == 'cpu') if args.interleave == 'auto' else args.interleave == 'on'
  args.peak_steps = args.peak_steps or (50 if backend == 'gpu' else 5)
  args.log_dir = args.log_dir or tempfile.mkdtemp(prefix='train_step_bench_')
  os.makedirs(args.log_dir, exist_ok=True)
  sizes = [s for s in args.sizes.split(',') if s]
  seq_lens = [int(s) for s in args.seq_lens.split(',') if s]
  batch_sizes = parse_batch_sizes(args.batch_size, seq_lens)
  peers = [p for p in args.peers.split(',') if p]
  dtypes = [d for d in args.dtypes.split(',') if d]
  torch_threads = [int(t) for t in args.torch_threads.split(',') if t] or [os.cpu_count()]
  overrides = parse_overrides(args.ours_overrides)
  variants = {}
  for item in filter(None, args.ours_variants.split(';')):
    name, _, fields = item.partition(':')
    variants[name.strip()] = parse_overrides(fields)
  env = common.environment()
  t_start = time.perf_counter()
  print(f'backend={backend} cpu={env["cpu"]} x{env["cpu_count"]} gpus={env["gpus"]} interleave={interleave} '
        f'logs={args.log_dir}', flush=True)

  peak_workers = []
  for fw in filter(None, args.peak_frameworks.split(',')):
    w = Worker({'peer': 'peak', 'framework': fw, 'backend': backend}, args.log_dir)
    if w.wait_ready(args.timeout):
      peak_workers.append(w)
  run_rounds([], peak_workers, args, len(peak_workers))

  variants_at = {tuple(item.split(':')) for item in args.variants_at.split(',') if item}
  configs, variant_configs = [], []
  for size in sizes:
    for seq_len in seq_lens:
      for dtype in dtypes:
        specs, variant_specs = [], []
        for peer in peers:
          if peer == 'tf' and (dtype != 'float32' or backend == 'gpu'):
            continue  # TF runs float32 here, and the GPU image has no TensorFlow
          if peer == 'torch' and dtype == 'bfloat16' and backend == 'cpu':
            continue
          spec = {'peer': peer, 'size': size, 'seq_len': seq_len, 'batch_size': batch_sizes[seq_len],
                  'dtype': dtype, 'warmup': args.warmup, 'backend': backend, 'remat': args.remat}
          if peer == 'ours':
            spec.update({'model_overrides': overrides, 'prng': args.ours_prng or None})
            for name, fields in (variants.items() if not variants_at or (size, str(seq_len)) in variants_at
                                 else ()):
              fields = dict(fields)
              prng = fields.pop('prng', None) or args.ours_prng or None
              variant_specs.append({**spec, 'variant': name, 'model_overrides': {**overrides, **fields},
                                    'prng': prng})
          if peer == 'torch':
            spec['compile'] = args.torch_compile != 'off'
            for threads in (torch_threads if backend == 'cpu' else [None]):
              specs.append({**spec, 'threads': threads})
          else:
            specs.append(spec)
        configs.append(specs)
        if variant_specs:
          variant_configs.append(variant_specs)
  configs += variant_configs  # the main table first: a deadline skips variants before it skips a main row

  rows = []
  for specs in configs:
    s0 = specs[0]
    print(f'{s0["size"]} S={s0["seq_len"]} B={s0["batch_size"]} {s0["dtype"]}:', flush=True)
    if args.deadline_min and time.perf_counter() - t_start > 60 * args.deadline_min:
      print(f'  skipped: past the {args.deadline_min:g}-minute deadline', flush=True)
      for spec in specs:
        rows.append({'size': spec['size'], 'seq_len': spec['seq_len'], 'batch': spec['batch_size'],
                     'dtype': spec['dtype'], 'peer': spec['peer'], 'name': peer_name(spec), 'ok': False,
                     'error': f'skipped: past the {args.deadline_min:g}-minute deadline'})
      continue
    finished = []
    if interleave:
      # Launched together: they compile in parallel, then take turns on the device.
      launched = [Worker(spec, args.log_dir) for spec in specs]
      workers = [start_worker(spec, args, w) for spec, w in zip(specs, launched)]
      run_rounds([w for w in workers if w.alive], peak_workers, args, args.repeats)
      finished = [(w, w.close(args.timeout)) for w in workers]
    else:
      for spec in specs:
        w = start_worker(spec, args)
        run_rounds([w] if w.alive else [], peak_workers, args, args.repeats)
        finished.append((w, w.close(args.timeout)))
    for w, result in finished:
      spec = w.spec
      row = {'size': spec['size'], 'seq_len': spec['seq_len'], 'batch': spec['batch_size'],
             'P': num_predictions(spec['seq_len']), 'dtype': spec['dtype'], 'peer': spec['peer'],
             'name': peer_name(spec) + (f' {spec["threads"]} thr' if len(torch_threads) > 1 and
                                        spec.get('threads') else ''),
             'ours_variant': spec.get('variant'),
             'model_flops': pretraining_flops(spec['size'], spec['seq_len'], spec['batch_size']),
             'windows_s': w.windows, **result}
      if result.get('ok') and w.windows:
        row['step_s'] = min(w.windows)
        row['median_step_s'] = float(np.median(w.windows))
        row['step_ms'] = 1e3 * row['step_s']
        row['tokens_per_s'] = spec['batch_size'] * spec['seq_len'] / row['step_s']
        row['model_tflops'] = row['model_flops'] / row['step_s'] / 1e12
        row['peak_mem_mb'] = result.get('device_peak_mb', result.get('peak_rss_mb'))
        print(f'  {row["name"]}: {row["step_ms"]:.1f} ms/step (median {1e3 * row["median_step_s"]:.1f}), '
              f'{row["tokens_per_s"]:.0f} tok/s, init {result.get("init_s", 0):.1f} s, first step '
              f'{result.get("first_step_s", 0):.1f} s, start to first step '
              f'{result.get("start_to_first_step_s", 0):.1f} s  [{result.get("impl")}]', flush=True)
      else:
        row['ok'] = False
        print(f'  {row["name"]}: FAILED {result.get("error")}', flush=True)
      rows.append(row)

  for w in peak_workers:
    w.close(args.timeout)
  peak_rates = {w.spec['framework']: [w.info['executed_flops'] / t for t in w.windows] for w in peak_workers}
  peak_flops = max((max(v) for v in peak_rates.values() if v), default=float('nan'))
  peak = {'dtype': 'bfloat16' if backend == 'gpu' else 'float32', 'flops': peak_flops,
          'by_framework': {w.spec['framework']: {**w.info, 'best_flops': max(peak_rates[w.spec['framework']])}
                           for w in peak_workers if peak_rates[w.spec['framework']]}}

  for row in rows:
    if not row.get('ok'):
      row['variant'] = f'FAILED: {row.get("error")}'
      continue
    row['mfu'] = row['model_flops'] / row['step_s'] / peak_flops
    row['mfu_pct'] = 100 * row['mfu']
    row['variant'] = row.get('impl')
    ours = next((r for r in rows if r['peer'] == 'ours' and not r.get('ours_variant') and r.get('ok') and
                 all(r[k] == row[k] for k in ('size', 'seq_len', 'batch', 'dtype'))), None)
    if ours is not None:
      row['ours_speedup'] = ours['tokens_per_s'] / row['tokens_per_s']

  columns = ['size', 'seq_len', 'batch', 'dtype', 'name', 'step_ms', 'tokens_per_s', 'ours_speedup', 'mfu_pct',
             'peak_mem_mb', 'init_s', 'first_step_s', 'start_to_first_step_s', 'variant']
  table = common.format_table(rows, columns)
  total_s = time.perf_counter() - t_start
  print(f'\nBERT pretraining train step on {backend} ({env["cpu"]} x{env["cpu_count"]}{", " if env["gpus"] else ""}'
        f'{", ".join(env["gpus"])}); peak {peak["dtype"]} matmul {peak_flops / 1e12:.3f} TFLOP/s; '
        f'fastest of {args.repeats} windows of {args.steps} steps; ours_speedup = ours tokens/s / row tokens/s; '
        f'total {total_s / 60:.1f} min\n')
  print(table, flush=True)
  if args.output:
    common.write_json(args.output, {
        'benchmark': 'train_step', 'backend': backend, 'environment': env,
        'command': 'python ' + ' '.join([os.path.relpath(os.path.abspath(__file__), ROOT)] + sys.argv[1:]),
        'total_s': total_s, 'peak_matmul': peak, 'peak_windows_flops': peak_rates,
        'flops_formula': '3 * B * [L * (S * (8 H^2 + 4 H I) + 4 S^2 H) + P * (2 H^2 + 2 H V) + 2 H^2 + 4 H]',
        'rows': rows, 'table': table})
    print(f'wrote {args.output}')


if __name__ == '__main__':
  main()
