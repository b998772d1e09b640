"""The constants of Scenic BERT's few-shot protocol (google-research/scenic `projects/baselines/bert`: its
`glue_fewshot` config and `BERTFewShotEvaluator`), in a module that imports nothing, so that a config (a leaf) can
read them without loading the protocol's code (`projects.bert.fewshot.scenic`) or jax.
"""

# Scenic's few-shot GLUE tasks: sst2, and mnli's matched and mismatched dev sets (one train pool).
TASKS = ('sst2', 'mnli')
SHOTS = (1, 5, 10, 25, 100, 500, 1000)
L2_REGS = tuple(float(2.0 ** i) for i in range(-10, 20))
HEADLINE = 'sst2_100shot'  # Scenic's walk_first = ('sst2', 100): TensorBoard `a/sst2_100shot`
SEED = 42  # Scenic's few-shot rng_seed; here the permutation of the train pool
FEATURE = 'nsp'  # the next-sentence head's pre-logits
BIAS_CONSTANT = 100.0  # the constant bias column of the probe (so the bias is regularised 1/100^2 as much)
STD_EPS = 1e-5  # added to the support set's std when standardising
SHUFFLE_BUFFER = 100  # Scenic's bert_glue_dataset: dataset.shuffle(100) on the train split
DRAWS = ('stream', 'permutation')  # support sets: Scenic's first k per class of its stream, or a uniform permutation
SOLVES = ('float32', 'float64')  # Scenic solves in float32
