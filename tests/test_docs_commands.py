"""Every command line of README.md and docs/*.md, checked as written.

`COMMANDS` classifies each command the pages show (`doc_commands.extract`);
a command that no row matches fails `test_every_doc_command_is_classified`,
so a new command in the docs must be classified here. Actions:

  exists   a bare mention of a command or script: the module has an entry
           point, the script is executable
  extras   `pip install` of the package: every extra named is defined
  flags    dry run: the arguments parse with the command's own flags
  gin      dry run: flags, then its gin files and bindings parse
  train    dry run: flags, then the training config is checked as
           `python -m prompt_tuning.dry_run` checks it (no data or weights)
  render   the page is what its renderer writes from the template
  launch   the launch script, DRY_RUN=1, prints its runs and exits 0 (slow)
  collect  `python -m pytest ...`: the selection holds at least one test (slow)
  run      run as written (`/tmp/` moved to a temporary folder), exit 0, and
           the figure the page states next to it, where there is one (slow)
  main_job the README's main job, through tests/test_main_job.py's fixture,
           with the follow-up commands of the pages on its run (slow)
  skip     not checked, for the reason given

The dry runs share one Python process (`doc_commands.py` as a script).
"""
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import commands
import doc_commands

REPO = doc_commands.REPO
MAIN_JOB_DIR = '/tmp/prompt_tuning_main'

