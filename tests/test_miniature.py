"""The paper in miniature: its plan, its configs, and one tiny end-to-end run."""
import dataclasses
import json
import pathlib
import re
import sys

import pytest
import seqio

import commands

from prompt_tuning.checkpoints import embedded
from prompt_tuning.cli import config_check
from prompt_tuning.experiments import miniature
from prompt_tuning.experiments import miniature_report

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
  # The control is one seed's (its published figures are).
  assert {(r.method, r.train_size, r.seed) for r in runs['data_size']} == {
      (m, n, 0) for m in miniature.METHODS for n in (32, 128, 512, 2048)}
  # One directory per setting; settings shared by experiments run once.
  unique = _unique(plan)
  assert len({r.name for r in unique}) == len(unique)
  assert len(unique) < sum(len(v) for v in runs.values())


@pytest.mark.parametrize('plan_name', ['FULL', 'SUITE_QUICK'])
def test_every_run_of_the_plan_passes_the_dry_run(plan_name, tmp_path):
  plan = getattr(miniature, plan_name)
  configs = []
  for run in _unique(plan):
    files, bindings = miniature.gin_arguments(plan, run,
                                              str(tmp_path / run.name))
    configs.append(config_check.config_from_args(
        [f'--gin_file={f}' for f in files] +
        ['--gin.' + b.replace(' = ', '=', 1) for b in bindings] +
        ['--num_devices=1']))
  estimates, failures = config_check.run_configs(configs)
  assert not failures, failures
  assert len(estimates) == len(configs)


def test_suite_plan_runs_every_setting_on_every_suite_task():
  from prompt_tuning.tasks import corpus_suite  # pylint: disable=g-import-not-at-top
  plan = miniature.SUITE_FULL
  assert plan.sizes == embedded.SIZES and len(plan.sizes) >= 4
  runs = miniature.plan_runs(plan)
  assert set(runs) == set(miniature.EXPERIMENTS)
  for name, experiment in runs.items():
    by_setting = {}
    for run in experiment:
      by_setting.setdefault(run.setting, set()).add(run.suite_task)
    assert all(tasks == set(corpus_suite.TASKS)
               for tasks in by_setting.values()), name
  # Figure 1: three methods at every size; prompt design trains nothing, so
  # one seed of it.
  figure1 = {(r.method, r.size, r.seed) for r in runs['figure1']}
  assert figure1 == {(m, z, s) for m in ('prompt tuning', 'model tuning')
                     for z in plan.sizes for s in range(plan.seeds)} | {
                         (miniature.DESIGN, z, 0) for z in plan.sizes}
  # The control: every method and training-set size, three seeds.
  assert {(r.method, r.train_size, r.seed) for r in runs['data_size']} == {
      (m, n, s) for m in miniature.METHODS for n in (32, 128, 512, 2048)
      for s in range(3)}
  unique = _unique(plan)
  assert len({r.name for r in unique}) == len(unique)
  # The corpus-task plans are unchanged by the suite's.
  assert all(r.suite_task is None for r in _unique(miniature.FULL))
  assert miniature.FULL.sizes == ('tiny', 'small')


def test_design_runs_evaluate_the_instructed_task_without_training(tmp_path):
  plan = miniature.SUITE_FULL
  run = miniature.Run(method=miniature.DESIGN, size='base',
                      suite_task='claim')
  files, bindings = miniature.gin_arguments(plan, run, str(tmp_path))
  assert files[0] == 'corpus/prompt_tune.gin'
  for binding in ("MIXTURE_OR_TASK_NAME = 'corpus_suite_claim_design'",
                  'TRAIN_STEPS = 0', 'trainer.train.eval_zero_shot = True',
                  'trainer.train.eval_before_training = False'):
    assert binding in bindings
  assert len([b for b in bindings if b.startswith('TRAIN_STEPS')]) == 1
  tuned = dataclasses.replace(run, method='prompt tuning')
  _, bindings = miniature.gin_arguments(plan, tuned, str(tmp_path))
  assert "MIXTURE_OR_TASK_NAME = 'corpus_suite_claim'" in bindings
  assert "CLASS_LABELS = ['not', 'agreed']" in bindings
  assert 'trainer.train.eval_zero_shot = False' in bindings


def test_design_and_suite_tasks_need_the_suite():
  with pytest.raises(ValueError, match="'prompt design' needs the suite"):
    dataclasses.replace(miniature.FULL,
                        figure1_methods=('prompt tuning', miniature.DESIGN))
  with pytest.raises(ValueError, match='suite_tasks'):
    dataclasses.replace(miniature.FULL, suite_tasks=('qa',))


