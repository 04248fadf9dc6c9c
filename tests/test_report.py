"""Tests for prompt_tuning.report on hand-written run directories."""
import json
import math
import os
import pathlib
import sys

import flax
import jax
import numpy as np
import pytest

import commands

from prompt_tuning.experiments import gin_text
from prompt_tuning.experiments import paper_numbers
from prompt_tuning.experiments import reports
from prompt_tuning.experiments import runs as runs_lib
from prompt_tuning.model import costs
from prompt_tuning.model import t5

# Odd sizes, so that a count mixing up axes fails.
TINY = dict(vocab_size=37, emb_dim=13, num_heads=3, head_dim=5, mlp_dim=11,
            num_encoder_layers=2, num_decoder_layers=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16)
WIDER = dict(TINY, emb_dim=26, mlp_dim=19, num_encoder_layers=3)


def _needs_matplotlib():
  """Skips without matplotlib (fails instead under CI=true)."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    reason = 'matplotlib is not installed (pip install matplotlib)'
    if os.environ.get('CI', '').lower() == 'true':
      pytest.fail(reason)
    pytest.skip(reason)


# ---------------------------------------------------------------------------
# Fake runs.
# ---------------------------------------------------------------------------


def _config_gin(*, task, sizes, prompt_length, init, regexes, seed, steps,
                lr, checkpoint, block=False):
  """An operative config.gin as the trainer writes it (the parts we read)."""
  size_lines = '\n'.join(f'MODEL/t5.T5Config.{k} = {v!r}'
                         for k, v in sizes.items())
  if block:  # The same bindings in gin's block syntax.
    size_lines = 't5.T5Config:\n' + '\n'.join(
        f'  {k} = {v!r}' for k, v in sizes.items())
  checkpoint = (checkpoint if checkpoint.startswith('@')
                else repr(checkpoint))
  return f"""from __gin__ import dynamic_registration
from prompt_tuning.model import prompts
from prompt_tuning.model import t5
from prompt_tuning.training import trainer

# Macros:
INITIAL_CHECKPOINT_PATH = {checkpoint}
LEARNING_RATE = {lr!r}
MIXTURE_OR_TASK_NAME = {task!r}
PROMPT = @prompts.{init}()
PROMPT_LENGTH = {prompt_length}
PROMPT_REGEX = {list(regexes)!r}
SEED = {seed}
TASK_FEATURE_LENGTHS = {{'inputs': 16,
                        'targets': 4}}
TRAIN_STEPS = {steps}

