"""scenic-bert: pretrain BERT; fine-tune it on GLUE, SQuAD, SuperGLUE and XTREME; probe it few-shot; one trainer,
chosen by config.

usage: python main.py --config=projects/bert/configs/FILE.py[:VARIANT] --workdir=DIR [--config.FIELD=VALUE ...]

installed (`pip install -e .`), from any directory: `bert-train` is `python main.py`, `bert-prepare` is
`python -m projects.bert.datasets.prepare`, `bert-convert` is `python -m projects.bert.checkpoints.convert`; a
--config path not found where you are is looked up in the repository and its configs folder (`--config=glue.py:mrpc`).

configs (projects/bert/configs/), VARIANT after the colon; RECIPE model_garden (default), bert_paper or scenic:
  pretrain.py:SIZE[,RECIPE][,phase2][,fewshot][,sop]
                                        MLM + NSP pretraining; SIZE tiny, mini, small, medium, base, large, or
                                        Scenic BERT's Ti, S, B, L with RECIPE scenic (`pretrain.py:S,scenic`);
                                        `,sop`: ALBERT's sentence order instead of NSP (`prepare pretraining
                                        --sentence_order=true` records)
  glue.py:TASK[,SIZE][,RECIPE][,predict]
                                        GLUE fine-tuning; TASK cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli;
                                        the architecture comes with --config.init_from (no SIZE needed)
  glue_suite.py[:SIZE]                  every GLUE task found x N seeds: one table, the submission files
  squad.py:VERSION[,SIZE]               SQuAD fine-tuning; VERSION v1.1 or v2.0
  superglue.py:TASK[,SIZE][,RECIPE][,predict]
                                        SuperGLUE fine-tuning; TASK boolq, cb, copa, multirc, record, rte, wic, wsc
                                        (rte also scores AX-b and AX-g)
  superglue_suite.py[:SIZE]             the 8 SuperGLUE tasks x N seeds: one table, the leaderboard files
  xtreme.py:TASK[,SIZE][,RECIPE][,predict]
                                        XTREME zero-shot: fine-tune on English, score every language; TASK xnli,
                                        pawsx, udpos, panx, xquad, mlqa, tydiqa, or bucc2018, tatoeba (retrieval,
                                        no fine-tuning) (records: `bert-prepare xtreme`; mBERT: --config.init_from)
  xtreme_suite.py[:SIZE][,RECIPE]       the nine XTREME tasks x N seeds: one table, the leaderboard folder
  fewshot.py:TASKS[,SIZE]               few-shot ridge probes of an encoder; TASKS sst2+rte, `all` (the tasks
                                        found in the data, as `prepare glue --task=all`), `classification` or
                                        `scenic` (Scenic BERT's tasks and protocol beside ours)
  demo.py[:smoke]                       the main job: data, pretraining, conversion, fine-tuning, few-shot
  `,runlocal` shrinks any of them to a tiny model and a few steps.
other projects on the same main.py, built from BERT's parts:
  projects/sentence_embedding/configs/paraphrase.py:TASK[,SIZE]
                                        a sentence-embedding bi-encoder (contrastive, recall@1); TASK mrpc or qqp

examples:
  python main.py --config=projects/bert/configs/glue.py:mrpc --workdir=/tmp/mrpc --config.init_from=/tmp/bert_hf
  python main.py --config=projects/bert/configs/glue.py:mrpc --workdir=/tmp/mrpc --config.mode=predict
  python main.py --config=projects/bert/configs/glue.py:mrpc --print_config    # every field, value and meaning
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence

# The repository root (the folder holding core/ and projects/): config paths are looked up there too.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join('projects', 'bert', 'configs')


def resolve_config_path(value: str) -> str:
  """`path.py[:variant]` as given when `path.py` exists; else the first of ROOT/path.py, ROOT/CONFIGS/path.py
  that does; else as given (the config loader then names the missing file)."""
  path, sep, variant = value.partition(':')
  if os.path.exists(path):
    return value
  for candidate in (os.path.join(ROOT, path), os.path.join(ROOT, CONFIGS, path)):
    if os.path.exists(candidate):
      return candidate + sep + variant
  return value


def _with_config_resolved(argv: Sequence[str]) -> List[str]:
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith('--config='):
      out[i] = '--config=' + resolve_config_path(arg[len('--config='):])
    elif arg == '--config' and i + 1 < len(out):
      out[i + 1] = resolve_config_path(out[i + 1])
  return out


def train(argv: Optional[Sequence[str]] = None) -> None:
  """`bert-train` / `python main.py`: flags -> `core.app.run` with the BERT registries declared."""
  from core import app
  import projects

  projects.declare_all()  # every project's datasets, models, trainers and evaluators, BERT's among them

  sys.argv[:] = _with_config_resolved(sys.argv if argv is None else [sys.argv[0], *argv])
  app.run(usage=__doc__)


def prepare() -> None:
  """`bert-prepare`: `python -m projects.bert.datasets.prepare`."""
  from projects.bert.datasets import prepare as prepare_lib
  sys.exit(prepare_lib.main())


def convert() -> None:
  """`bert-convert`: `python -m projects.bert.checkpoints.convert`."""
  from projects.bert.checkpoints import convert as convert_lib
  convert_lib.main(sys.argv[1:])