# (regex matched in full against the command, action, note). Order matters:
# the first match wins.
COMMANDS = [
    # The README's two commands.
    (r"python -m prompt_tuning\.train --gin_file=corpus/prompt_tune\.gin "
     r"--gin\.MODEL_DIR=\"'/tmp/prompt_tuning_main'\"", 'main_job',
     'the main job: 100.00 tuned accuracy (docs/miniature.md)'),
    (r'pip install -e (\.|"\.\[\w+\]")', 'extras', ''),
    (r'python -m pytest -n 2 tests', 'skip',
     'the whole suite, of which this test is part'),
    (r'python -m pytest -n 2 -m "not slow" tests', 'skip',
     'the fast tier, of which this test is part'),
    (r'\.ci/run', 'exists', ''),
    (r'python -m pytest tests/\S+\.py( -k \w+)?', 'collect', ''),
    # Complete commands without arguments.
    (r'python -m prompt_tuning\.tasks\.make_\w+_vocab', 'flags',
     'rewrites a shipped vocabulary (tests/test_tasks_offline.py and '
     'tests/test_corpus.py check it)'),
    # Bare mentions of a command or script.
    (r'python -m prompt_tuning\.X', 'skip',
     'stands for every command module'),
    (r'python -m prompt_tuning\.[\w.]+', 'exists', ''),
    (r'launch/\w+\.sh', 'exists', ''),
    # Benchmarks: each takes minutes and rewrites benchmarks/results/.
    (r'python benchmarks/render\.py', 'render', ''),
    (r'python -m prompt_tuning\.bench .*--attention_query_chunk=\d+', 'skip',
     'the blocked-attention experiment: a flag of commit 02cd7aa, reverted '
     '(docs/benchmarks.md)'),
    (r'(OMP_WAIT_POLICY=ACTIVE )?python -m prompt_tuning\.bench .*', 'flags',
     'minutes to hours'),
    # Checkpoints and interop.
    (r'python -m prompt_tuning\.peft_interop (export|import) .*', 'flags',
     'needs a trained run or a PEFT adapter folder'),
    (r'python -m prompt_tuning\.convert_hf --hf_dir=\S+ --output_dir=\S+',
     'flags', 'needs an HF model folder'),
    (r'python -m prompt_tuning\.embedded --losses', 'run',
     'the loss table of docs/checkpoints_and_interop.md'),
    (r'python -m prompt_tuning\.embedded --.*', 'flags',
     'pretraining: a quarter of an hour to an hour a size'),
    # Methods.
    (r'python -m prompt_tuning\.train --gin_file=embedded/prompt_tune\.gin '
     r'--gin_file=methods/lora\.gin .*', 'train', 'a minute; trains'),
    (r'python -m prompt_tuning\.method_export --model_dir=\S+', 'flags',
     'needs the LoRA run above'),
    (r'python -m prompt_tuning\.eval --gin_file=embedded/prompt_eval\.gin '
     r'--gin_file=/tmp/lora/export/serve\.gin .*', 'flags',
     'reads the export above'),
    (r'python -m prompt_tuning\.method_params --output_dir=/tmp/method_params',
     'run', 'the parameter table of docs/methods.md'),
    (r'python -m prompt_tuning\.compare_methods --output_dir=\S+', 'flags',
     'six minutes'),
    (r'python -m prompt_tuning\.spot --target=.*', 'flags',
     'trains four prompts'),
    # Training, evaluation, inference, interpretation.
    (r'python -m prompt_tuning\.train --gin_file=\w+/prompt_tune\.gin '
     r'--gin\.MODEL_DIR=\.\.\.', 'train', 'MODEL_DIR is a placeholder'),
    (r'python -m prompt_tuning\.train --gin_file=corpus/(prompt_tune|model_tune'
     r'|from_scratch)\.gin( --gin_file=corpus/sizes/\w+\.gin '
     r'--gin\.embedded\.corpus_checkpoint_path\.size=\S+)? '
     r'--gin\.MODEL_DIR=\S+ --gin\.MIXTURE_OR_TASK_NAME='
     r'\S*corpus_suite\S*( --gin\.CLASS_LABELS=\S+)?'
     r'( --gin\.TRAIN_STEPS=\d+ --gin\.EVAL_PERIOD=\d+)?'
     r'( --gin\.trainer\.train\.eval_before_training=False'
     r' --gin\.trainer\.train\.eval_zero_shot=False)?', 'train',
     'the corpus suite (docs/tasks.md): minutes; trains'),
    (r'python -m prompt_tuning\.train --gin_file=corpus/prompt_tune\.gin '
     r'--gin_file=corpus/sizes/base\.gin .*--gin\.TRAIN_STEPS=1500 .*',
     'train', 'the 1,500-step calibration pilot (docs/tasks.md): 10 minutes'),
    (r'python -m prompt_tuning\.train --gin_file=corpus/prompt_tune\.gin '
     r'--gin_file=corpus/sizes/base\.gin .*--gin\.EVAL_MODE="\'rank\'" .*',
     'train', 'prompt design by rank classification (docs/miniature.md): '
     'half a minute'),
    (r'python -m prompt_tuning\.train --gin_file=corpus/(pretrain_span_corruption'
     r'|lm_adapt)\.gin --gin_file=corpus/sizes/small\.gin '
     r'--gin\.MIXTURE_OR_TASK_NAME="\'corpus_\w+_unrevealed\'" .*', 'train',
     'pretrains small without revealing statements (docs/miniature.md): '
     'minutes'),
    (r'python -m prompt_tuning\.train --gin_file=corpus/prompt_tune\.gin '
     r'(--gin\.INITIAL_CHECKPOINT_PATH=\S+ )?--gin\.MIXTURE_OR_TASK_NAME='
     r'"\'corpus_suite_negation\'" .*', 'train',
     'a negation prompt on small, revealed or not (docs/miniature.md): '
     'a minute'),
    (r'python -m prompt_tuning\.train --gin_file=models/t5_1_1_base_prompt'
     r'\.gin .*', 'train', 'T5 1.1 Base from gs://'),
    (r'python -m prompt_tuning\.(eval|infer|interpret) .*'
     r'/tmp/prompt_tuning_main.*', 'main_job', 'on the main job\'s run'),
    (r"cat > /tmp/\S+ <<'\w+'", 'main_job',
     'writes the input file of the infer example after it'),
    (r'python -m prompt_tuning\.infer --model_dir=RUN --input_file=FILE',
     'flags', 'RUN and FILE are placeholders'),
    (r'python -m prompt_tuning\.forward --checkpoint=prompt_tuning/data/\S+ '
     r'--vocabulary=tasks/data/corpus_spm\.model .*', 'run',
     "the frozen base model's first words on a design input "
     '(docs/miniature.md)'),
    (r'python -m prompt_tuning\.forward --checkpoint=DIR --vocabulary=SPM',
     'flags', 'DIR and SPM are placeholders'),
    (r'python -m prompt_tuning\.(ensemble|serve) --model_dir=.*', 'flags',
     'needs several trained runs'),
    (r'python -m prompt_tuning\.(ensemble|serve) --gin_file=.*', 'gin',
     'needs several trained prompts'),
    # The miniature and reports.
    (r'python -m prompt_tuning\.miniature (--quick )?--output_dir=\S+',
     'flags', '5 to 25 minutes'),
    (r'python -m prompt_tuning\.miniature --task=suite( .*)?', 'flags',
     'trains on the ladder of sizes: minutes (a pilot) to hours'),
    (r'python -m prompt_tuning\.report .*', 'flags', 'needs finished runs'),
    (r'python -m prompt_tuning\.probe --sizes=\S+ --tasks=\S+'
     r'( --knobs=\S+)?', 'flags', 'one to two minutes; '
     'test_probe_prints_the_pages_tiny_rows runs its tiny part'),
    (r'python -m prompt_tuning\.probe --checkpoint=/tmp/unrevealed_small/\S+ '
     r'--tasks=\S+', 'flags', 'needs the unrevealed pretraining above'),
    (r'python -m prompt_tuning\.probe --checkpoint=/tmp/suite_t3/\S+ '
     r'--tasks=\S+', 'flags', "needs the miniature's model-tuning runs"),
    # Tasks.
    (r'python -m prompt_tuning\.tasks\.show .*', 'run', ''),
    # Launch scripts.
    (r'launch/figure1\.sh --dry_run --sizes=xxl --seeds=0 --tasks=rte', 'run',
     'the memory table of docs/paper_experiments.md'),
    (r'NUM_DEVICES=256 launch/figure1\.sh --dry_run --sizes=xxl --seeds=0 '
     r'--tasks=rte', 'run', 'XXL model tuning data:16,model:16, 10.91 GiB'),
    (r'launch/figure3\.sh --dry_run .*', 'run', ''),
    (r'launch/table3\.sh --help', 'run', ''),
    (r'(\w+=\S+ )+launch/\w+\.sh', 'launch', 'trains on a TPU pod'),
]

