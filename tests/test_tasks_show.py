"""Tests for the `python -m prompt_tuning.tasks.show` CLI."""
import sys

import pytest
import seqio

import commands

from prompt_tuning.tasks import offline
from prompt_tuning.tasks import show

_CLI_ARGS = {
    'ok': ('offline_sentiment', '--split=test', '--n=2'),
    'unknown': ('offline_topik',),
}


@pytest.fixture(scope='module')
def cli():
  """The command's result for each case of `_CLI_ARGS`."""
  command = [sys.executable, '-m', 'prompt_tuning.tasks.show']
  return {case: commands.run(command + list(args), capture_output=True,
                             text=True, timeout=300)
          for case, args in _CLI_ARGS.items()}


def _ids_line(feature, text):
  ids = list(offline.vocabulary().encode(text)) + [1]
  return f'{feature} ids ({len(ids)}): {" ".join(map(str, ids))}'


def test_lookup_suggests_close_names():
  assert show.get_mixture_or_task('offline_topic').name == 'offline_topic'
  with pytest.raises(ValueError, match='closest registered names: .*'
                     'offline_sentiment'):
    show.get_mixture_or_task('offline_sentimnt')
  with pytest.raises(ValueError, match='no registered name is close'):
    show.get_mixture_or_task('zzzzzzzz')


def test_unknown_split_is_an_error():
  with pytest.raises(ValueError, match="no split 'dev'"):
    show.preprocessed_examples(
        seqio.get_mixture_or_task('offline_topic'), 'dev', 1)


@pytest.mark.parametrize('name', ['taskless_offline_weekend', 'offline_all'])
def test_format_example_shows_text_ids_and_pieces(name):
  provider = seqio.get_mixture_or_task(name)
  examples = show.preprocessed_examples(provider, 'validation', 2)
  assert len(examples) == 2
  out = show.format_example(examples[0], provider.output_features)
  text = examples[0]['inputs_pretokenized'].decode()
  assert f'inputs text: {text!r}' in out
  assert _ids_line('inputs', text) in out
  assert 'targets pieces: ' in out and '</s>' in out


@pytest.mark.slow
def test_cli_prints_examples(cli):
  result = cli['ok']
  assert result.returncode == 0, result.stderr
  expected = offline.generate_examples('sentiment', 'test')
  assert "offline_sentiment (task), split 'test': 2 example(s)" in result.stdout
  for ex in expected[:2]:
    assert f"inputs text: {ex['inputs']!r}" in result.stdout
    assert _ids_line('inputs', ex['inputs']) in result.stdout
    assert _ids_line('targets', ex['targets']) in result.stdout
  assert expected[2]['inputs'] not in result.stdout


@pytest.mark.slow
def test_cli_unknown_name_lists_close_names_and_fails(cli):
  result = cli['unknown']
  assert result.returncode != 0
  assert "Unknown task or mixture 'offline_topik'" in result.stderr
  assert 'offline_topic' in result.stderr
  assert not result.stdout
