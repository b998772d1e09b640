r"""The one parser of config variants: `--config=FILE.py:LEAD[,SIZE][,RECIPE][,flag ...]`.

Every config file declares what its variant may say as a `Spec` (`VARIANT`) and reads it with `parse`:

  VARIANT = variants.Spec('glue.py', lead='TASK', lead_words=glue_tasks.task_names(), lead_default='mrpc',
                          lead_parse=lambda w: glue_tasks.get_task(w).name, sizes=True, recipes=True,
                          flags=('predict', 'runlocal'))
  v = variants.parse(arg, VARIANT)     # v.lead 'mrpc', v.size '' or 'base', v.recipe, 'predict' in v.flags

The leading word (a task, a size, a SQuAD version) comes first; SIZE, RECIPE and the flags follow in any order. A
word the file does not know, a second SIZE or a second RECIPE is refused with one `VariantError` that names the
file, the variant, the word and every word the file knows.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, FrozenSet, Optional, Sequence, Tuple

from core import errors
from projects.bert.configs import recipes
from projects.bert.models.architecture import SIZES


class VariantError(errors.ConfigError):
  """A config variant with a word its file does not know (a ValueError too, as configs raised before)."""


@dataclasses.dataclass(frozen=True)
class Spec:
  """What the variant of one config file may say.

  file: the config file's name, for messages ('glue.py').
  lead: the name of the leading word ('TASK', 'SIZE', 'VERSION'); '' when the variant has none (only SIZE and flags).
  lead_words: the leading word's known values, listed in the error (`lead_parse` may accept more spellings).
  lead_default: the leading word of an empty variant ('' = required).
  lead_parse: word -> its canonical value; raises ValueError for an unknown word (default: must be in lead_words).
  sizes: whether `,SIZE` (projects.bert.models.architecture.SIZES) may follow.
  recipes: whether `,RECIPE` (configs/recipes.py) may follow; without it the variant's recipe is ''.
  flags: the other words that may follow ('runlocal', 'predict', ...).
  """
  file: str
  lead: str = ''
  lead_words: Tuple[str, ...] = ()
  lead_default: str = ''
  lead_parse: Optional[Callable[[str], str]] = None
  sizes: bool = False
  recipes: bool = False
  flags: Tuple[str, ...] = ()

  def usage(self) -> str:
    """The variant's syntax, e.g. 'TASK[,SIZE][,RECIPE][,predict][,runlocal]'."""
    words = ([self.lead] if self.lead else []) + (['SIZE'] if self.sizes else []) + (
        ['RECIPE'] if self.recipes else []) + list(self.flags)
    return ''.join(w if i == 0 and self.lead else f'[,{w}]' if i else f'[{w}]' for i, w in enumerate(words))

  def known(self) -> str:
    """Every word the variant knows, by kind, for messages."""
    kinds = []
    if self.lead:
      kinds.append(f'{self.lead} one of {", ".join(self.lead_words)}')
    if self.sizes:
      kinds.append(f'SIZE one of {", ".join(SIZES)}')
    if self.recipes:
      kinds.append(f'RECIPE one of {", ".join(recipes.RECIPES)} (default {recipes.DEFAULT_RECIPE})')
    if self.flags:
      kinds.append(f'flags {", ".join(self.flags)}')
    return '; '.join(kinds)


@dataclasses.dataclass(frozen=True)
class Variant:
  """A parsed variant: the leading word (canonical), SIZE ('' = none named), RECIPE ('' when the file takes none)
  and the flags named."""
  lead: str
  size: str
  recipe: str
  flags: FrozenSet[str]


def parse(arg: Optional[str], spec: Spec) -> Variant:
  """`arg` (the text after `FILE.py:`) read by `spec`; raises VariantError naming every word the file knows."""
  arg = arg or ''
  parts = [p.strip() for p in arg.split(',') if p.strip()]

  def refuse(problem: str) -> VariantError:
    return VariantError(f'Variant {arg!r} of {spec.file}: {problem}. Expected {spec.file}:{spec.usage()} with '
                        f'{spec.known()}.')

  lead = ''
  if spec.lead:
    word = parts.pop(0) if parts else spec.lead_default
    if not word:
      raise refuse(f'{spec.lead} is missing')
    if spec.lead_parse is not None:
      try:
        lead = spec.lead_parse(word)
      except ValueError as e:
        raise refuse(f'unknown {spec.lead} {word!r} ({e})') from None
    elif word in spec.lead_words:
      lead = word
    else:
      raise refuse(f'unknown {spec.lead} {word!r}')
  sizes = [p for p in parts if spec.sizes and p in SIZES]
  named_recipes = [p for p in parts if spec.recipes and p in recipes.RECIPES]
  unknown = [p for p in parts if p not in sizes and p not in named_recipes and p not in spec.flags]
  if unknown:
    raise refuse(f'unknown word{"s" if len(unknown) > 1 else ""} {", ".join(map(repr, unknown))}')
  if len(sizes) > 1:
    raise refuse(f'two sizes {sizes}')
  if len(named_recipes) > 1:
    raise refuse(f'two recipes {named_recipes}')
  recipe = (named_recipes[0] if named_recipes else recipes.DEFAULT_RECIPE) if spec.recipes else ''
  return Variant(lead=lead, size=sizes[0] if sizes else '', recipe=recipe,
                 flags=frozenset(p for p in parts if p in spec.flags))


def usage_lines(specs: Sequence[Spec]) -> str:
  """`FILE.py:USAGE` of each spec, one a line (what `main.py --help` and the docs can list)."""
  return '\n'.join(f'{s.file}:{s.usage()}' for s in specs)