DRY_RUN_ACTIONS = ('flags', 'gin', 'train')


def _classify(command):
  for pattern, action, note in COMMANDS:
    if re.fullmatch(pattern, command.text):
      return pattern, action, note
  return None


def _commands(*actions):
  """The distinct commands of the pages classified as one of `actions`."""
  seen = {}
  for command in doc_commands.extract():
    row = _classify(command)
    if row and row[1] in actions:
      seen.setdefault(command.text, command)
  return list(seen.values())


def _dry_run_form(text):
  """The command with its placeholders filled: `[--optional]` flags kept,
  `[positional ...]` dropped, `--gin.X=...` given a path."""
  text = re.sub(r' \[[^\]-][^\]]*\.\.\.\]', '', text)
  text = re.sub(r'\[(--[^\]]*)\]', r'\1', text)
  return re.sub(r'(--gin\.\w+)=\.\.\.', r"\1=\"'/tmp/placeholder'\"", text)


def _in_tmp(text, tmp_path):
  return text.replace('/tmp/', f'{tmp_path}/')


def _run(text, tmp_path, timeout=600, **env):
  environment, words = doc_commands.split(_in_tmp(text, tmp_path))
  if words[0] == 'python':
    words[0] = sys.executable
  elif words[0].startswith('launch/'):
    words = ['bash'] + words
  return commands.run(words, capture_output=True, text=True, cwd=REPO,
                        env={**os.environ, **environment, **env},
                        timeout=timeout, check=False)


def _doc_table_after(page, marker):
  """The Markdown table that follows the line holding `marker` on a page."""
  lines = (REPO / page).read_text().splitlines()
  start = next(i for i, l in enumerate(lines) if marker in l)
  rows = []
  for line in lines[start + 1:]:
    if line.startswith('|'):
      rows.append(line)
    elif rows:
      break
  return rows


# ---------------------------------------------------------------------------
# Fast: classification, mentions, extras, dry runs.
# ---------------------------------------------------------------------------


def test_every_doc_command_is_classified():
  commands = doc_commands.extract()
  assert len(commands) > 50, 'the extraction found too few commands'
  unclassified = [f'{c.where()}: {c.text}' for c in commands
                  if _classify(c) is None]
  assert not unclassified, (
      'Commands in the docs that tests/test_docs_commands.py does not '
      'classify (add a row to COMMANDS):\n' + '\n'.join(unclassified))
  used = {_classify(c)[0] for c in commands}
  unused = [p for p, _, _ in COMMANDS if p not in used]
  assert not unused, f'COMMANDS rows that match no command: {unused}'


