"""The model path imports without TensorFlow, clu or orbax (the accelerator image has none of them), and importing
the project only declares its registry entries."""

import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What a GPU/TPU user imports to build a model and its train step, and every config file.
LIGHT_MODULES = (
    'projects.bert', 'projects.bert.models.modeling', 'projects.bert.models.bert_models',
    'projects.bert.checkpoints.weights',
    'projects.bert.evaluators', 'projects.bert.models.architecture', 'projects.bert.configs.pretrain',
    'projects.bert.configs.glue', 'projects.bert.configs.squad', 'projects.bert.configs.fewshot',
    'projects.bert.configs.demo', 'projects.bert.datasets.squad_format', 'core.state', 'core.train_step',
    'core.optimizers', 'core.sharding', 'core.model', 'core.registry', 'core.dataset', 'core.evaluators',
    'core.param_init', 'core.errors', 'core.atomic',
)
BLOCKED = ('tensorflow', 'clu', 'orbax', 'tf_keras', 'official')


def _run(code: str) -> subprocess.CompletedProcess:
  env = {**os.environ, 'PYTHONPATH': REPO, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)


@pytest.mark.parametrize('module', LIGHT_MODULES)
def test_imports_without_tensorflow_clu_orbax(module):
  proc = _run(f"""
      import importlib.abc, sys
      BLOCKED = {BLOCKED!r}
      class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
          if name.split('.')[0] in BLOCKED:
            raise ImportError(f'blocked for this test: {{name}}')
          return None
      sys.meta_path.insert(0, Block())
      import {module}
      if {module!r} == 'projects.bert.configs.pretrain':
        import projects.bert.configs.pretrain as p
        for v in ('tiny', 'base', 'base,bert_paper,phase2', 'tiny,fewshot', 'large,runlocal'):
          p.get_config(v)
      if {module!r} == 'projects.bert.configs.glue':
        import projects.bert.configs.glue as g
        for v in ('mrpc', 'mnli,large,predict', 'stsb,runlocal'):
          g.get_config(v)
      loaded = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)
      assert not loaded, loaded
      """)
  assert proc.returncode == 0, proc.stderr[-3000:]


def test_registries_resolve_declared_names_on_first_use():
  proc = _run("""
      import sys
      from core import registry
      import projects.bert  # noqa: F401
      assert 'tensorflow' not in sys.modules
      assert 'bert_glue' in registry.DATASETS and 'bert_trainer' in registry.TRAINERS
      assert {'mlm_nsp', 'glue', 'glue_predict', 'fewshot', 'squad'} <= set(registry.EVALUATORS.names())
      assert 'bert_squad' in registry.DATASETS
      assert registry.MODELS.get('bert_question_answering').__name__ == 'BertQuestionAnsweringModel'
      model_cls = registry.MODELS.get('bert_classification')
      assert model_cls.__name__ == 'BertClassificationModel', model_cls
      assert 'tensorflow' not in sys.modules  # the model module is light
      registry.DATASETS.get('bert_glue')  # imports the TF input pipeline now
      assert 'tensorflow' in sys.modules
      """)
  assert proc.returncode == 0, proc.stderr[-3000:]