trainer.adafactor.decay_rate = 0.8
trainer.adafactor.learning_rate = %LEARNING_RATE
PROMPT/prompts.random_uniform.scale = 0.5
{size_lines}
MODEL/t5.T5Config.dtype = 'float32'
trainer.train.initial_checkpoint_path = %INITIAL_CHECKPOINT_PATH
trainer.train.mixture_or_task_name = %MIXTURE_OR_TASK_NAME
trainer.train.seed = %SEED
trainer.train.train_steps = %TRAIN_STEPS
trainer.train.trainable_regexes = %PROMPT_REGEX
MODEL/t5.Transformer.config = @t5.T5Config()
MODEL/t5.Transformer.prompt_init = %PROMPT
MODEL/t5.Transformer.prompt_length = %PROMPT_LENGTH
"""


def make_run(root, name, *, metrics, task='taskless_offline_topic',
             sizes=None, prompt_length=20, init='random_uniform',
             method='prompt', seed=0, steps=100, best_step=None,
             last_step=None, checkpoint='/ckpt/t5_1_1_lm100k_base/checkpoint_1',
             block=False):
  """Writes config.gin, eval/metrics.jsonl and best_prompt.json; returns dir.

  Args:
    metrics: {task: {metric: value}} at the best step, or {metric: value}
      for `task`.
    method: 'prompt' (prompt regex) or 'model' ('.*').
  """
  if all(isinstance(v, (int, float)) for v in metrics.values()):
    metrics = {task: metrics}
  run_dir = pathlib.Path(root) / name
  (run_dir / 'eval').mkdir(parents=True)
  regexes = ['encoder/prompt/.*'] if method == 'prompt' else ['.*']
  lr = 0.3 if method == 'prompt' else 0.001
  (run_dir / 'config.gin').write_text(_config_gin(
      task=task, sizes=sizes or TINY, prompt_length=prompt_length, init=init,
      regexes=regexes, seed=seed, steps=steps, lr=lr, checkpoint=checkpoint,
      block=block))
  best_step = steps if best_step is None else best_step
  last_step = steps if last_step is None else last_step
  score = float(np.mean([np.mean(list(m.values())) for m in metrics.values()]))
  lines = []
  for step in sorted({0, best_step, last_step}):
    for eval_task, values in metrics.items():
      lines.append(json.dumps({'step': step, 'task': eval_task,
                               'metrics': values}))
  (run_dir / 'eval' / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
  (run_dir / 'best_prompt.json').write_text(json.dumps(
      {'step': best_step, 'score': score, 'metrics': metrics}))
  return str(run_dir)


def table_rows(markdown, first_cell):
  """The cells of the Markdown table rows whose first cell is `first_cell`."""
  rows = []
  for line in markdown.splitlines():
    if line.startswith('| '):
      cells = [c.strip() for c in line.strip()[1:-1].split(' | ')]
      if cells[0] == first_cell:
        rows.append(cells)
  return rows


def section(markdown, title):
  """The text of the '## title' section."""
  start = markdown.index(f'## {title}')
  end = markdown.find('\n## ', start + 1)
  return markdown[start:end if end >= 0 else None]


# ---------------------------------------------------------------------------
# Parameter counts.
# ---------------------------------------------------------------------------


def _traced_shapes(config, prompt_length):
  model = t5.Transformer(config, prompt_length=prompt_length)
  tokens = np.ones((1, 3), np.int32)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), tokens, tokens, tokens))
  flat = flax.traverse_util.flatten_dict(
      flax.core.meta.unbox(variables['params']), sep='/')
  return {k: tuple(v.shape) for k, v in flat.items()}


@pytest.mark.parametrize('overrides,prompt_length', [
    ({}, 0),
    ({}, 7),
    ({'logits_via_embedding': True, 'mlp_activations': ('relu',)}, 3),
    ({'num_encoder_layers': 1, 'num_decoder_layers': 3}, 2),
])
def test_parameter_shapes_match_the_model(overrides, prompt_length):
  config = t5.T5Config(**{**TINY, **overrides})
  assert costs.t5_parameter_shapes(config, prompt_length) == _traced_shapes(
      config, prompt_length)
  assert costs.count_parameters(config, prompt_length) == sum(
      math.prod(s) for s in _traced_shapes(config, prompt_length).values())


@pytest.mark.parametrize('size', sorted(paper_numbers.TABLE4_PARAMETERS))
def test_count_parameters_gives_paper_table4(size):
  trainable, total = paper_numbers.TABLE4_PARAMETERS[size]
  config = t5.CONFIGS[size]
  assert costs.count_parameters(config, 100) == total
  assert (costs.count_parameters(config, 100) -
          costs.count_parameters(config, 0)) == trainable
  assert runs_lib.size_name(config) == size


# ---------------------------------------------------------------------------
# Reading runs.
# ---------------------------------------------------------------------------


def test_read_run_infers_the_setting(tmp_path):
  run = runs_lib.read_run(make_run(
      tmp_path, 'a', metrics={'accuracy': 75.0}, prompt_length=7,
      init='from_class_labels', seed=3, steps=50, best_step=40))
  config = t5.T5Config(**TINY)
  assert run.method == 'prompt tuning'
  assert run.task == 'taskless_offline_topic'
  assert run.prompt_length == 7 and run.init == 'class labels'
  assert run.seed == 3 and run.train_steps == 50 and run.last_step == 50
  assert run.best_step == 40 and run.score == 75.0
  assert run.learning_rate == 0.3
  assert run.pretraining == 'LM adaptation 100K'
  assert run.model_parameters == costs.count_parameters(config, 0)
  assert run.trainable_parameters == 7 * TINY['emb_dim']
  assert run.total_parameters == costs.count_parameters(config, 7)
  assert run.metrics == {'taskless_offline_topic': {'accuracy': 75.0}}


def test_read_run_model_and_multi_task(tmp_path):
  model = runs_lib.read_run(make_run(tmp_path, 'm', metrics={'accuracy': 1.0},
                                   method='model', prompt_length=0,
                                   block=True))
  assert model.method == 'model tuning' and model.init == ''
  assert model.trainable_parameters == model.model_parameters
  assert model.learning_rate == 0.001
  multi = runs_lib.read_run(make_run(
      tmp_path, 'mt', method='model', prompt_length=0, task='offline_all',
      metrics={'offline_topic': {'accuracy': 90.0},
               'offline_sentiment': {'accuracy': 80.0}}))
  assert multi.method == 'multi-task model tuning'
  # A transfer mixture evaluates two tasks but trains on one.
  transfer = runs_lib.read_run(make_run(
      tmp_path, 'tr', task='taskless_glue_qqp_to_mrpc_v002',
      metrics={'taskless_glue_qqp_as_mrpc_v002': {'accuracy': 1.0},
               'taskless_glue_mrpc_from_qqp_v002': {'accuracy': 1.0}}))
  assert transfer.method == 'prompt tuning'


def test_read_run_paper_size_is_named(tmp_path):
  sizes = {f: getattr(t5.CONFIGS['base'], f)
           for f in ('vocab_size', 'emb_dim', 'num_heads', 'head_dim',
                     'mlp_dim', 'num_encoder_layers', 'num_decoder_layers')}
  run = runs_lib.read_run(make_run(tmp_path, 'b', metrics={'accuracy': 1.0},
                                 sizes=sizes, prompt_length=100))
  assert run.model == 'T5 1.1 Base'
  assert run.total_parameters == paper_numbers.TABLE4_PARAMETERS['base'][1]


@pytest.mark.parametrize('checkpoint,task,expected', [
    ('gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_xxl/checkpoint_1100000',
     'taskless_super_glue_rte_v102', 'LM adaptation 100K'),
    ('gs://t5-data/pretrained_models/t5x/t5_1_1_base/checkpoint_1000000',
     'taskless_super_glue_rte_v102', 'span corruption'),
    ('gs://t5-data/pretrained_models/t5x/t5_1_1_base/checkpoint_1000000',
     'taskless_super_glue_rte_v102_sentinel', 'span corruption + sentinel'),
    ('/data/my_model/checkpoint_5', 'x', 'my_model/checkpoint_5'),
    ('/pkg/data/corpus_t5/tiny/span_corruption/checkpoint_1500',
     'corpus_topic_sentinel', 'span corruption + sentinel'),
    ('/pkg/data/corpus_t5/small/lm_adapted_short/checkpoint_300',
     'corpus_topic', 'LM adaptation 300 steps'),
])
def test_infer_pretraining(checkpoint, task, expected):
  assert runs_lib.infer_pretraining(checkpoint, task) == expected


def test_infer_pretraining_embedded():
  reference = gin_text.GinReference('embedded.checkpoint_path', True)
  assert runs_lib.infer_pretraining(reference, 'x') == 'embedded (offline_all)'


@pytest.mark.parametrize('missing', ['config.gin', 'best_prompt.json',
                                     'eval/metrics.jsonl'])
def test_missing_file_names_the_run_dir(tmp_path, missing):
  run_dir = make_run(tmp_path, 'broken', metrics={'accuracy': 1.0})
  (pathlib.Path(run_dir) / missing).unlink()
  with pytest.raises(FileNotFoundError, match=rf'{run_dir}.*{missing}'):
    reports.write_report([run_dir], str(tmp_path / 'out'), figures=False)


def test_missing_run_dir_and_bad_json(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere'):
    runs_lib.read_run(str(tmp_path / 'nowhere'))
  run_dir = make_run(tmp_path, 'bad', metrics={'accuracy': 1.0})
  (pathlib.Path(run_dir) / 'best_prompt.json').write_text('{"step": 1}')
  with pytest.raises(ValueError, match='best_prompt.json.*"score"'):
    runs_lib.read_run(run_dir)
  with pytest.raises(ValueError, match='no run directories'):
    reports.write_report([], str(tmp_path / 'out'))


# ---------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------


@pytest.fixture
def many_runs(tmp_path):
  """Prompt tuning (2 sizes, P 5 and 20, seeds) and model tuning."""
  runs = []
  for seed, acc in enumerate((70.0, 75.0, 77.0)):
    runs.append(make_run(tmp_path, f'pt20_tiny_{seed}', seed=seed,
                         metrics={'accuracy': acc}))
  for seed, acc in enumerate((80.0, 84.0)):
    runs.append(make_run(tmp_path, f'pt20_wide_{seed}', seed=seed,
                         sizes=WIDER, metrics={'accuracy': acc}))
  runs.append(make_run(tmp_path, 'pt5_tiny_0', prompt_length=5,
                       metrics={'accuracy': 60.0}))
  for seed, acc in enumerate((90.0, 92.0)):
    runs.append(make_run(tmp_path, f'mt_tiny_{seed}', seed=seed,
                         method='model', prompt_length=0,
                         metrics={'accuracy': acc}))
  runs.append(make_run(tmp_path, 'mt_wide_0', method='model', prompt_length=0,
                       sizes=WIDER, metrics={'accuracy': 95.0},
                       best_step=40, last_step=40))
  return runs


def test_summary_means_and_stds(tmp_path, many_runs):
  written = reports.write_report(many_runs, str(tmp_path / 'out'),
                                figures=False)
  text = pathlib.Path(written['report']).read_text()
  rows = table_rows(section(text, 'Summary'), 'taskless_offline_topic')
  by_key = {(r[1], r[3], r[5]): r for r in rows}
  tiny = f'{costs.count_parameters(t5.T5Config(**TINY)):,}'
  wide = f'{costs.count_parameters(t5.T5Config(**WIDER)):,}'
  # mean(70, 75, 77) = 74, sample std sqrt((16 + 1 + 9) / 2) = 3.606.
  row = by_key[('prompt tuning', tiny, '20')]
  assert row[10] == '0, 1, 2' and row[11] == '74.00 ± 3.61'
  assert row[12] == 'accuracy 74.00 ± 3.61'
  # mean(80, 84) = 82, sample std sqrt(8) = 2.828.
  assert by_key[('prompt tuning', wide, '20')][11] == '82.00 ± 2.83'
  assert by_key[('prompt tuning', tiny, '5')][11] == '60.00'
  assert by_key[('model tuning', tiny, '')][11] == '91.00 ± 1.41'
  assert by_key[('model tuning', wide, '')][11] == '95.00'
  assert len(rows) == 5
  # The runs table: one row per run; the unfinished one is marked.
  runs = section(text, 'Runs')
  assert sum(line.startswith('| /') for line in runs.splitlines()) == 9
  assert '40 of 100 (unfinished)' in runs
  # Table 4-like: the prompt's share of the tiny model.
  p20 = [r for r in table_rows(section(text, 'Parameters'), 'embedded T5') +
         table_rows(section(text, 'Parameters'),
                    'T5 d_model 13, 2+2 layers') if r[2] == '20']
  assert p20[0][3] == f'{20 * 13:,}'
  # No MRQA / paraphrase runs: no such tables.
  assert 'Table 1-like' not in text and 'Table 2-like' not in text


def test_figures_are_png_images(tmp_path, many_runs):
  _needs_matplotlib()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  written = reports.write_report(many_runs, str(tmp_path / 'out'))
  names = {'figure1_taskless_offline_topic', 'figure3_taskless_offline_topic'}
  assert names <= set(written)
  for name in names:
    with Image.open(written[name]) as image:
      assert image.format == 'PNG'
      assert image.size[0] > 300 and image.size[1] > 200
      image.verify()
  text = pathlib.Path(written['report']).read_text()
  assert '](figure1_taskless_offline_topic.png)' in text
  assert text.count('paper values not transcribed') == 2


def test_mrqa_table_with_paper_reference(tmp_path):
  runs = []
  for method, values in (('prompt', (60.0, 64.0)), ('model', (50.0, 51.0))):
    for seed, f1 in enumerate(values):
      runs.append(make_run(
          tmp_path, f'{method}{seed}', method=method, seed=seed,
          prompt_length=20 if method == 'prompt' else 0,
          task='squad_v110_to_mrqa_v100',
          metrics={'squad_v110': {'f1': 90.0 + seed, 'exact_match': 80.0},
                   'mrqa_textbook_qa_v100': {'f1': f1,
                                             'exact_match': 40.0}}))
  text = pathlib.Path(reports.write_report(runs, str(tmp_path / 'out'),
                                          figures=False)['report']).read_text()
  table = section(text, 'MRQA')
  header = next(l for l in table.splitlines() if l.startswith('| dataset'))
  assert 'model tuning (n)' in header and 'delta' in header
  (squad,) = table_rows(table, 'SQuAD')
  (textbook,) = table_rows(table, 'TextbookQA')
  # Columns: dataset, domain, model tuning, prompt tuning, delta, paper x3.
  assert textbook[2] == '50.50 ± 0.71 (2)'
  assert textbook[3] == '62.00 ± 2.83 (2)'
  assert textbook[4] == '+11.50'
  assert textbook[5:] == ['54.3 ± 3.7', '66.8 ± 2.9', '+12.5']
  assert squad[2] == squad[3] == '90.50 ± 0.71 (2)'
  assert 'BioASQ' not in table  # No run evaluated it.
  # The mixture's two tasks do not make it multi-task.
  assert 'multi-task' not in text


def test_paraphrase_table_with_paper_reference(tmp_path):
  runs = [make_run(tmp_path, f'p{seed}', seed=seed,
                   task='taskless_glue_qqp_to_mrpc_v002',
                   metrics={'taskless_glue_qqp_as_mrpc_v002':
                                {'accuracy': 88.0, 'f1': 85.0},
                            'taskless_glue_mrpc_from_qqp_v002':
                                {'accuracy': acc, 'f1': f1}})
          for seed, (acc, f1) in enumerate(((70.0, 80.0), (72.0, 82.0)))]
  text = pathlib.Path(reports.write_report(runs, str(tmp_path / 'out'),
                                          figures=False)['report']).read_text()
  (row,) = [r for r in table_rows(section(text, 'Paraphrase'),
                                  'T5 d_model 13, 2+2 layers')]
  assert row[1] == 'QQP → MRPC'
  assert row[2] == '71.00 ± 1.41 / 81.00 ± 1.41 (2)'
  assert row[3:] == ['73.1 ± 0.9 / 81.2 ± 2.1', '76.3 ± 0.1 / 84.3 ± 0.3']


def _superglue_metrics(offset):
  out = {}
  for name, metrics in paper_numbers.TABLE3_ENSEMBLE.items():
    task = f'taskless_super_glue_{name}_v102'
    out[task] = {m: 80.0 + offset + i for i, m in enumerate(metrics)}
  return out


def test_ensemble_table(tmp_path):
  flat = tmp_path / 'rte.json'
  flat.write_text(json.dumps({
      'task': 'taskless_super_glue_rte_v102',
      'prompts': [{'file': f'p{i}.npy', 'metrics': {'accuracy': 70.0 + i}}
                  for i in range(5)],
      'average': {'accuracy': 72.0}, 'best': {'accuracy': 74.0},
      'ensemble': {'accuracy': 75.5}}))
  nested = tmp_path / 'all.json'
  nested.write_text(json.dumps({
      'prompts': [{'file': 'a.npy', 'metrics': _superglue_metrics(0)}],
      'average': _superglue_metrics(0), 'best': _superglue_metrics(1),
      'ensemble': _superglue_metrics(2)}))
  text = pathlib.Path(reports.write_report(
      [str(flat), str(nested)], str(tmp_path / 'out'))['report']).read_text()
  rte = table_rows(section(text, f'Prompt ensemble (Table 3-like): {flat}'),
                   'taskless_super_glue_rte_v102')
  assert rte == [['taskless_super_glue_rte_v102', 'accuracy', '5', '72.00',
                  '74.00', '75.50', '92.6', '93.5', '93.5']]
  full = section(text, f'Prompt ensemble (Table 3-like): {nested}')
  (cb_f1,) = [r for r in table_rows(full, 'taskless_super_glue_cb_v102')
              if r[1] == 'mean_3class_f1']
  assert cb_f1[3:] == ['81.00', '82.00', '83.00', '99.0', '100.0', '100.0']
  # Two-metric tasks average to 80.5 (+ offset), one-metric ones to 80: the
  # score is (5 * 80 + 3 * 80.5) / 8 = 80.1875 for the average prompt.
  (score,) = table_rows(full, 'SuperGLUE score')
  assert score[3:] == ['80.19', '81.19', '82.19', '90.5', '91.0', '91.3']


def test_bad_ensemble_report(tmp_path):
  path = tmp_path / 'e.json'
  path.write_text(json.dumps({'prompts': [], 'average': {}}))
  with pytest.raises(ValueError, match=rf'{path}.*best.*ensemble'):
    runs_lib.read_ensemble_report(str(path))


def test_command_line(tmp_path):
  run_dir = make_run(tmp_path, 'r', metrics={'accuracy': 66.0})
  command = [sys.executable, '-m', 'prompt_tuning.report', run_dir,
             f'--output_dir={tmp_path / "out"}', '--nofigures']
  done = commands.run(command, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  assert '| taskless_offline_topic | prompt tuning |' in done.stdout
  assert (tmp_path / 'out' / 'report.md').exists()
  done = commands.run(command[:3] + [str(tmp_path / 'absent')] + command[4:],
                        capture_output=True, text=True, check=False)
  assert done.returncode != 0
  assert f'run directory {tmp_path / "absent"} does not exist' in done.stderr