def test_extraction_joins_continuations_and_drops_comments():
  page = ('Text `python -m prompt_tuning.eval\n  --model_dir=R` and `gin/`.\n\n'
          '```bash\n# a comment\npython -m a \\\n  --x="\'#1\'"  # note\n```\n'
          '\n    launch/table3.sh --help\n\n```\nnot a command\n```\n'
          '```\n$ launch/figure1.sh --dry_run\n| output |\n```\n'
          '- a list item:\n\n  ```bash\n  python -m b \\\n    --y=1\n  ```\n')
  texts = [c.text for c in doc_commands.extract_page('p.md', page)]
  assert texts == ['python -m prompt_tuning.eval --model_dir=R',
                   'python -m a --x="\'#1\'"', 'launch/table3.sh --help',
                   'launch/figure1.sh --dry_run', 'python -m b --y=1']


def test_mentioned_commands_and_scripts_exist():
  for command in _commands('exists'):
    _, words = doc_commands.split(command.text)
    if words[:2] == ['python', '-m']:
      spec = importlib.util.find_spec(words[2])
      assert spec and spec.origin, (command.where(), words[2])
      assert "if __name__ == '__main__':" in pathlib.Path(
          spec.origin).read_text(), (command.where(), 'has no entry point')
    else:
      script = REPO / words[0]
      assert script.is_file() and os.access(script, os.X_OK), command.where()


def test_ci_runs_the_readmes_test_command():
  readme = (REPO / 'README.md').read_text()
  block = readme.split('```bash\n', 1)[1].split('```', 1)[0]
  assert (REPO / '.ci' / 'run').read_text().strip().splitlines()[-1] == (
      block.strip().splitlines()[1])


def test_pip_extras_exist():
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  extras = set(metadata.metadata('prompt_tuning').get_all('Provides-Extra'))
  readme = (REPO / 'README.md').read_text()
  named = set(re.findall(r'"\.\[(\w+)\]"', readme))
  for command in _commands('extras'):
    named |= set(re.findall(r'\[(\w+)\]', command.text))
  assert named and named <= extras, (named - extras, extras)


def test_benchmarks_page_is_rendered_from_its_template(tmp_path, monkeypatch):
  assert _commands('render')
  spec = importlib.util.spec_from_file_location(
      'render', REPO / 'benchmarks' / 'render.py')
  render = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(render)
  monkeypatch.setattr(render, 'OUTPUT', tmp_path / 'benchmarks.md')
  render.main()
  assert (tmp_path / 'benchmarks.md').read_text() == (
      REPO / 'docs' / 'benchmarks.md').read_text(), (
          'docs/benchmarks.md differs from what `python benchmarks/render.py` '
          'writes: edit the template, then render')