def test_suite_averages_are_the_mean_over_tasks_per_setting_and_seed():
  plan = dataclasses.replace(miniature.SUITE_FULL,
                             suite_tasks=('qa', 'claim'))
  records = [
      _record('prompt tuning', 'tiny', 10.0, suite_task='qa'),
      _record('prompt tuning', 'tiny', 70.0, suite_task='claim'),
      _record('prompt tuning', 'tiny', 20.0, suite_task='qa', seed=1),
      _record('prompt tuning', 'tiny', 90.0, suite_task='claim', seed=1),
      # A setting missing a task is left out, not averaged over one task.
      _record('model tuning', 'tiny', 99.0, suite_task='qa'),
  ]
  averages = miniature_report.suite_averages(plan, records)
  assert sorted((a['run']['seed'], a['score']) for a in averages) == [
      (0, 40.0), (1, 55.0)]
  assert all(a['run']['suite_task'] is None for a in averages)
  assert averages[0]['tasks'] == {'qa': 10.0, 'claim': 70.0}
  table = miniature_report.suite_task_table(plan, averages)
  assert ('| tiny | prompt tuning | 2 | 15.0 ± 7.1 | 80.0 ± 14.1 | '
          '47.5 ± 10.6 |') in table
  assert 'model tuning' not in table
  # A corpus task's records are their own averages.
  assert [a['score'] for a in miniature_report.suite_averages(
      miniature.FULL, records[:2])] == [10.0, 70.0]


def test_knobs_register_a_suite_variant_the_runs_train_on(tmp_path):
  from prompt_tuning.tasks import corpus_suite  # pylint: disable=g-import-not-at-top
  plan = dataclasses.replace(miniature.SUITE_FULL,
                             knobs=(('qa_distractors', 0),))
  run = miniature.Run(suite_task='qa')
  name = miniature.task_name(plan, run)
  assert name.startswith('corpus_suite_knobs_') and name.endswith('_qa')
  assert name != miniature.task_name(miniature.SUITE_FULL, run)
  # The variant is registered with the plan's knobs.
  first = next(seqio.get_mixture_or_task(name).source.get_dataset(
      'train').as_numpy_iterator())
  want = corpus_suite.examples('qa', 'downstream_train', 1,
                               knobs=corpus_suite.Knobs(qa_distractors=0))
  assert first['inputs'].decode() == want[0]['inputs']
  design = miniature.task_name(
      plan, dataclasses.replace(run, method=miniature.DESIGN))
  assert design == name + '_design'
  # The plan's training-set size names the sized task; a run's own wins.
  sized = dataclasses.replace(plan, default_train_size=128)
  assert miniature.task_name(sized, run) == name + '_n128'
  assert miniature.task_name(
      sized, dataclasses.replace(run, train_size=32)) == name + '_n32'
  with pytest.raises(ValueError, match='knobs'):
    dataclasses.replace(miniature.FULL, knobs=(('qa_distractors', 0),))
  with pytest.raises(ValueError, match='qa_distractors=9'):
    dataclasses.replace(miniature.SUITE_FULL, knobs=(('qa_distractors', 9),))


def test_suite_flags_parse_knobs_by_their_types_and_refuse_bad_ones():
  from absl import app  # pylint: disable=g-import-not-at-top
  from prompt_tuning import miniature as command  # pylint: disable=g-import-not-at-top
  overrides = command._suite_overrides(
      ['claim', 'qa'], ['qa_distractors=0', 'claim_hard_rate=0.5'])
  assert overrides == {'suite_tasks': ('claim', 'qa'),
                       'knobs': (('claim_hard_rate', 0.5),
                                 ('qa_distractors', 0))}
  assert isinstance(overrides['knobs'][1][1], int)
  for tasks, knobs, message in (
      (['proof'], None, "unknown ['proof']"),
      (None, ['hardness=1'], "'hardness=1'; expected NAME=VALUE"),
      (None, ['qa_distractors=0.5'], 'qa_distractors=0.5'),
      (None, ['negation_rate=2'], 'negation_rate=2.0; expected a '
                                  'probability')):
    with pytest.raises(app.UsageError, match=re.escape(message)):
      command._suite_overrides(tasks, knobs)


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


