"""The paper in miniature: its plan, its configs, and one tiny end-to-end run."""
import dataclasses
import json
import re
import sys

import pytest

import commands

from prompt_tuning.checkpoints import embedded
from prompt_tuning.cli import config_check
from prompt_tuning.experiments import miniature

# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')


def _unique(plan):
  return list(dict.fromkeys(r for runs in miniature.plan_runs(plan).values()
                            for r in runs))


def test_full_plan_covers_the_papers_experiments():
  plan = miniature.FULL
  runs = miniature.plan_runs(plan)
  assert set(runs) == set(miniature.EXPERIMENTS)
  seeds = set(range(plan.seeds))
  # Figure 1: both methods at every size, every seed.
  assert {(r.method, r.size, r.seed) for r in runs['figure1']} == {
      (m, z, s) for m in ('prompt tuning', 'model tuning')
      for z in plan.sizes for s in seeds}
  assert set(plan.sizes) <= set(embedded.SIZES)
  assert {r.prompt_length for r in runs['prompt_length']} == {1, 5, 20, 100}
  assert {r.init for r in runs['init']} == set(miniature.INITS)
  assert {(r.kind, r.sentinel) for r in runs['objective']} == set(
      miniature.OBJECTIVES)
  assert {r.seed for r in runs['ensemble']} == set(range(5))
  assert {(r.method, r.train_size) for r in runs['data_size']} == {
      (m, n) for m in miniature.METHODS for n in (32, 128, 512, 2048)}
  # One directory per setting; settings shared by experiments run once.
  unique = _unique(plan)
  assert len({r.name for r in unique}) == len(unique)
  assert len(unique) < sum(len(v) for v in runs.values())


def test_every_run_of_the_full_plan_passes_the_dry_run(tmp_path):
  configs = []
  for run in _unique(miniature.FULL):
    files, bindings = miniature.gin_arguments(miniature.FULL, run,
                                              str(tmp_path / run.name))
    configs.append(config_check.config_from_args(
        [f'--gin_file={f}' for f in files] +
        ['--gin.' + b.replace(' = ', '=', 1) for b in bindings] +
        ['--num_devices=1']))
  estimates, failures = config_check.run_configs(configs)
  assert not failures, failures
  assert len(estimates) == len(configs)


@pytest.mark.parametrize('run, expected', [
    (miniature.Run(), ['corpus_topic', "embedded.corpus_checkpoint_path",
                       'PROMPT_LENGTH = 20']),
    (miniature.Run(kind='span_corruption', sentinel=True),
     ['corpus_topic_sentinel', 'span_corruption']),
    (miniature.Run(method='from scratch', train_size=32),
     ['corpus_topic_n32']),
])
def test_gin_arguments_name_the_task_and_checkpoint(run, expected, tmp_path):
  files, bindings = miniature.gin_arguments(miniature.FULL, run,
                                            str(tmp_path))
  text = '\n'.join(files + bindings)
  for fragment in expected:
    if fragment == 'embedded.corpus_checkpoint_path':
      assert embedded.corpus_checkpoint_path(run.size, run.kind) in text
    else:
      assert fragment in text
  if run.method == 'from scratch':
    assert 'INITIAL_CHECKPOINT_PATH' not in text
    assert files[0] == 'corpus/from_scratch.gin'


def _record(method, size='small', score=50.0, **setting):
  run = dataclasses.asdict(miniature.Run(method=method, size=size, **setting))
  return {'run': run, 'score': score, 'seconds': 1.0}


def test_findings_state_the_measured_differences():
  plan = dataclasses.replace(miniature.FULL, sizes=('tiny', 'small'),
                             experiments=('figure1', 'init', 'data_size'),
                             data_size_train_sizes=(32,))
  records = [
      _record('prompt tuning', 'tiny', 40.0),
      _record('model tuning', 'tiny', 90.0),
      _record('prompt tuning', 'small', 80.0),
      _record('prompt tuning', 'small', 90.0, seed=1),
      _record('model tuning', 'small', 95.0),
      _record('prompt tuning', 'small', 60.0, init='random_uniform'),
      _record('from scratch', 'small', 30.0, train_size=32),
      _record('prompt tuning', 'small', 70.0, train_size=32),
  ]
  text = miniature.findings(plan, records, None)
  # Figure 1: tiny 40 - 90, small mean(80, 90) - 95.
  assert 'tiny -50.0, small -10.0' in text
  assert 'random_uniform 60.0' in text and 'from_class_labels 85.0' in text
  assert '32 examples: prompt tuning 70.0, from scratch 30.0' in text
  table = miniature.data_size_table(plan, records)
  assert '| 32 | 70.0 | n/a | 30.0 |' in table


@pytest.mark.slow
def test_bad_flags_exit_non_zero_naming_the_value(tmp_path):
  result = commands.run(
      [sys.executable, '-m', 'prompt_tuning.miniature',
       f'--output_dir={tmp_path}', '--sizes=tiny,huge'],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode != 0
  assert "unknown ['huge']" in result.stderr
  assert not (tmp_path / 'runs').exists()


@pytest.mark.slow
def test_tiny_miniature_end_to_end(tmp_path):
  plan = dataclasses.replace(
      miniature.FULL, sizes=('tiny',), seeds=1, train_steps=2,
      eval_examples=32, inits=('random_uniform', 'from_class_labels'),
      prompt_lengths=(20,),
      objectives=(('span_corruption', True), ('lm_adapted_long', False)),
      ensemble_prompts=2, data_size_train_sizes=(32,),
      data_size_methods=('prompt tuning', 'from scratch'), main_size='tiny')
  written = miniature.run_miniature(plan, str(tmp_path))
  report = (tmp_path / 'report.md').read_text()
  summary = json.loads((tmp_path / 'miniature.json').read_text())
  # A second invocation reuses every finished run.
  again = miniature.run_miniature(plan, str(tmp_path))
  assert {'report', 'summary', 'data_size'} <= set(written)
  for name in ('figure1_corpus_topic', 'figure3_corpus_topic'):
    assert name in written
  for path in written.values():
    assert (tmp_path / path.split('/')[-1]).stat().st_size > 0
  for heading in ('Prompt ensemble (Table 3-like)',
                  'Training-set size', 'The miniature against the paper',
                  'Run time'):
    assert heading in report
  # Every setting ran once and has a score in [0, 100].
  assert len(summary['runs']) == len(_unique(plan)) == 7
  names = [r['name'] for r in summary['runs']]
  assert len(names) == len(set(names))
  assert all(0.0 <= r['score'] <= 100.0 for r in summary['runs'])
  assert any(r['run']['sentinel'] for r in summary['runs'])
  # The + sentinel runs are drawn in the task's figure, not a task of their
  # own.
  assert 'figure3_corpus_topic_sentinel' not in written
  assert re.search(r'span corruption \+ sentinel', report)
  run_minutes = sum(r['seconds'] for r in summary['runs']) / 60
  assert f'{run_minutes:.1f} minutes of training run time' in report
  ensembled = json.loads((tmp_path / 'ensemble' / 'ensemble.json').read_text())
  scores = {k: ensembled['corpus_topic'][k] for k in ('average', 'ensemble')}
  assert (f"average {scores['average']['accuracy']:.1f}, best "
          in report)
  assert f"ensemble {scores['ensemble']['accuracy']:.1f} |" in report
  rerun = json.loads((tmp_path / 'miniature.json').read_text())
  assert [r['seconds'] for r in rerun['runs']] == [
      r['seconds'] for r in summary['runs']]
  assert again['report'] == written['report']