@pytest.mark.slow
def test_long_commands_dry_run():
  """Every flags/gin/train command, in one process (`doc_commands.py`)."""
  lines = _commands(*DRY_RUN_ACTIONS)
  work = [[_classify(c)[1], _dry_run_form(c.text)] for c in lines]
  result = commands.run(
      [sys.executable, str(REPO / 'tests' / 'doc_commands.py')],
      input=json.dumps(work), capture_output=True, text=True, cwd=REPO,
      timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  errors = json.loads(result.stdout.strip().splitlines()[-1])
  failed = [f'{c.where()}: {c.text}\n  -> {errors[_dry_run_form(c.text)]}'
            for c in lines if errors[_dry_run_form(c.text)]]
  assert not failed, 'Doc commands that would fail:\n' + '\n'.join(failed)


# ---------------------------------------------------------------------------
# Slow: commands run as written.
# ---------------------------------------------------------------------------


def _one(pattern):
  matches = [c for c in _commands('run', 'launch', 'collect', 'main_job')
             if re.fullmatch(pattern, c.text)]
  assert len(matches) == 1, (pattern, matches)
  return matches[0].text


@pytest.mark.slow
@pytest.mark.parametrize('pattern', [
    r'python -m prompt_tuning\.tasks\.show .*',
    r'launch/table3\.sh --help',
])
def test_short_commands_run(pattern, tmp_path):
  texts = [c.text for c in _commands('run') if re.fullmatch(pattern, c.text)]
  assert texts
  for text in texts:
    result = _run(text, tmp_path)
    assert result.returncode == 0, (text, result.stderr[-3000:])
    assert result.stdout.strip(), text


@pytest.mark.slow
def test_collected_test_selections_are_not_empty(tmp_path):
  for command in _commands('collect'):
    result = _run(command.text + ' --collect-only -q -p no:cacheprovider',
                  tmp_path)
    assert result.returncode == 0, (command.text, result.stdout[-3000:])
    assert re.search(r'^\d+ tests? collected|^\d+/\d+ tests? collected',
                     result.stdout, re.M), (command.text, result.stdout[-2000:])


@pytest.mark.slow
def test_method_params_writes_the_pages_table(tmp_path):
  result = _run(_one(r'python -m prompt_tuning\.method_params .*'), tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  written = (tmp_path / 'method_params').glob('*.md')
  text = '\n'.join(p.read_text() for p in written) + result.stdout
  page_rows = _doc_table_after('docs/methods.md', 'Trainable parameters per')
  assert page_rows
  for row in page_rows:
    assert row in text, row


@pytest.mark.slow
def test_embedded_losses_prints_the_pages_table(tmp_path):
  result = _run(_one(r'python -m prompt_tuning\.embedded --losses'), tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  page_rows = _doc_table_after('docs/checkpoints_and_interop.md',
                               'python -m prompt_tuning.embedded --losses')
  assert len(page_rows) == 6  # the header, the rule, the four sizes
  assert result.stdout.splitlines() == page_rows


@pytest.mark.slow
def test_forward_on_a_design_input_gives_the_pages_first_words(tmp_path):
  result = _run(_one(r'python -m prompt_tuning\.forward .*'), tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  page = (REPO / 'docs/miniature.md').read_text()
  assert '`Jonas` (log-probability −0.66), `The` and\n`It` first' in page
  assert "`not` at −10.9" in page
  first = next(l for l in result.stdout.splitlines() if '[0]' in l)
  match = re.search(r"\[0\] 'not' log p = (-[\d.]+) +top: 'Jonas':-0\.66, "
                    r"'The':-[\d.]+, 'It':", first)
  assert match and round(float(match.group(1)), 1) == -10.9, first


_PROBES_BY_SIZE = [c.text for c in _commands('flags') if re.fullmatch(
    r'python -m prompt_tuning\.probe --sizes=.*', c.text)]


def test_the_page_has_the_probes_by_size():
  assert len(_PROBES_BY_SIZE) == 3, _PROBES_BY_SIZE


@pytest.mark.slow
@pytest.mark.parametrize('text', _PROBES_BY_SIZE)
def test_probe_prints_the_pages_tiny_rows(text, tmp_path):
  result = _run(re.sub(r'--sizes=\S+', '--sizes=tiny', text), tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  page_rows = _doc_table_after('docs/miniature.md', text)
  tiny = [row for row in page_rows if row.startswith('| tiny ')]
  tasks = re.search(r'--tasks=(\S+)', text).group(1).split(',')
  assert len(tiny) == len(tasks), page_rows
  printed = result.stdout.splitlines()
  assert page_rows[0] in printed
  for row in tiny:
    assert row in printed, (row, result.stdout[-3000:])


@pytest.mark.slow
def test_paper_dry_run_prints_the_pages_table(tmp_path):
  result = _run(_one(r'launch/figure1\.sh --dry_run --sizes=xxl --seeds=0 '
                     r'--tasks=rte'), tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  page_rows = _doc_table_after('docs/paper_experiments.md',
                               '$ launch/figure1.sh')
  assert page_rows
  for row in page_rows:
    assert row in result.stdout, (row, result.stdout[-3000:])


@pytest.mark.slow
def test_paper_dry_run_on_256_devices_gives_the_pages_mesh(tmp_path):
  result = _run(_one(r'NUM_DEVICES=256 launch/.*'), tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  row = next(l for l in result.stdout.splitlines()
             if l.startswith('| superglue/xxl/model_tuning/'))
  assert '| data:16,model:16 |' in row and '| 10.91 GiB |' in row, row


@pytest.mark.slow
def test_figure3_dry_run_passes(tmp_path):
  result = _run(_one(r'launch/figure3\.sh --dry_run .*'), tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  match = re.search(r'dry run: (\d+) of (\d+) configs passed', result.stdout)
  assert match and match.group(1) == match.group(2), result.stdout[-3000:]


@pytest.mark.slow
def test_launch_commands_print_their_runs(tmp_path):
  for command in _commands('launch'):
    sweep = tmp_path / 'sweep.txt'
    sweep.write_text('')
    result = _run(command.text, tmp_path, DRY_RUN='1',
                  DRY_RUN_SWEEP=str(sweep))
    assert result.returncode == 0, (command.text, result.stderr[-3000:])
    assert sweep.read_text().splitlines(), command.text


def _main_job_figure():
  """The tuned accuracy docs/miniature.md states for the main job."""
  row = next(l for l in _doc_table_after('docs/miniature.md', 'main job')
             if l.startswith('| tuned prompt'))
  return float(row.strip('|').split('|')[-1])


@pytest.mark.slow
@pytest.mark.xdist_group('main_job')
def test_main_job_reaches_the_pages_accuracy(main_job):  # pylint: disable=redefined-outer-name
  assert _one(r'python -m prompt_tuning\.train --gin_file=corpus/.*')
  model_dir = main_job.model_dir
  best = json.loads((model_dir / 'best_prompt.json').read_text())
  assert best['metrics']['corpus_topic_n32']['accuracy'] == _main_job_figure()


@pytest.mark.slow
@pytest.mark.xdist_group('main_job')
def test_follow_up_commands_on_the_main_job(main_job, tmp_path):  # pylint: disable=redefined-outer-name
  """The pages' eval, infer and interpret commands, on the main job's run."""
  model_dir = main_job.model_dir
  figure = _main_job_figure()
  for command in _commands('main_job'):
    if 'prompt_tuning.train' in command.text:
      continue
    # The pages' /tmp/ paths move to tmp_path (`_run`): put the run there.
    run_dir = tmp_path / pathlib.Path(MAIN_JOB_DIR).name
    if not run_dir.exists():
      run_dir.symlink_to(model_dir)
    text = _in_tmp(command.text, tmp_path)
    if command.heredoc:
      word = re.search(r"<<-?'?(\w+)'?$", text).group(1)
      result = subprocess.run(
          ['bash', '-c', f'{text}\n{_in_tmp(command.heredoc, tmp_path)}\n'
           f'{word}\n'], capture_output=True, text=True, check=False)
      assert result.returncode == 0, (command.where(), result.stderr)
      continue
    result = _run(command.text, tmp_path)
    assert result.returncode == 0, (command.where(), result.stderr[-3000:])
    if 'prompt_tuning.eval' in text:
      assert f'accuracy {figure:.2f}' in result.stdout, (command.where(),
                                                        result.stdout[-2000:])
    elif 'prompt_tuning.infer' in text and '--input_file=' in text:
      # The page states the predictions in a comment after the command.
      page = (REPO / command.path).read_text().splitlines()
      stated = re.search(r'predictions: (.*)$', page[command.line]).group(1)
      output = re.search(r'--input_file=(\S+)\.txt', text).group(1)
      written = pathlib.Path(output + '.predictions.jsonl')
      lines = [json.loads(l) for l in written.read_text().splitlines()]
      assert [l['prediction'] for l in lines] == stated.split(), (
          command.where(), lines)
      inputs = pathlib.Path(output + '.txt').read_text().splitlines()
      assert [(l['line'], l['input']) for l in lines] == list(
          enumerate(inputs, start=1))
      assert result.stdout.strip().splitlines()[-1] == (
          f'wrote {len(inputs)} lines to {written}')
    elif 'prompt_tuning.infer' in text:
      output = re.search(r'(?:INFER_OUTPUT_FILE="\'|--output_file=)([^\'" ]+)',
                         text).group(1)
      lines = [json.loads(l) for l in pathlib.Path(output).read_text()
               .splitlines()]
      correct = sum(l['prediction'] == l['targets'] for l in lines)
      assert 100.0 * correct / len(lines) == pytest.approx(figure), (
          command.where())
    elif 'prompt_tuning.interpret' in text:
      labels = {'food', 'music', 'science', 'sports'}
      assert any(f'**{label}' in result.stdout or f'({label})' in
                 result.stdout for label in labels), result.stdout[-2000:]