def test_findings_state_the_measured_differences(tmp_path):
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
  text = miniature_report.findings(plan, records, None)
  # Figure 1: tiny 40 - 90, small mean(80, 90) - 95.
  assert 'tiny -50.0, small -10.0' in text
  assert 'random_uniform 60.0' in text and 'from_class_labels 85.0' in text
  assert '32 examples: prompt tuning 70.0, from scratch 30.0' in text
  table = miniature_report.data_size_table(plan, records)
  assert '| 32 | 70.0 | n/a | 30.0 |' in table
  # A second seed of the control: mean ± sample std.
  records.append(_record('prompt tuning', 'small', 80.0, train_size=32,
                         seed=1))
  table = miniature_report.data_size_table(plan, records)
  assert '| 32 | 75.0 ± 7.1 | n/a | 30.0 |' in table
  path = tmp_path / 'data_size.png'
  miniature_report.plot_data_size(plan, records, str(path))
  assert path.stat().st_size > 0


def test_data_size_seeds_flag_overrides_the_plan():
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from prompt_tuning import miniature as command  # pylint: disable=g-import-not-at-top
  values = flags.FlagValues()
  command.define_flags(values)
  values(['miniature', '--task=suite', '--data_size_seeds=2'])
  plan = command.plan_from_flags(values)
  assert plan.data_size_seeds == 2 and plan.seeds == 3
  assert {r.seed for r in miniature.plan_runs(plan)['data_size']} == {0, 1}
  values.data_size_seeds = 0
  with pytest.raises(app.UsageError, match='--data_size_seeds is 0'):
    command.plan_from_flags(values)


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
def test_tiny_suite_miniature_end_to_end(tmp_path):
  # The suite plan with every experiment, shrunk: one size, two of the
  # suite's tasks (a span task and a label task), two steps a run.
  plan = dataclasses.replace(
      miniature.SUITE_FULL, sizes=('tiny',), seeds=1, train_steps=2,
      eval_examples=16, suite_tasks=('qa', 'claim'),
      inits=('random_uniform', 'from_class_labels'), prompt_lengths=(20,),
      objectives=(('span_corruption', True), ('lm_adapted_long', False)),
      ensemble_prompts=2, data_size_train_sizes=(32,), data_size_seeds=1,
      data_size_methods=('prompt tuning', 'from scratch'), main_size='tiny')
  written = miniature_report.run_miniature(plan, str(tmp_path))
  report = (tmp_path / 'report.md').read_text()
  summary = json.loads((tmp_path / 'miniature.json').read_text())
  # A second invocation reuses every finished run.
  again = miniature_report.run_miniature(plan, str(tmp_path))
  assert {'report', 'summary', 'data_size', 'figure1_corpus_suite',
          'figure3_corpus_suite'} <= set(written)
  for task in ('qa', 'claim'):  # The report's figures of each task.
    assert f'figure1_corpus_suite_{task}' in written
  for path in written.values():
    assert (tmp_path / path.split('/')[-1]).stat().st_size > 0
  for heading in ('Figure 1 on the suite average',
                  'Figure 3 on the suite average',
                  'Prompt ensemble (Table 3-like)', 'Training-set size',
                  'The miniature against the paper', 'Run time'):
    assert heading in report
  # Every setting ran once per task and has a score in [0, 100]; the
  # design runs trained nothing.
  assert len(summary['runs']) == len(_unique(plan)) == 2 * 8
  names = [r['name'] for r in summary['runs']]
  assert len(names) == len(set(names))
  assert all(0.0 <= r['score'] <= 100.0 for r in summary['runs'])
  design = [r for r in summary['runs']
            if r['run']['method'] == miniature.DESIGN]
  assert len(design) == 2
  for record in design:
    run_record = json.loads(
        (tmp_path / 'runs' / record['name'] / 'run.json').read_text())
    assert run_record['step'] == run_record['train_steps'] == 0
    assert run_record['mixture_or_task_name'].endswith('_design')
  qa = next(r for r in summary['runs'] if r['run']['suite_task'] == 'qa')
  assert set(qa['metrics']) == {'f1', 'exact_match'}
  assert qa['score'] == pytest.approx(
      (qa['metrics']['f1'] + qa['metrics']['exact_match']) / 2)
  # The suite averages: one per setting and seed, the mean of its tasks.
  averages = summary['suite_averages']
  assert len(averages) == 8
  for average in averages:
    assert average['score'] == pytest.approx(
        sum(average['tasks'].values()) / 2)
  row = next(a for a in averages if a['run']['method'] == miniature.DESIGN)
  assert (f"| tiny | prompt design | 1 | {row['tasks']['qa']:.1f} | "
          f"{row['tasks']['claim']:.1f} | {row['score']:.1f} |") in report
  assert 'prompt tuning − prompt design by size: tiny ' in report
  assert any(r['run']['sentinel'] for r in summary['runs'])
  assert re.search(r'span corruption \+ sentinel', report)
  run_minutes = sum(r['seconds'] for r in summary['runs']) / 60
  assert f'{run_minutes:.1f} minutes of training run time' in report
  assert ('16 runs (2 of them prompt design, evaluated only; the others 2 '
          'steps each), plus the ensembles, on ') in report
  # One ensemble per suite task; Table 3's row is their mean.
  scores = {}
  for task in ('qa', 'claim'):
    ensembled = json.loads(
        (tmp_path / 'ensemble' / task / 'ensemble.json').read_text())
    (task_summary,) = ensembled.values()
    for key in ('average', 'ensemble'):
      values = task_summary[key].values()
      scores.setdefault(key, []).append(sum(values) / len(values))
  assert (f"average {sum(scores['average']) / 2:.1f}, best " in report)
  assert f"ensemble {sum(scores['ensemble']) / 2:.1f} |" in report
  rerun = json.loads((tmp_path / 'miniature.json').read_text())
  assert [r['seconds'] for r in rerun['runs']] == [
      r['seconds'] for r in summary['runs']]
  assert again['report'] == written['report']


