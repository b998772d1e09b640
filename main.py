"""scenic-bert: pretrain BERT, fine-tune it on GLUE, probe it few-shot; one trainer, chosen by config.

usage: python main.py --config=projects/bert/configs/FILE.py[:VARIANT] --workdir=DIR [--config.FIELD=VALUE ...]
       (installed: `bert-train` instead of `python main.py`; `bert-prepare`, `bert-convert` for the data and weights)

configs (projects/bert/configs/), VARIANT after the colon:
  pretrain.py:SIZE[,phase2][,fewshot]   MLM + NSP pretraining; SIZE tiny, mini, small, medium, base, large
  glue.py:TASK[,SIZE][,predict]         GLUE fine-tuning; TASK cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli;
                                        the architecture comes with --config.init_from (no SIZE needed)
  fewshot.py:TASKS[,SIZE]               few-shot ridge probes of an encoder; TASKS sst2+rte, or `paper` (7 tasks)
  demo.py[:smoke]                       the main job: data, pretraining, conversion, fine-tuning, few-shot
  `,runlocal` shrinks any of them to a tiny model and a few steps.

examples:
  python main.py --config=projects/bert/configs/glue.py:mrpc --workdir=/tmp/mrpc --config.init_from=/tmp/bert_hf
  python main.py --config=projects/bert/configs/glue.py:mrpc --workdir=/tmp/mrpc --config.mode=predict
  python main.py --config=projects/bert/configs/glue.py:mrpc --print_config    # every field, value and meaning
"""

from core import app
import projects.bert  # noqa: F401  (declares the BERT datasets, models and trainers)

if __name__ == '__main__':
  app.run()