def test_the_suite_page_states_the_reports_figure1_table():
  """docs/miniature.md's ladder table is the committed report's."""
  repo = pathlib.Path(__file__).resolve().parents[1]
  report = (repo / 'docs/miniature_suite/report.md').read_text()
  page = (repo / 'docs/miniature.md').read_text()
  section = report.split('## Figure 1 on the suite average')[1]
  rows = [line.split('|')[1:-1] for line in section.splitlines()
          if re.match(r'\| (tiny|mini|small|base) \|', line)]
  assert len(rows) == 12
  for size, method, _, *scores in rows:
    scores = [s.strip() for s in scores]
    pattern = (r'\| %s \|\s*[\d,]*\s*\| %s \| %s \|' % (
        size.strip(), method.strip(), r' \| '.join(map(re.escape, scores))))
    assert re.search(pattern, page), (size, method, scores)


def test_the_suite_page_states_the_reports_figure3_table():
  repo = pathlib.Path(__file__).resolve().parents[1]
  report = (repo / 'docs/miniature_suite/report.md').read_text()
  page = (repo / 'docs/miniature.md').read_text()
  section = report.split('## Figure 3 on the suite average')[1]
  rows = [line for line in section.split('\n## ')[0].splitlines()
          if line.startswith('| (')]
  assert len(rows) == 11
  for row in rows:
    assert row in page.splitlines(), row


def test_the_suite_page_states_the_reports_table3_and_data_size():
  """docs/miniature.md's Table 3 and training-set-size tables are the
  committed report's."""
  repo = pathlib.Path(__file__).resolve().parents[1]
  report = (repo / 'docs/miniature_suite/report.md').read_text()
  page = (repo / 'docs/miniature.md').read_text().splitlines()
  section = report.split('## Training-set size')[1].split('\n## ')[0]
  rows = [line for line in section.splitlines()
          if re.match(r'\| \d+ \|', line)]
  assert len(rows) == 4
  for row in rows:
    assert row in page, row
  # Each task's ensemble table: average, best and ensemble of its metric(s).
  for task, metrics in (('qa', ('exact_match', 'f1')),
                        ('negation', ('accuracy',)),
                        ('claim', ('accuracy',)), ('outing', ('accuracy',))):
    scores = []
    for metric in metrics:
      match = re.search(r'\| corpus_suite_%s \| %s \| 5 \| ([\d.]+) \| '
                        r'([\d.]+) \| ([\d.]+) \|' % (task, metric), report)
      scores.append(match.groups())
    cells = [' / '.join(column) for column in zip(*scores)]
    row = f"| `{task}`{' (exact match / F1)' if task == 'qa' else ''} | "
    assert row + ' | '.join(cells) + ' |' in page, (task, cells)
  average = re.search(r'average ([\d.]+), best ([\d.]+), ensemble ([\d.]+)',
                      report).groups()
  assert '| suite average | %s |' % ' | '.join(average) in page
